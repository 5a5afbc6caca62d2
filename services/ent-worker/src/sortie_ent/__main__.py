from sortie_ent.app import main

main()
