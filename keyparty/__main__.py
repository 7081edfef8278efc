from keyparty.cli import main

main()
