from limo_exp.cli import main

main()
