"""``python -m musetalk_core lipsync ...`` (see musetalk_core.cli)."""

import sys

from . import environment
from .cli import main

if __name__ == "__main__":
    environment.apply()  # $MUSETALK_COMPILE_MODE, $MUSETALK_CPU_THREADS (musetalk_core.environment)
    sys.exit(main())
