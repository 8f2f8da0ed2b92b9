"""The encoder thread: order kept, errors reach the caller, queue bounded, cancel drops the rest, files atomic."""

import threading
import time

import numpy as np
import pytest
import torch

from musetalk_core.io import video_read, video_write
from musetalk_core.io.background import BackgroundWorker
from musetalk_core.errors import OutputError


def test_items_are_handled_in_order_and_close_waits_for_all():
    seen = []
    worker = BackgroundWorker(lambda x: (time.sleep(0.001), seen.append(x)), depth=2)
    for i in range(50):
        worker.put(i)
    worker.close()
    assert seen == list(range(50))


def test_queue_is_bounded_so_a_slow_consumer_slows_the_producer():
    gate = threading.Event()
    handled = []
    worker = BackgroundWorker(lambda x: (gate.wait(), handled.append(x)), depth=2)
    done = []

    def produce():
        for i in range(10):
            worker.put(i)
            done.append(i)

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    time.sleep(0.3)
    # one item in the worker's hand plus ``depth`` queued: the producer is blocked on the fourth
    assert len(done) == 3
    gate.set()
    producer.join(5)
    worker.close()
    assert handled == list(range(10))


def test_worker_error_is_raised_in_the_callers_thread():
    def handle(x):
        if x == 3:
            raise OSError(28, "No space left on device")

    worker = BackgroundWorker(handle, depth=1)
    with pytest.raises(OSError, match="No space left"):
        for i in range(100):
            worker.put(i)
            time.sleep(0.002)
    worker.cancel()


def test_error_is_raised_by_close_when_nothing_more_is_put():
    worker = BackgroundWorker(lambda x: 1 / 0)
    worker.put(1)
    with pytest.raises(ZeroDivisionError):
        worker.close()


def test_cancel_drops_what_is_queued():
    gate = threading.Event()
    handled = []
    worker = BackgroundWorker(lambda x: (gate.wait(), handled.append(x)), depth=3)
    for i in range(4):
        worker.put(i)
    threading.Timer(0.1, gate.set).start()
    worker.cancel()
    assert handled == [0]  # the item in hand finishes; the three queued are dropped


def _frames(n, h=64, w=96):
    rng = np.random.default_rng(0)
    return torch.from_numpy(rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8))


def test_video_writer_encoder_failure_leaves_no_file(tmp_path):
    out = tmp_path / "out.mp4"
    writer = video_write.VideoWriter(out, 25, 96, 64)
    calls = []

    def failing_encode(arrs):  # the encoder thread hits a full disk on its third group
        calls.append(1)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")

    writer._encoder._handle = failing_encode
    with pytest.raises(OutputError, match="space"):
        for k in range(20):
            writer.write(_frames(2))
            time.sleep(0.01)
        writer.finish()
    assert list(tmp_path.iterdir()) == []


def test_video_writer_frames_survive_the_thread_in_order(tmp_path):
    frames = _frames(12)
    out = video_write.write_video(tmp_path / "o.mp4", frames, 25, crf=0)
    decoded = video_read.read_video(out, with_audio=False).frames
    assert decoded.shape[0] == 12
    # lossless H.264 in yuv420p: not bit-exact to RGB, but each frame is nearest to its own source frame
    err = (decoded.float()[:, None] - frames.float()[None]).abs().mean(dim=(2, 3, 4))
    assert torch.equal(err.argmin(dim=1), torch.arange(12))


