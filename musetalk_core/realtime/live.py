"""One client's session inside the server: its audio inbox, the frames it is owed, and a pump that hands them out at
the avatar's frame rate into a bounded outbox (a slow client loses frames there; nobody else waits for it).

Threads: the batcher's worker thread calls ``feed``/``work``/``deliver``/``collect`` (every AvatarSession call that
computes); the event loop runs the pump and asks for idle frames. ``lock`` keeps the two from touching the session at
once; the pump never waits for it (a busy session simply shows its next frame a tick later).
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import statistics
import struct
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple, Union

import numpy as np

log = logging.getLogger("musetalk_core.realtime")

# WebSocket frame message: uint32 LE output frame number, uint8 flags, 3 reserved bytes, then the JPEG
FRAME_HEADER = struct.Struct("<IB3x")
IDLE_FLAG = 1
_FINISH = object()  # inbox marker: end of speech
PREROLL_S = 0.2     # silence kept before an utterance's first sound
AHEAD_S = 2.0       # speech frames made and not yet shown: beyond this the session's audio waits (audio sent
                    # faster than real time must not turn into seconds of full-size frames in memory)
MAX_BACKLOG_S = 60.0  # audio received and not yet fed to the session: beyond this the session ends


def control_kind(message) -> Optional[str]:
    """The "type" of a client's JSON text message ({"type": "end"}), or None for anything else (not text, not
    JSON, not an object, nested too deep to parse)."""
    if not isinstance(message, str):
        return None
    try:
        value = json.loads(message)
    except (ValueError, RecursionError):
        return None
    kind = value.get("type") if isinstance(value, dict) else None
    return kind if isinstance(kind, str) else None


def level_db(samples: np.ndarray) -> float:
    """RMS level of a chunk in dBFS (int16 or float samples, any channels)."""
    x = np.asarray(samples, dtype=np.float32)
    if np.asarray(samples).dtype == np.int16:
        x = x / 32768.0
    rms = float(np.sqrt(np.mean(np.square(x)))) if x.size else 0.0
    return 20.0 * np.log10(max(rms, 1e-10))


@dataclass(frozen=True)
class OutFrame:
    number: int          # the session's output frame number
    image: np.ndarray    # uint8 (H, W, 3)
    idle: bool           # shown while no utterance is under way (nothing generated)


Control = Dict[str, Any]  # a JSON message for the client (ready, done, error)


class Outbox:
    """Frames and control messages for one client, in order. Holds at most ``max_frames`` frames: putting one more
    drops the oldest frame (counted), so the newest picture is what a slow client gets; control messages stay."""

    def __init__(self, max_frames: int):
        self.max_frames = max(1, int(max_frames))
        self.items: Deque[Union[OutFrame, Control]] = collections.deque()
        self.frames = 0
        self.dropped = 0
        self._ready = asyncio.Event()

    def put(self, item: Union[OutFrame, Control]) -> None:
        if isinstance(item, OutFrame):
            if self.frames >= self.max_frames:
                self._drop_oldest_frame()
            self.frames += 1
        self.items.append(item)
        self._ready.set()

    def _drop_oldest_frame(self) -> None:
        for i, old in enumerate(self.items):
            if isinstance(old, OutFrame):
                del self.items[i]
                self.frames -= 1
                self.dropped += 1
                return

    async def get(self) -> Union[OutFrame, Control]:
        while not self.items:
            self._ready.clear()
            await self._ready.wait()
        item = self.items.popleft()
        if isinstance(item, OutFrame):
            self.frames -= 1
        return item


class Live:
    """A live AvatarSession and what the server keeps beside it.

    Utterances: sound opens one (``hear``); the client's ``end``, ``pause_s`` of silence or ``pause_s`` without any
    audio closes it (the session's ``finish``: its last frames, which wait for audio after them, are then made).
    The avatar idles only when no utterance is open and every speech frame has been handed out, so idle frames
    never cut into speech."""

    def __init__(self, session, avatar_name: str, session_id: str, fps: float, *, queue_frames: int,
                 pause_s: float, lookahead_ms: int, silence_db: float = -45.0,
                 wake: Callable[[], None] = lambda: None):
        self.session = session
        self.avatar_name = avatar_name
        self.id = session_id
        self.fps = float(fps)
        self.lookahead_ms = int(lookahead_ms)
        self.pause_s = float(pause_s)
        self.silence_db = float(silence_db)
        self.wake = wake                 # tells the batcher there is something to do
        self.lock = threading.Lock()
        self.inbox: Deque[Any] = collections.deque()   # (samples, rate) or _FINISH; the worker drains it
        self.ready: Deque[OutFrame] = collections.deque()   # speech frames the pump has yet to hand out
        self.outbox = Outbox(queue_frames)
        self.on_frame: Optional[Callable[[OutFrame], None]] = None   # e.g. WebRTC's audio gate
        self.on_audio: Optional[Callable[[np.ndarray, int], None]] = None   # the audio the session gets
        self.hang_up: Optional[Callable[[str], Any]] = None   # async (message): tells the client, closes its connection
        self.error: Optional[str] = None
        self.closed = False
        self.speaking = False            # an utterance is open (audio came, no end yet)
        self.session_done = True         # the session has no speech frame left to hand out (as last collected)
        self._done_due = False           # a 'done' message is owed once the utterance's frames are out
        self.last_audio = -1e9           # time.monotonic() of the last audio chunk
        self._silent_run_s = 0.0         # audio seconds of silence since the last sound (in an utterance)
        self._preroll: Deque[Tuple[np.ndarray, int]] = collections.deque()   # silence before an utterance
        self._preroll_s = 0.0
        self._fed_s = 0.0                # audio seconds the worker has fed to the session (worker side)
        self.max_ahead_frames = max(1, round(AHEAD_S * self.fps))
        self.counts = collections.Counter()
        self._arrivals: Deque[Tuple[float, float]] = collections.deque()   # (audio seconds pushed so far, time)
        self._pushed_s = 0.0
        self.latencies: Deque[float] = collections.deque(maxlen=250)
        self.pump_task: Optional[asyncio.Task] = None

    # ---- event loop side: audio in ----
    def hear(self, samples: np.ndarray, rate: int) -> None:
        """A chunk of the client's audio. Silence (below the session's silence threshold) outside an utterance is
        not sent to the session: a microphone left open costs nothing and the avatar idles. Sound opens an
        utterance, with the last PREROLL_S of silence before it (a soft onset); ``pause_s`` of silence closes it."""
        now = time.monotonic()
        self.last_audio = now
        seconds = len(samples) / float(rate)
        if level_db(samples) >= self.silence_db:
            self._silent_run_s = 0.0
        elif not self.speaking:
            self._preroll.append((samples, int(rate)))
            self._preroll_s += seconds
            while self._preroll_s > PREROLL_S and len(self._preroll) > 1:
                old, old_rate = self._preroll.popleft()
                self._preroll_s -= len(old) / float(old_rate)
            self.counts["silent_chunks_skipped"] += 1
            return
        else:
            self._silent_run_s += seconds
        while self._preroll:
            self._push(*self._preroll.popleft(), now)
        self._preroll_s = 0.0
        self._push(samples, int(rate), now)
        if self._silent_run_s >= self.pause_s:
            self.finish()

    def _push(self, samples: np.ndarray, rate: int, now: float) -> None:
        if self.error is not None:
            return
        if self._pushed_s - self._fed_s > MAX_BACKLOG_S:
            self.fail(f"the audio arrives faster than real time: more than {MAX_BACKLOG_S:g} s of it is waiting; "
                      "send it at its real pace")
            return
        self.speaking = True
        self.session_done = False
        self._pushed_s += len(samples) / float(rate)
        self._arrivals.append((self._pushed_s, now))
        self.inbox.append((samples, rate))
        if self.on_audio is not None:
            self.on_audio(samples, rate)
        self.wake()

    def finish(self) -> None:
        """The utterance is over (the client said so, or it paused)."""
        self._silent_run_s = 0.0
        if self.speaking:
            self.speaking = False
            self._done_due = True
            # the utterance gives floor(D x fps) frames: its audio past the last frame's start shows in no frame,
            # so the latency clock (frames against audio seconds) drops it rather than drift by it per utterance
            self._pushed_s = np.floor(self._pushed_s * self.fps + 1e-6) / self.fps
            self.inbox.append(_FINISH)
            self.wake()

    # ---- worker thread side ----
    def feed(self, max_seconds: float) -> bool:
        """Up to ``max_seconds`` of the audio that arrived, into the session (resampling, Whisper windows); a
        session that fell behind catches up over several steps, and a long message is fed in parts, so no step
        runs long. True: more is waiting."""
        fed = 0.0
        with self.lock:
            while self.inbox and fed < max_seconds:
                item = self.inbox.popleft()
                if item is _FINISH:
                    self.session.finish()
                    continue
                samples, rate = item
                room = max(1, int(np.ceil((max_seconds - fed) * rate - 1e-6)))  # no stray sample from rounding
                if len(samples) > room:  # the rest goes back first in line (the loop only appends on the right)
                    self.inbox.appendleft((samples[room:], rate))
                    samples = samples[:room]
                self.session.push_audio(samples, rate)
                fed += len(samples) / float(rate)
        self._fed_s += fed
        return bool(self.inbox)

    def ahead(self) -> bool:
        """Enough speech frames are made and waiting for the pump: the session's next step can wait."""
        return len(self.ready) >= self.max_ahead_frames

    def work(self, limit: int) -> list:
        with self.lock:
            return self.session.work(limit)

    def deliver(self, items: list, faces) -> None:
        with self.lock:
            self.session.deliver(items, faces)

    def collect(self) -> Tuple[List[Tuple[int, np.ndarray]], bool]:
        """(finished frames, whether the session then had nothing more to hand out)."""
        with self.lock:
            frames = self.session.frames()
            return frames, bool(self.session.done)

    # ---- event loop side: frames out ----
    def take(self, frames: List[Tuple[int, np.ndarray]], done: bool) -> None:
        self.ready.extend(OutFrame(int(n), image, False) for n, image in frames)
        # audio that came while the worker ran is a new utterance: not done, whatever the worker saw
        self.session_done = done and not self.inbox and not self.speaking

    def next_frame(self) -> Optional[OutFrame]:
        """This tick's frame: the next speech frame, an idle frame while no speech is under way, or None (speech
        frames are still being made: the latency)."""
        if self.ready:
            return self.ready.popleft()
        if not self.session_done or self.speaking or self.inbox or not self.lock.acquire(blocking=False):
            return None
        try:
            number, image = self.session.idle_frame()
        except RuntimeError:  # speech frames were scheduled meanwhile: they go first
            return None
        finally:
            self.lock.release()
        return OutFrame(int(number), image, True)

    def emit(self, frame: OutFrame) -> None:
        self.counts["idle" if frame.idle else "speech"] += 1
        if not frame.idle:
            self._note_latency()
        if self.on_frame is not None:
            self.on_frame(frame)
        self.outbox.put(frame)

    def _note_latency(self) -> None:
        """Seconds from the arrival of the audio a speech frame ends on to the frame leaving the pump."""
        frame_end_s = self.counts["speech"] / self.fps
        while len(self._arrivals) > 1 and self._arrivals[0][0] < frame_end_s:
            self._arrivals.popleft()
        if self._arrivals and self._arrivals[0][0] >= frame_end_s:
            self.latencies.append(time.monotonic() - self._arrivals[0][1])

    def control(self, message: Control) -> None:
        self.outbox.put(message)

    def tick(self) -> None:
        """One tick of the avatar's clock."""
        if self.speaking and time.monotonic() - self.last_audio > self.pause_s:   # the client stopped sending
            self.finish()
        frame = self.next_frame()
        if frame is not None:
            self.emit(frame)
        if self._done_due and self.session_done and not self.ready:
            self._done_due = False
            self.control({"type": "done", **self.stats()})

    async def pump(self) -> None:
        """One tick per frame period. Ticks up to 0.25 s late are made up at once (a short burst keeps the clock);
        later than that the clock starts again. A tick that fails ends the session with its reason."""
        loop = asyncio.get_running_loop()
        period = 1.0 / self.fps
        start, tick = loop.time(), 0
        while not self.closed:
            tick += 1
            delay = start + tick * period - loop.time()
            if delay < -0.25:  # the loop was held up: start the clock again rather than catch up in a burst
                start, tick, delay = loop.time(), 0, 0.0
            await asyncio.sleep(max(0.0, delay))
            try:
                self.tick()
            except Exception as exc:  # noqa: BLE001 - the client is told; other sessions go on
                log.exception("MuseTalk real-time session %s: the frame clock failed", self.id)
                self.fail(f"the session failed: {exc}")
                return

    def fail(self, message: str) -> None:
        self.error = message
        self.control({"type": "error", "message": message})

    def stats(self) -> Dict[str, Any]:
        lat = sorted(self.latencies)
        return {"session": self.id, "avatar": self.avatar_name, "audio_seconds": round(self._pushed_s, 4),
                "speech_frames": self.counts["speech"],
                "idle_frames": self.counts["idle"], "dropped_frames": self.outbox.dropped,
                "latency_ms": None if not lat else round(1000 * statistics.median(lat)),
                "latency_p90_ms": None if not lat else round(1000 * lat[int(0.9 * (len(lat) - 1))])}
