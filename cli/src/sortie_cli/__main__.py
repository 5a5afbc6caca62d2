from sortie_cli.main import main

main()
