from sortie_m365.app import main

main()
