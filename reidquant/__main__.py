from reidquant.cli import main

main()
