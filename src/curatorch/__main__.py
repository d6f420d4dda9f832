"""``python -m curatorch`` runs the command-line interface."""

import sys

from curatorch.cli import main

if __name__ == "__main__":
    sys.exit(main())
