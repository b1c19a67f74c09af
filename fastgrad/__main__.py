"""``python -m fastgrad``: run the command line."""

import sys

from fastgrad.cli import main

if __name__ == "__main__":
    sys.exit(main())
