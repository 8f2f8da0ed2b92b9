"""A shared thread pool for per-frame CPU work: the reference-exact PIL / OpenCV resizes, mask material, previews.

Those calls release the GIL, so frames of one batch are processed side by side on the machine's cores while the
results stay exactly those of a plain loop (each call is independent and pure). On a GPU machine this is what
keeps the device fed: at 720p the per-frame crops and masks cost more than the networks. Threads: the CPU count,
at most 8, or what ``set_thread_count`` set (the command line passes ``$MUSETALK_CPU_THREADS``,
musetalk_core.environment).
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, List, Optional, TypeVar

T = TypeVar("T")
_POOL: Optional[ThreadPoolExecutor] = None
_LOCK = threading.Lock()
_THREADS: Optional[int] = None


def set_thread_count(threads: Optional[int]) -> None:
    """Threads of the pool (None: the CPU count, at most 8); takes effect when the pool is next created."""
    global _THREADS
    _THREADS = int(threads) if threads and int(threads) > 0 else None


def thread_count() -> int:
    if _THREADS:
        return _THREADS
    return max(1, min(8, os.cpu_count() or 1))


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=thread_count(), thread_name_prefix="musetalk-cpu")
        return _POOL


def map_frames(fn: Callable[..., T], *columns: Iterable) -> List[T]:
    """``[fn(*row) for row in zip(*columns)]``, rows spread over the pool; order kept, exceptions re-raised."""
    rows = list(zip(*columns))
    if len(rows) < 2 or thread_count() < 2 or threading.current_thread().name.startswith("musetalk-cpu"):
        return [fn(*row) for row in rows]
    return list(_pool().map(lambda row: fn(*row), rows))
