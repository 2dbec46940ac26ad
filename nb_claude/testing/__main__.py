"""Run the stand-in: `python -m nb_claude.testing [--port N] [--seed N] [--no-quirks]`."""

from __future__ import annotations

import sys

from ._cli import main

if __name__ == "__main__":
    sys.exit(main())
