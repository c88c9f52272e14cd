from medasr_cli.cli.app import main

main()
