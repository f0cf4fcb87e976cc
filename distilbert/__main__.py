"""``python -m distilbert ...``: the ``distilbert`` command, for launchers that start a module (torchrun, ...)."""

import sys

from distilbert.cli import main

if __name__ == "__main__":
    sys.exit(main())
