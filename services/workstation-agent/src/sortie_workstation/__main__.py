"""`python -m sortie_workstation`: runs the workstation agent."""

from sortie_workstation.app import main

main()
