"""WebRTC for the real-time server (aiortc, optional: requirements-server.txt). POST /offer takes the client's SDP
offer (one audio track: the speech; a video transceiver to receive) and answers with a video track of the avatar's
frames and an audio track that plays the client's audio back delayed to match them. An optional data channel carries
the control messages ({"type": "end"} in; ready/done/error out), as on the WebSocket."""

from __future__ import annotations

import asyncio
import collections
import fractions
import json
import logging
import time
from typing import Deque, List, Optional

import numpy as np
from aiohttp import web

from .hub import Hub, Refused
from .live import Live, OutFrame, control_kind

log = logging.getLogger("musetalk_core.realtime")
AUDIO_PTIME = 0.02          # 20 ms audio frames out, as WebRTC sends them
VIDEO_CLOCK = 90000         # RTP video clock
MAX_AUDIO_BUFFER_S = 5.0    # audio kept for playback while frames are late; older audio is dropped
ICE_SERVERS: List[str] = []  # set by the command line (--ice-server); none: host candidates only (LAN, localhost)
NO_AIORTC = ("WebRTC needs aiortc, which is not installed: pip install -r requirements-server.txt (or python "
             "install.py --with-server). The WebSocket /ws works without it.")


def aiortc_available() -> bool:
    try:
        import aiortc  # noqa: F401
    except ImportError:
        return False
    return True


def frame_samples(frame) -> np.ndarray:
    """An av.AudioFrame (s16/flt, packed or planar, any channels) -> float32 mono in [-1, 1]."""
    data = frame.to_ndarray()
    channels = len(frame.layout.channels)
    if not frame.format.is_planar:
        data = data.reshape(-1, channels).T
    data = data.astype(np.float32)
    if frame.format.name.startswith("s16"):
        data /= 32768.0
    elif frame.format.name.startswith("s32"):
        data /= 2147483648.0
    return data.mean(axis=0)


def _tracks():
    from aiortc import MediaStreamTrack
    from aiortc.mediastreams import MediaStreamError

    class FrameTrack(MediaStreamTrack):
        """The session's frames, as the pump hands them out (its clock paces them); control messages go to the
        data channel when the client opened one."""

        kind = "video"

        def __init__(self, live: Live, hub: Hub):
            super().__init__()
            self.live = live
            self.hub = hub
            self.channel = None

        async def recv(self):
            import av

            while True:
                if self.live.closed:
                    raise MediaStreamError
                item = await self.live.outbox.get()
                if isinstance(item, OutFrame):
                    break
                if self.channel is not None and self.channel.readyState == "open":
                    self.channel.send(json.dumps(item))
                if item.get("type") == "error" and self.live.hang_up is not None:   # the session is over
                    self.hub.spawn(self.live.hang_up(""))
                    raise MediaStreamError
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(item.image), format="rgb24")
            frame.pts = round(item.number * VIDEO_CLOCK / self.live.fps)
            frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
            return frame

    class DelayedAudio(MediaStreamTrack):
        """The client's own audio, played from the moment its first speech frame shows: delayed by the latency,
        so sound and mouth agree. Each speech frame shown releases one frame period of audio, so when generation
        falls behind the sound waits with the mouth (a gap) instead of running ahead of it. Silence while the
        avatar idles."""

        kind = "audio"

        def __init__(self, fps: float = 25.0):
            super().__init__()
            self.rate = 48000
            self.fps = float(fps)
            self.buffer: Deque[np.ndarray] = collections.deque()
            self.buffered = 0
            self.playing = False
            self.credit = 0.0   # samples the speech frames shown so far allow to play
            self._start: Optional[float] = None
            self._pts = 0

        def feed(self, samples: np.ndarray, rate: int) -> None:
            self.rate = int(rate)
            self.buffer.append(samples)
            self.buffered += len(samples)
            while self.buffered > MAX_AUDIO_BUFFER_S * self.rate and len(self.buffer) > 1:
                self.buffered -= len(self.buffer.popleft())

        def gate(self, frame: OutFrame) -> None:
            if frame.idle:
                self.playing = False
                self.buffer.clear()
                self.buffered = 0
                self.credit = 0.0
            else:
                self.playing = True
                self.credit += self.rate / self.fps

        def _take(self, count: int) -> np.ndarray:
            out = np.zeros(count, np.float32)
            at = 0
            while self.playing and at < count and self.buffer and self.credit >= 1.0:
                head = self.buffer[0]
                n = min(count - at, len(head), int(self.credit))
                self.credit -= n
                out[at:at + n] = head[:n]
                at += n
                if n == len(head):
                    self.buffer.popleft()
                else:
                    self.buffer[0] = head[n:]
                self.buffered -= n
            return out

        async def recv(self):
            import av

            if self.readyState != "live":
                raise MediaStreamError
            rate = self.rate
            count = int(rate * AUDIO_PTIME)
            if self._start is None:
                self._start = time.time()
            else:
                await asyncio.sleep(max(0.0, self._start + self._pts / rate - time.time()))
            pcm = (np.clip(self._take(count), -1.0, 1.0) * 32767).astype("<i2")[None, :]
            frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
            frame.sample_rate = rate
            frame.pts = self._pts
            frame.time_base = fractions.Fraction(1, rate)
            self._pts += count
            return frame

    return FrameTrack, DelayedAudio, MediaStreamError


