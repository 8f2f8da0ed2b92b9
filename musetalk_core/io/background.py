"""One worker thread fed through a short queue: the caller hands work over and goes on (producer/consumer).

Used for the H.264 encode (video_write.VideoWriter): libx264 and the RGB -> YUV conversion run without the GIL, so
while the encoder works on chunk k the caller's thread blends chunk k + 1 on the GPU. The queue holds at most
``depth`` items, so memory stays O(chunk) and a slow consumer slows the producer down instead of piling up frames.

Errors raised by the worker are re-raised in the caller's thread by the next ``put`` or by ``close``; after an
error or ``cancel`` the worker drops what is still queued.
"""

from __future__ import annotations

import queue
import threading
from typing import Callable, Optional

_STOP = object()


class BackgroundWorker:
    def __init__(self, handle: Callable[[object], None], depth: int = 2, name: str = "musetalk-worker"):
        self._handle = handle
        self._queue: "queue.Queue[object]" = queue.Queue(maxsize=max(1, int(depth)))
        self._error: Optional[BaseException] = None
        self._cancelled = threading.Event()
        # set by the thread as it ends: Thread.join/is_alive cannot be trusted after a Ctrl-C interrupted a join
        # (CPython then marks the thread stopped while it still runs)
        self._finished = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while True:
                item = self._queue.get()
                if item is _STOP:
                    return
                if self._error is not None or self._cancelled.is_set():
                    continue  # drain: the producer may still be blocked on put
                try:
                    self._handle(item)
                except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                    self._error = exc
        finally:
            self._finished.set()

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, item: object) -> None:
        """Queue ``item`` (blocks while ``depth`` items wait); raises what the worker raised so far."""
        self._raise_error()
        if self._finished.is_set():
            raise RuntimeError("the background worker has stopped")
        while True:  # a timeout keeps Ctrl-C deliverable to the caller while it waits
            try:
                self._queue.put(item, timeout=0.5)
                return
            except queue.Full:
                self._raise_error()

    def close(self) -> None:
        """Wait until everything queued is handled; raises the worker's error, if any."""
        self._stop()
        self._raise_error()

    def cancel(self) -> None:
        """Drop what is queued, wait for the item in hand, end the thread; errors are not raised."""
        self._cancelled.set()
        self._stop()

    def _stop(self) -> None:
        """Queue the stop and wait for the thread to end, also through Ctrl-C (re-raised once it has ended), so no
        caller goes on to close what the thread may still be using."""
        interrupted: Optional[BaseException] = None
        sent = False
        while not self._finished.is_set():
            try:
                if not sent:
                    self._queue.put(_STOP)
                    sent = True
                self._finished.wait()
            except KeyboardInterrupt as exc:
                interrupted = exc
                self._cancelled.set()  # a second Ctrl-C: drop the rest, end after the item in hand
        if interrupted is not None:
            raise interrupted
