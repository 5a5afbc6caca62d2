from sortie_workstation.app import main

main()
