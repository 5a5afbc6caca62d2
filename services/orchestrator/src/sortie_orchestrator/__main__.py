from sortie_orchestrator.app import main

main()
