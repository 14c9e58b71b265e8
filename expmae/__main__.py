"""`python -m expmae <command>`: the same as the `expmae` console command (expmae/cli/)."""
import sys

from expmae.cli import main

if __name__ == "__main__":
    sys.exit(main())
