"""`python -m soakq`: the same as the `soakq` console script."""

from soakq.cli.main import main

if __name__ == "__main__":
    main()
