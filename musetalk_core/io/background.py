"""One worker thread beside the caller, joined by a short queue: ``BackgroundWorker`` consumes what the caller hands
over (the caller goes on), ``Ahead`` produces the items of an iterator ahead of the caller (the caller takes them).

Used for the H.264 encode (video_write.VideoWriter): libx264 and the RGB -> YUV conversion run without the GIL, so
while the encoder works on chunk k the caller's thread blends chunk k + 1 on the GPU. The queue holds at most
``depth`` items, so memory stays O(chunk) and a slow consumer slows the producer down instead of piling up frames.

Errors raised by the worker are re-raised in the caller's thread by the next ``put`` or by ``close``; after an
error or ``cancel`` the worker drops what is still queued.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from typing import Callable, ContextManager, Iterator, Optional

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


_END = object()


class Ahead:
    """The items of ``items`` (an iterator), made on a worker thread ahead of the consumer: ``depth`` items queued
    and one more in the making (plus the one ``first`` keeps).

    Used for the generator's batches (pipeline.render): while the caller's thread blends and hands on chunk k, the
    worker runs the UNet and decoder for the next batch. The iterator runs entirely on the worker thread, under
    inference mode, and is closed there (so context managers inside it enter and leave on one thread); ``copy``
    runs on the worker right after each item is made, before the next one (e.g. to copy a CUDA-graph runner's
    output buffer out before its next replay); ``context()`` is entered on the worker around the whole iteration
    (e.g. the caller's CUDA device and stream). Items come out in order and unchanged: the same calls as a loop.

    ``first()`` waits for the first item before the caller starts other device work: a CUDA graph is captured at
    the first batch, and no other thread may use the GPU while a capture runs.

    Errors raised by the iterator are re-raised in the consumer's thread when it reaches them; ``close`` stops the
    worker after the item in hand and waits for it to end (also through Ctrl-C).
    """

    def __init__(self, items: Iterator, depth: int = 1, copy: Callable[[object], object] = lambda item: item,
                 name: str = "musetalk-ahead", context: Optional[Callable[[], ContextManager]] = None):
        self._items = items
        self._copy = copy
        self._context = context or contextlib.nullcontext
        self._queue: "queue.Queue[object]" = queue.Queue(maxsize=max(1, int(depth)))
        self._error: Optional[BaseException] = None
        self._stopping = threading.Event()
        self._finished = threading.Event()
        self._peeked: list = []
        self._done = False
        # started by the first request (first / next): a caller that registers this object before asking for an
        # item can always close it, so no worker runs on unseen (e.g. inside models.use) after a Ctrl-C
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._started = False

    def _start(self) -> None:
        if not self._started:
            self._started = True
            self._thread.start()

    def _run(self) -> None:
        import torch

        try:
            with torch.inference_mode(), self._context():
                try:
                    for item in self._items:
                        if not self._offer(self._copy(item)):
                            break
                finally:
                    self._close_items()
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer's thread
            self._error = exc
        finally:
            self._offer(_END)
            self._finished.set()

    def _close_items(self) -> None:
        close = getattr(self._items, "close", None)  # a generator: runs its finally blocks
        if close is not None:
            close()

    def _offer(self, item: object) -> bool:
        """Queue ``item`` unless the consumer stopped; False once it has."""
        while not self._stopping.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> "Ahead":
        return self

    def __next__(self):
        if self._peeked:
            return self._peeked.pop()
        if self._done:
            raise StopIteration
        self._start()
        while True:  # a timeout keeps Ctrl-C deliverable while the worker computes
            try:
                item = self._queue.get(timeout=0.5)
                break
            except queue.Empty:
                continue
        if item is _END:
            self._done = True
            self._thread.join(5.0)  # it only has to return
            if self._error is not None:
                raise self._error
            raise StopIteration
        return item

    def first(self) -> None:
        """Wait until the first item is made (or the iterator ended or failed; then raises what it raised)."""
        if not self._peeked and not self._done:
            try:
                self._peeked.append(next(self))
            except StopIteration:
                pass

    def close(self) -> None:
        """Stop making items and wait for the worker to end (it closes the iterator); errors are not raised.
        The item in hand is finished first (a UNet batch: Ctrl-C waits for it), so nothing the worker uses is
        released under it."""
        self._stopping.set()
        interrupted: Optional[BaseException] = None
        if not self._started:  # never asked for an item: close the iterator here, nothing ran on a worker
            self._close_items()
            self._done = True
            return
        while not self._finished.is_set():
            try:
                while True:  # free a put the worker may be blocked in
                    self._queue.get_nowait()
            except queue.Empty:
                pass
            except KeyboardInterrupt as exc:
                interrupted = exc
            try:
                self._finished.wait(0.1)
            except KeyboardInterrupt as exc:
                interrupted = exc
        self._thread.join(5.0)  # finished: it only has to return
        self._peeked.clear()
        self._done = True
        if interrupted is not None:
            raise interrupted