async def _read_audio(track, live: Live, hub: Hub, playback, stream_error) -> None:
    """The client's audio into the session (and the playback buffer) until its track ends."""
    while not live.closed:
        try:
            frame = await track.recv()
        except stream_error:
            break
        live.hear(frame_samples(frame), frame.sample_rate)
    live.finish()


async def answer(request: web.Request, hub: Hub) -> web.Response:
    if not aiortc_available():
        return Refused(501, NO_AIORTC).response()
    try:
        params = await request.json()
        offer_sdp, offer_type = params["sdp"], params["type"]
    except (ValueError, KeyError, TypeError):
        return Refused(400, 'POST /offer takes JSON {"sdp": ..., "type": "offer", "avatar": NAME}').response()
    try:
        live = await hub.open(params.get("avatar"))
    except Refused as refused:
        return refused.response()
    try:
        pc = await _connect(live, hub, offer_sdp, offer_type)
    except asyncio.CancelledError:  # the client left meanwhile: its session must not hold a slot
        await hub.close(live)
        raise
    except Exception as exc:
        await hub.close(live)
        return Refused(400, f"the WebRTC offer could not be answered: {exc}").response()
    hub.begin(live)
    message = hub.ready_message(live)
    message.update(sdp=pc.localDescription.sdp, type=pc.localDescription.type)
    return web.json_response(message)


async def _connect(live: Live, hub: Hub, offer_sdp: str, offer_type: str):
    from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription

    FrameTrack, DelayedAudio, stream_error = _tracks()
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[RTCIceServer(url) for url in ICE_SERVERS]))
    hub.peers.add(pc)
    video, playback = FrameTrack(live, hub), DelayedAudio(live.fps)
    live.on_frame = playback.gate
    live.on_audio = playback.feed   # what the session hears, so playback starts where its first frame does
    tasks = []

    async def hang_up(message: str = "") -> None:
        if message and video.channel is not None and video.channel.readyState == "open":
            video.channel.send(json.dumps({"type": "error", "message": message}))
        for task in tasks:
            task.cancel()
        await pc.close()
        hub.peers.discard(pc)
        await hub.close(live)

    live.hang_up = hang_up

    @pc.on("track")
    def on_track(track):
        if track.kind == "audio":
            tasks.append(asyncio.ensure_future(_read_audio(track, live, hub, playback, stream_error)))

    @pc.on("datachannel")
    def on_datachannel(channel):
        video.channel = channel

        @channel.on("message")
        def on_message(message):
            if control_kind(message) == "end":
                live.finish()
            elif channel.readyState == "open":
                channel.send(json.dumps({"type": "error", "message": 'the data channel takes {"type": "end"}'}))

    @pc.on("connectionstatechange")
    async def on_state():
        if pc.connectionState in ("failed", "closed"):
            await hang_up()

    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type=offer_type))
        pc.addTrack(video)      # after the offer: they take its video and audio transceivers
        pc.addTrack(playback)
        await pc.setLocalDescription(await pc.createAnswer())
    except BaseException:
        await pc.close()
        hub.peers.discard(pc)
        raise
    return pc
