"""`python -m sortie_m365`: runs the Microsoft 365 worker."""

from sortie_m365.app import main

main()
