from gpudepin.cli.main import main

main()
