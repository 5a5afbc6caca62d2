"""`python -m sortie_cli`: runs the `sortie` command."""

from sortie_cli.main import main

main()
