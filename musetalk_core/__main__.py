"""``python -m musetalk_core lipsync ...`` (see musetalk_core.cli)."""

import sys

from .out_of_memory import is_out_of_memory, out_of_memory_error  # imports no torch / PyAV

try:
    from .startup import apply_environment
    from .cli import main
except Exception as exc:  # noqa: BLE001 - torch / FFmpeg could not even be loaded: memory may have run out
    if not is_out_of_memory(exc):
        raise
    print(f"musetalk: error: {out_of_memory_error('imports', exc)}", file=sys.stderr)
    sys.exit(2)

if __name__ == "__main__":
    apply_environment()  # $MUSETALK_COMPILE_MODE, $MUSETALK_CPU_THREADS (musetalk_core.environment)
    sys.exit(main())