def test_rgb_to_yuv_on_the_pool_gives_the_bytes_encode_would(tmp_path):
    """The writer converts RGB -> yuv420p itself (on the CPU pool); the file must equal one where libx264's
    encode() did that conversion (the plain PyAV way), byte for byte."""
    import av

    frames = _frames(10, 64, 96)
    ours = video_write.write_video(tmp_path / "ours.mp4", frames, 25, crf=0)
    plain = tmp_path / "plain.mp4"
    with av.open(str(plain), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt, s.options = 96, 64, "yuv420p", {"crf": "0"}
        s.thread_type = "AUTO"
        for f in frames.numpy():
            c.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        c.mux(s.encode())

    def planes(path):
        with av.open(str(path)) as c:
            return [f.to_ndarray(format="yuv420p") for f in c.decode(video=0)]

    a, b = planes(ours), planes(plain)
    assert len(a) == len(b) == 10
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_close_waits_for_the_thread_through_ctrl_c():
    """A Ctrl-C while close() waits must not return before the worker has ended: the caller closes the container
    next, which the worker may still be using."""
    import signal

    gate = threading.Event()
    state = {"in_hand": False, "done": False}

    def handle(x):
        state["in_hand"] = True
        gate.wait()
        state["done"] = True

    worker = BackgroundWorker(handle, depth=2)
    worker.put(1)
    while not state["in_hand"]:
        time.sleep(0.01)
    # a real SIGINT sent to the main thread: it interrupts the caller blocked in close(), as Ctrl-C does (with
    # Python's own handler: another library in the session may have installed its own)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        main = threading.main_thread().ident
        threading.Timer(0.2, signal.pthread_kill, (main, signal.SIGINT)).start()
        threading.Timer(0.6, gate.set).start()
        with pytest.raises(KeyboardInterrupt):
            worker.close()
    finally:
        signal.signal(signal.SIGINT, previous)
    assert state["done"] and worker._finished.is_set()


def test_video_writer_refuses_writes_after_it_failed(tmp_path):
    writer = video_write.VideoWriter(tmp_path / "o.mp4", 25, 96, 64)
    writer.abort()
    with pytest.raises(OutputError, match="already finished or failed"):
        writer.write(_frames(1))
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------------------------
# Ahead: an iterator's items made on a worker thread, ahead of the consumer
# ---------------------------------------------------------------------------------------------------------------

from musetalk_core.io.background import Ahead  # noqa: E402


def _ahead_threads():
    return [t for t in threading.enumerate() if t.name == "musetalk-ahead"]


def test_ahead_gives_every_item_in_order_made_on_its_worker_under_inference_mode():
    made_on = []

    def items():
        for i in range(20):
            made_on.append((threading.current_thread().name, torch.is_inference_mode_enabled()))
            yield i

    assert list(Ahead(items(), depth=2)) == list(range(20))
    assert set(made_on) == {("musetalk-ahead", True)}
    assert _ahead_threads() == []  # the worker has ended with the last item


def test_ahead_stays_within_depth_of_the_consumer():
    made = []

    def items():
        for i in range(10):
            made.append(i)
            yield i

    ahead = Ahead(items(), depth=1)
    assert next(ahead) == 0
    time.sleep(0.3)
    # item 0 taken, item 1 queued, item 2 made and waiting to be queued: no further
    assert made == [0, 1, 2]
    assert next(ahead) == 1
    time.sleep(0.3)
    assert made == [0, 1, 2, 3]
    ahead.close()


def test_ahead_copy_runs_on_the_worker_before_the_next_item_is_made():
    """The copy of item k is taken before item k + 1 overwrites the shared buffer (a CUDA-graph runner's output)."""
    buffer = torch.zeros(3)

    def items():
        for i in range(5):
            buffer.fill_(i)  # the next item reuses the buffer
            yield buffer

    got = list(Ahead(items(), depth=2, copy=lambda b: b.clone()))
    assert [int(b[0]) for b in got] == [0, 1, 2, 3, 4]
    assert [int(b[0]) for b in Ahead(items(), depth=2)] != [0, 1, 2, 3, 4]  # without the copy they would not be


def test_ahead_reraises_the_iterators_error_after_the_items_before_it():
    def items():
        yield 1
        yield 2
        raise OutputError("the disk is full")

    ahead = Ahead(items())
    assert next(ahead) == 1 and next(ahead) == 2
    with pytest.raises(OutputError, match="disk is full"):
        next(ahead)
    with pytest.raises(StopIteration):
        next(ahead)


def test_ahead_first_waits_for_the_first_item_and_keeps_it():
    started = threading.Event()
    made = []

    def items():
        started.set()
        time.sleep(0.2)
        for i in range(3):
            made.append(i)
            yield i

    ahead = Ahead(items(), depth=1)
    ahead.first()
    assert made[:1] == [0]
    assert list(ahead) == [0, 1, 2]
    empty = Ahead(iter(()))
    empty.first()
    assert list(empty) == []

    def failing():
        raise ValueError("no batch")
        yield  # noqa: unreachable - makes it a generator

    with pytest.raises(ValueError, match="no batch"):
        Ahead(failing()).first()


def test_ahead_close_stops_the_worker_and_closes_the_iterator_on_it():
    closed_on = []

    def items():
        try:
            for i in range(1000):
                yield i
        finally:
            closed_on.append(threading.current_thread().name)

    ahead = Ahead(items(), depth=2)
    assert next(ahead) == 0
    ahead.close()
    assert closed_on == ["musetalk-ahead"]  # its finally ran on the worker, not the consumer's thread
    assert _ahead_threads() == []
    with pytest.raises(StopIteration):
        next(ahead)


def test_ahead_enters_its_context_on_the_worker_around_the_whole_iteration():
    events = []

    class Context:
        def __enter__(self):
            events.append(("enter", threading.current_thread().name))

        def __exit__(self, *exc):
            events.append(("exit", threading.current_thread().name))

    def items():
        events.append(("item", threading.current_thread().name))
        yield 1

    assert list(Ahead(items(), context=Context)) == [1]
    assert events == [("enter", "musetalk-ahead"), ("item", "musetalk-ahead"), ("exit", "musetalk-ahead")]


def test_ahead_starts_no_worker_before_the_first_request_and_closes_unstarted():
    closed_on = []

    def items():
        try:
            yield 1
        finally:
            closed_on.append(threading.current_thread().name)

    ahead = Ahead(items())
    time.sleep(0.05)
    assert _ahead_threads() == []  # nothing made before anyone asked
    it = items()
    next(it)  # a started generator: close() must run its finally
    unstarted = Ahead(it)
    unstarted.close()
    assert closed_on == [threading.current_thread().name] and _ahead_threads() == []
    assert list(ahead) == [1]
