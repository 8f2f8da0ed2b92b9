"""What the server shares between its clients: the loaded networks, the avatars (each loaded once), the batcher,
and the live sessions, with the limits and refusals (unknown avatar, too many sessions, LatentSync)."""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

from ..errors import InputError
from .batcher import Batcher
from .live import Live

log = logging.getLogger("musetalk_core.realtime")
HANG_UP_S = 2.0   # how long shutdown waits for one client's goodbye
LATENTSYNC_REFUSAL = ("LatentSync is not real time (it denoises every frame many times over); the real-time server "
                      "runs MuseTalk avatars only (python -m musetalk_core avatar ...).")


class Refused(Exception):
    """A request the server turns down: HTTP ``status`` and a message for the client."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message

    def response(self):
        """The HTTP answer: JSON {"type": "error", "message": ...} with the status."""
        from aiohttp import web

        return web.json_response({"type": "error", "message": self.message}, status=self.status)


@dataclass(frozen=True)
class HubSettings:
    max_sessions: int = 8
    batch_size: int = 8
    queue_seconds: float = 1.0     # a client's outbox holds this much video; more and its oldest frames drop
    send_buffer_bytes: int = 256 * 1024   # a WebSocket's kernel send buffer (0: the system's, up to megabytes)
    pause_s: float = 0.5           # this much silence, or no audio for this long, ends an utterance
    decoder: str = "vae"
    acceleration: str = "off"    # the UNet + decoder step (accel.py): compiled / captured once
    context_seconds: float = 30.0  # the live Whisper encoder's context (stream_windows.py; 30: as offline)
    block_ms: int = 200            # audio per live encoder call (stream_windows.py): latency against encoder calls
    jpeg_quality: int = 85


class Hub:
    def __init__(self, models, avatars_dir: Path, settings: HubSettings = HubSettings(), *,
                 session_factory: Optional[Callable] = None, generate: Optional[Callable] = None,
                 options=None):
        self.models = models
        self.avatars_dir = Path(avatars_dir)
        self.settings = settings
        self.options = options
        self._session_factory = session_factory
        self._generate = generate
        self.lives: Dict[str, Live] = {}
        self._opening = 0
        self._avatars: Dict[str, object] = {}   # by folder name (what clients ask for)
        self._loading: Dict[str, asyncio.Task] = {}
        self.batcher: Optional[Batcher] = None
        self.encoder = None   # JPEG encoding beside the event loop
        self.peers: set = set()   # WebRTC peer connections (closed on shutdown)
        self._tasks: set = set()

    # ---- lifecycle ----
    async def start(self) -> None:
        generate = self._generate
        if generate is None:
            from .session import generate_batch as generate
        self.batcher = Batcher(self.models, self.settings.batch_size, generate, self.settings.decoder,
                               self.settings.acceleration)
        self.batcher.start()
        # JPEG encoding for every session's frames: 25 a second each, so the pool grows with the sessions served
        workers = max(2, min(os.cpu_count() or 2, self.settings.max_sessions))
        self.encoder = ThreadPoolExecutor(workers, thread_name_prefix="musetalk-jpeg")

    async def stop(self) -> None:
        """Every session closed (its client told), the batcher stopped, every thread joined."""
        lives = list(self.lives.values())
        for live in lives:   # no more frames while the clients are told
            if live.pump_task is not None:
                live.pump_task.cancel()
        await asyncio.gather(*(self._hang_up(live) for live in lives))
        for live in lives:
            await self.close(live)
        for peer in list(self.peers):
            await peer.close()
        self.peers.clear()
        if self.batcher is not None:
            await self.batcher.stop()
        if self.encoder is not None:
            self.encoder.shutdown(wait=True)

    @staticmethod
    async def _hang_up(live: Live) -> None:
        """Tell the client and close its connection; a client that does not read would hold the goodbye forever,
        so it gets HANG_UP_S (the runner then cuts its connection)."""
        if live.hang_up is None:
            return
        try:
            await asyncio.wait_for(live.hang_up("the server is shutting down"), HANG_UP_S)
        except (Exception, asyncio.TimeoutError) as exc:  # gone, or not reading
            log.debug("hang up %s: %r", live.id, exc)

    # ---- avatars ----
    def avatar_names(self) -> List[str]:
        from .avatar import list_avatars

        return list_avatars(self.avatars_dir) if self.avatars_dir.is_dir() else []

    async def avatar(self, name: Optional[str]):
        if name in self._avatars:
            return self._avatars[name]
        names = self.avatar_names()
        if not name or name not in names:
            listed = ", ".join(names) if names else "none (make one: python -m musetalk_core avatar ...)"
            what = f"unknown avatar '{name}'" if name else "no avatar named (?avatar=NAME)"
            raise Refused(404, f"{what}; avatars in {self.avatars_dir}: {listed}")
        # read beside the batcher (a large avatar takes seconds: the sessions running meanwhile must not wait), once
        # for clients that ask for it together; a client that leaves does not cancel it for the others
        loading = self._loading.get(name)
        if loading is None:
            loading = asyncio.get_running_loop().create_task(asyncio.to_thread(self._load_avatar, name))
            self._loading[name] = loading
            loading.add_done_callback(lambda _task, key=name: self._loading.pop(key, None))
        avatar = await asyncio.shield(loading)
        self._avatars[name] = avatar
        return avatar

    def _load_avatar(self, name: str):
        from .avatar import load_avatar

        try:
            avatar = load_avatar(self.avatars_dir / name, models=self.models)
        except InputError as exc:
            raise Refused(409, str(exc)) from None
        if str(avatar.settings.get("generator", "musetalk")) != "musetalk":
            raise Refused(409, f"avatar '{name}': {LATENTSYNC_REFUSAL}")
        return avatar

    # ---- sessions ----
    async def open(self, avatar_name: Optional[str]) -> Live:
        """A new live session (not yet pumping: the caller sends 'ready' first, then calls ``begin``)."""
        if len(self.lives) + self._opening >= self.settings.max_sessions:
            raise Refused(503, f"the server is full: {self.settings.max_sessions} sessions at most "
                               f"(--max-sessions); try again later")
        self._opening += 1
        try:
            avatar = await self.avatar(avatar_name)
            session_id = uuid.uuid4().hex[:12]
            try:
                session = await self.batcher.call(self._new_session, avatar, session_id)
            except InputError as exc:
                raise Refused(409, str(exc)) from None
        finally:
            self._opening -= 1
        fps = float(session.fps)
        live = Live(session, avatar_name, session_id, fps, lookahead_ms=int(session.lookahead_ms),
                    queue_frames=max(2, round(self.settings.queue_seconds * fps)), pause_s=self.settings.pause_s,
                    silence_db=float(getattr(self.options, "silence_threshold_db", -45.0)), wake=self.batcher.wake)
        self.lives[session_id] = live
        return live

    def _new_session(self, avatar, session_id: str):
        factory = self._session_factory
        if factory is None:
            from .session import AvatarSession as factory
        return factory(self.models, avatar, self.options, session_id=session_id,
                       context_seconds=self.settings.context_seconds, block_ms=self.settings.block_ms)

    def spawn(self, coro) -> asyncio.Task:
        """A task the hub holds until it ends (the loop itself keeps only weak references to tasks)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def begin(self, live: Live) -> None:
        self.batcher.lives.append(live)
        live.pump_task = asyncio.get_running_loop().create_task(live.pump(), name=f"musetalk-pump-{live.id}")

    def ready_message(self, live: Live) -> dict:
        avatar = self._avatars[live.avatar_name]
        return {"type": "ready", "session": live.id, "avatar": live.avatar_name, "fps": live.fps,
                "size": list(avatar.frame_size), "lookahead_ms": live.lookahead_ms, "sample_rate": 16000,
                "frame_header": "uint32 LE frame number, uint8 flags (1 = idle), 3 reserved bytes, then a JPEG"}

    async def close(self, live: Live) -> None:
        if live.closed:
            return
        live.closed = True
        self.lives.pop(live.id, None)
        if self.batcher is not None and live in self.batcher.lives:
            self.batcher.lives.remove(live)
        if live.pump_task is not None:
            live.pump_task.cancel()
            try:
                await live.pump_task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - the pump's own failure was reported
                pass
        stats = live.stats()
        log.info("MuseTalk real-time session %s closed: %s", live.id, stats)
        if stats["dropped_frames"]:
            log.warning("MuseTalk real-time session %s: %d frame(s) dropped (the client read too slowly)",
                        live.id, stats["dropped_frames"])

    def stats(self) -> dict:
        b = self.batcher
        return {"sessions": [live.stats() for live in self.lives.values()],
                "max_sessions": self.settings.max_sessions,
                "batches": b.batches if b else 0, "generated_frames": b.generated if b else 0}
