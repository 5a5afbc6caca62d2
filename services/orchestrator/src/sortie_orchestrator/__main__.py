"""`python -m sortie_orchestrator`: runs the orchestrator."""

from sortie_orchestrator.app import main

main()
