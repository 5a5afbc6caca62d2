"""`python -m sortie_ent`: runs the ENT worker."""

from sortie_ent.app import main

main()
