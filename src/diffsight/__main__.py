"""``python -m diffsight``: the same command line as ``diffsight``."""

from diffsight.cli.main import main

if __name__ == "__main__":
    main()
