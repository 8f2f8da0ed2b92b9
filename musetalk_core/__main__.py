"""``python -m musetalk_core lipsync ...`` (see musetalk_core.cli)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
