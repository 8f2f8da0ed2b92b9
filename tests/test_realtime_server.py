"""The real-time server (musetalk_core.realtime.server) end to end on tiny networks and a tiny avatar, through real
sockets on 127.0.0.1: WebSocket speech and idle frames, a client that never reads stalling nobody, WebRTC with an
aiortc client, the refusals, a clean stop on SIGTERM, and the web page in headless Chromium (where installed).

The sessions are the real AvatarSession and generate_batch. The speech is mostly silence with a short tone, so only
a few frames need the (slow on a shared CPU) UNet and VAE: the tests check counts and order, not speed."""

from __future__ import annotations

import asyncio
import io
import json
import math
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from aiohttp import ClientSession, WSMsgType, WSServerHandshakeError
from aiohttp.test_utils import TestServer
from PIL import Image

from media import write_wav
from musetalk_core import cli
from musetalk_core.io.sources import TensorSource
from musetalk_core.options import LipsyncOptions
from musetalk_core.realtime.avatar import load_avatar, prepare_avatar
from musetalk_core.realtime.hub import Hub, HubSettings
from musetalk_core.realtime.live import FRAME_HEADER, IDLE_FLAG
from musetalk_core.realtime.server import make_app
from musetalk_core.weights.loading import load_models
from test_faces import synthetic_video

ROOT = Path(__file__).resolve().parents[1]
FPS = 25
RATE = 16000
WAIT = 300.0   # seconds a test waits for frames at most (the tiny VAE decoder is slow on a busy 2-core CPU)


SECONDS = 0.76   # one utterance: the silence after the tone (0.44 s) is shorter than the server's pause (0.5 s)


def speech(seconds: float = SECONDS, rate: int = RATE, voiced=(0.12, 0.32)) -> np.ndarray:
    """float32 (S,): silence with a syllable-like tone in ``voiced`` (seconds): few frames to generate."""
    t = np.arange(int(round(seconds * rate))) / rate
    wave = 0.4 * np.sin(2 * np.pi * 220 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    wave[(t < voiced[0]) | (t >= voiced[1])] = 0.0
    return wave.astype(np.float32)


def pcm16(samples: np.ndarray) -> np.ndarray:
    return np.round(np.clip(samples, -1, 1) * 32767).astype("<i2")


@pytest.fixture(scope="module")
def models_dir(tiny_models_factory):
    return tiny_models_factory("v15")


@pytest.fixture(scope="module")
def models(models_dir):
    return load_models([models_dir], "v15", precision="fp32", device="cpu")


@pytest.fixture(scope="module")
def avatars(models, tmp_path_factory):
    root = tmp_path_factory.mktemp("avatars")
    frames = torch.from_numpy(synthetic_video(7))
    prepare_avatar(models, TensorSource(frames), FPS, LipsyncOptions(face_batch_size=4, vae_batch_size=4), root,
                   "anna")
    return root


@pytest.fixture(scope="module")
def avatar(avatars):
    return load_avatar(avatars / "anna")


def server_threads():
    """The server's own threads (batcher worker, JPEG encoders); the pack's shared CPU pool is not the server's."""
    return [t.name for t in threading.enumerate() if t.name.startswith(("musetalk-realtime", "musetalk-jpeg"))]


@asynccontextmanager
async def serve(models, avatars, generate=None, **settings):
    """The app on a real port of 127.0.0.1; on leaving, its shutdown must leave no thread of its own behind."""
    hub = Hub(models, avatars, HubSettings(**settings), generate=generate)
    server = TestServer(make_app(hub), host="127.0.0.1")
    await server.start_server()
    try:
        yield server, hub
    finally:
        await server.close()
        assert server_threads() == [], "the server's threads outlived it"


def unpack(data: bytes):
    number, flags = FRAME_HEADER.unpack_from(data)
    image = np.asarray(Image.open(io.BytesIO(data[FRAME_HEADER.size:])).convert("RGB"))
    return number, bool(flags & IDLE_FLAG), image


async def next_message(ws, frames: list, timeout: float = WAIT):
    """The next text message (as JSON); binary frames met on the way are appended to ``frames``."""
    while True:
        msg = await asyncio.wait_for(ws.receive(), timeout)
        if msg.type == WSMsgType.BINARY:
            frames.append(unpack(msg.data))
        elif msg.type == WSMsgType.TEXT:
            return json.loads(msg.data)
        else:
            # the code the server closed with (the client's own close_code can say 1006 when the server has
            # already hung up by the time the client's reply would go)
            return {"type": "closed", "code": msg.data if msg.type == WSMsgType.CLOSE else ws.close_code}


async def next_frame(ws, timeout: float = WAIT):
    while True:
        msg = await asyncio.wait_for(ws.receive(), timeout)
        if msg.type == WSMsgType.BINARY:
            return unpack(msg.data)
        assert msg.type == WSMsgType.TEXT, msg


async def talk(ws, samples: np.ndarray, chunk_ms: int = 20) -> None:
    """PCM16 (given, or made from float samples) in chunks of ``chunk_ms``, then the end of the speech."""
    data = samples.astype("<i2") if samples.dtype == np.int16 else pcm16(samples)
    step = RATE * chunk_ms // 1000
    for at in range(0, len(data), step):
        await ws.send_bytes(data[at:at + step].tobytes())
    await ws.send_json({"type": "end"})


# ---------------------------------------------------------------------------------------------------- WebSocket

def test_websocket_gives_the_speech_frames_between_marked_idle_frames(models, avatars, avatar, tmp_path):
    seconds = SECONDS
    wav = write_wav(tmp_path / "speech.wav", speech(seconds)[None], RATE)
    import soundfile

    samples, rate = soundfile.read(str(wav), dtype="int16")   # a WAV's PCM16, as a client would send it
    assert rate == RATE

    async def run():
        async with serve(models, avatars) as (server, hub):
            async with ClientSession() as http:
                ws = await http.ws_connect(server.make_url("/ws?avatar=anna&rate=16000"))
                ready = await ws.receive_json()
                frames = [await next_frame(ws) for _ in range(3)]   # no audio yet: the avatar idles
                await talk(ws, samples)
                done = await next_message(ws, frames)
                frames += [await next_frame(ws) for _ in range(3)]  # and idles again after the speech
                await ws.close()
            return ready, frames, done

    ready, frames, done = asyncio.run(run())
    assert ready["type"] == "ready" and ready["fps"] == FPS and ready["size"] == list(avatar.frame_size)
    assert ready["lookahead_ms"] > 0
    assert done["type"] == "done", done
    numbers = [n for n, _, _ in frames]
    assert numbers == list(range(len(frames))), "frames are numbered on one clock, none missing"
    pattern = "".join("i" if idle else "s" for _, idle, _ in frames)
    assert re.fullmatch(r"i{3,}s+i{3,}", pattern), pattern
    speech_frames = [f for f in frames if not f[1]]
    assert len(speech_frames) == math.floor(seconds * FPS) == done["speech_frames"]
    assert done["dropped_frames"] == 0
    # frame n shows source frame idle_order[n]: as it is when idle or silent, with a generated face when voiced
    order = avatar.idle_order(len(frames)).tolist()
    diff = [float(np.abs(img.astype(int) - avatar.frames[order[n]]).mean()) for n, _, img in frames]
    idle_diff = max(d for d, f in zip(diff, frames) if f[1])
    assert idle_diff < 8, "an idle frame is its source frame (up to JPEG)"
    for n, idle, img in frames:
        if idle:   # and no other source frame
            nearest = np.argmin([np.abs(img.astype(int) - src).mean() for src in avatar.frames])
            assert nearest == order[n], (n, nearest, order[n])
    voiced = [d for d, f in zip(diff, frames) if not f[1]]
    assert max(voiced) > 2 * idle_diff + 2, "the voiced frames carry generated mouths"
    assert sum(d <= idle_diff + 1 for d in voiced) >= 3, "the silent frames show the source frame"


def test_silence_alone_keeps_the_avatar_idle(models, avatars):
    """A microphone left open sends silence: the session hears none of it (no Whisper, no UNet), frames stay idle."""
    async def run():
        async with serve(models, avatars) as (server, hub):
            async with ClientSession() as http:
                ws = await http.ws_connect(server.make_url("/ws?avatar=anna&rate=16000"))
                await ws.receive_json()
                silence = np.zeros(RATE // 50, "<i2").tobytes()
                for _ in range(50):   # 1 s in 20 ms chunks, at the pace of a microphone
                    await ws.send_bytes(silence)
                    await asyncio.sleep(0.02)
                frames = [await next_frame(ws) for _ in range(10)]
                stats = hub.stats()
                await ws.close()
            return frames, stats

    frames, stats = asyncio.run(run())
    assert all(idle for _, idle, _ in frames)
    session = stats["sessions"][0]
    assert session["speech_frames"] == 0 and session["audio_seconds"] == 0
    assert stats["batches"] == 0


def raw_websocket(port: int, path: str) -> socket.socket:
    """A WebSocket client that never reads after the handshake, with a tiny receive buffer (a stalled viewer)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)   # byte by byte: nothing after the handshake is read
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def test_a_client_that_never_reads_loses_its_own_frames_and_stalls_nobody(models, avatars):
    seconds = SECONDS

    async def run():
        async with serve(models, avatars, queue_seconds=0.2, send_buffer_bytes=16384) as (server, hub):
            stalled = await asyncio.to_thread(raw_websocket, server.port, "/ws?avatar=anna&rate=16000")
            try:
                async with ClientSession() as http:
                    ws = await http.ws_connect(server.make_url("/ws?avatar=anna&rate=16000"))
                    await ws.receive_json()
                    frames = []
                    await talk(ws, speech(seconds))
                    done = await next_message(ws, frames)
                    # the stalled client keeps getting idle frames it never reads: give them time to pile up
                    deadline = time.monotonic() + 30
                    while time.monotonic() < deadline:
                        stats = {s["session"]: s for s in hub.stats()["sessions"]}
                        if stats and max(s["dropped_frames"] for s in stats.values()) > 10:
                            break
                        await asyncio.sleep(0.2)
                    await ws.close()
            finally:
                stalled.close()
            return done, frames, stats

    done, frames, stats = asyncio.run(run())
    assert done["type"] == "done" and done["speech_frames"] == math.floor(seconds * FPS)
    assert done["dropped_frames"] == 0
    assert sum(not f[1] for f in frames) == math.floor(seconds * FPS)
    others = [s for sid, s in stats.items() if sid != done["session"]]
    assert len(others) == 1 and others[0]["dropped_frames"] > 10, stats


# ---------------------------------------------------------------------------------------------------- refusals

def test_refusals_say_what_is_wrong(models, avatars, capsys):
    async def run():
        out = {}
        async with serve(models, avatars, max_sessions=1) as (server, hub):
            async with ClientSession() as http:
                url = server.make_url
                r = await http.get(url("/ws?avatar=nobody&rate=16000"))
                out["unknown"] = (r.status, (await r.json())["message"])
                with pytest.raises(WSServerHandshakeError) as caught:
                    await http.ws_connect(url("/ws?avatar=nobody"))
                out["unknown_ws"] = caught.value.status
                r = await http.get(url("/ws?avatar=anna&rate=44100"))
                out["rate"] = (r.status, (await r.json())["message"])
                r = await http.post(url("/offer"), json={"sdp": "v=0", "type": "offer", "avatar": "nobody"})
                out["offer_unknown"] = r.status
                r = await http.post(url("/offer"), data=b"not json")
                out["offer_bad"] = r.status
                out["avatars"] = await (await http.get(url("/avatars"))).json()

                first = await http.ws_connect(url("/ws?avatar=anna&rate=16000"))
                r = await http.get(url("/ws?avatar=anna&rate=16000"))
                out["full"] = (r.status, (await r.json())["message"])
                await first.receive_json()
                await first.send_bytes(b"\x01\x02\x03")   # 3 bytes: not PCM16
                out["odd"] = (await next_message(first, []), await next_message(first, []))
                await first.close()
                for _ in range(100):   # the slot is free once the server has seen the close
                    if not hub.lives:
                        break
                    await asyncio.sleep(0.05)
                second = await http.ws_connect(url("/ws?avatar=anna&rate=16000"))
                await second.receive_json()
                await second.send_str("hello")
                out["text"] = await next_message(second, [])
                await second.close()
        return out

    out = asyncio.run(run())
    assert out["unknown"][0] == 404 and "nobody" in out["unknown"][1] and "anna" in out["unknown"][1]
    assert out["unknown_ws"] == 404
    assert out["rate"][0] == 400 and "16000" in out["rate"][1]
    assert out["offer_unknown"] == 404 and out["offer_bad"] == 400
    assert out["avatars"] == ["anna"]
    assert out["full"][0] == 503 and "--max-sessions" in out["full"][1]
    error, closed = out["odd"]
    assert error["type"] == "error" and "PCM16" in error["message"]
    assert closed == {"type": "closed", "code": 1003}
    assert out["text"]["type"] == "error" and '"end"' in out["text"]["message"]

    assert cli.main(["serve", "--avatars", str(avatars), "--generator", "latentsync15"]) == 2
    assert "not real time" in capsys.readouterr().err


def test_an_avatar_folder_is_served_under_its_folder_name(models, avatars, tmp_path):
    """A copied avatar folder (its avatar.json still names the original) is served as the folder it is in: the
    session opens, speaks, and leaves no slot behind when it closes."""
    folder = tmp_path / "avatars"
    shutil.copytree(avatars / "anna", folder / "bob")

    async def run():
        async with serve(models, folder) as (server, hub):
            async with ClientSession() as http:
                ws = await http.ws_connect(server.make_url("/ws?avatar=bob&rate=16000"))
                ready = await ws.receive_json()
                await talk(ws, speech())
                frames = []
                done = await next_message(ws, frames)
                await ws.close()
            for _ in range(100):
                if not hub.lives:
                    break
                await asyncio.sleep(0.05)
            return ready, done, frames, dict(hub.lives)

    ready, done, frames, lives = asyncio.run(run())
    assert ready["type"] == "ready" and ready["avatar"] == "bob"
    assert done["type"] == "done" and done["avatar"] == "bob" and done["speech_frames"] == math.floor(SECONDS * FPS)
    assert lives == {}


class CountingSession:
    """What Live asks of a session, recording the audio pushed (for the inbox tests: no networks)."""

    def __init__(self):
        self.pushed, self.finished = [], 0

    def push_audio(self, samples, rate):
        self.pushed.append(len(samples) / rate)

    def finish(self):
        self.finished += 1


def test_a_long_message_is_fed_in_parts_and_a_flood_of_audio_is_refused():
    from musetalk_core.realtime import live as live_module
    from musetalk_core.realtime.batcher import Batcher

    session = CountingSession()
    live = live_module.Live(session, "anna", "s", FPS, queue_frames=25, pause_s=0.5, lookahead_ms=280)
    live.hear(pcm16(speech(3.0, voiced=(0.0, 3.0))), RATE)   # one 3 s message
    steps = 0
    while live.feed(0.4):
        steps += 1
    assert steps == 7 and session.pushed[:7] == [0.4] * 7 and sum(session.pushed) == pytest.approx(3.0)

    # frames made and not yet shown: a session AHEAD_S ahead of its clock is left out of the next steps
    batcher = Batcher(None, 8, generate=None)
    batcher.lives.append(live)
    assert batcher.runnable() == [live]
    live.ready.extend([None] * live.max_ahead_frames)
    assert live.ahead() and batcher.runnable() == []

    # audio that keeps coming faster than it can be used: the session ends, told why
    flood = pcm16(speech(1.0, voiced=(0.0, 1.0)))
    for _ in range(int(live_module.MAX_BACKLOG_S) + 2):
        live.hear(flood, RATE)
    assert live.error is not None and "faster than real time" in live.error
    assert live.outbox.items[-1] == {"type": "error", "message": live.error}


def test_a_failing_generation_ends_that_session_with_its_reason(models, avatars):
    calls = []

    def out_of_memory(models, items, **settings):
        calls.append(settings)
        raise RuntimeError("CUDA out of memory (simulated)")

    async def run():
        async with serve(models, avatars, generate=out_of_memory, acceleration="cuda_graphs",
                         batch_size=4) as (server, hub):
            async with ClientSession() as http:
                ws = await http.ws_connect(server.make_url("/ws?avatar=anna&rate=16000"))
                await ws.receive_json()
                await talk(ws, speech())
                error = await next_message(ws, [])
                closed = await next_message(ws, [])
                for _ in range(100):
                    if not hub.lives:
                        break
                    await asyncio.sleep(0.05)
                return error, closed, dict(hub.lives)

    error, closed, lives = asyncio.run(run())
    assert error["type"] == "error" and "out of memory (simulated)" in error["message"]
    assert closed == {"type": "closed", "code": 1011}
    assert lives == {}
    # the server's generation settings reach every batch (--acceleration, --batch-size)
    assert calls and calls[0] == {"decoder": "vae", "acceleration": "cuda_graphs", "batch_size": 4}


# ---------------------------------------------------------------------------------------------------- WebRTC

def test_a_failed_batch_is_retried_per_session_and_fails_only_who_fails_alone():
    """One batch of two sessions fails (as an out-of-memory error on a large batch would): each session's share runs
    again on its own; only a session whose own share fails is told."""
    from musetalk_core.realtime.batcher import Batcher

    class Share:
        def __init__(self):
            self.faces = None

        def deliver(self, items, faces):
            self.faces = list(faces)

    def generate(models, items, **_):
        if len(items) > 2 or "bad" in items:
            raise RuntimeError("out of memory (simulated)")
        return [f"face {item}" for item in items]

    a, b, c = Share(), Share(), Share()
    batcher = Batcher(None, 8, generate)
    failed = {}
    batcher._generate({a: [1, 2], b: [3], c: ["bad"]}, failed)
    assert a.faces == ["face 1", "face 2"] and b.faces == ["face 3"] and c.faces is None
    assert list(failed) == [c] and "out of memory" in str(failed[c])
    assert batcher.batches == 2 and batcher.generated == 3


def test_webrtc_playback_never_runs_ahead_of_the_mouth():
    """Each speech frame shown releases one frame period of the client's audio: a stalled video pauses the sound
    (silence) and it goes on where it stopped; an idle frame drops what is left."""
    pytest.importorskip("aiortc")
    from musetalk_core.realtime.live import OutFrame
    from musetalk_core.realtime.webrtc import _tracks

    _, DelayedAudio, _ = _tracks()
    playback = DelayedAudio(25.0)
    audio = np.arange(1, 48001, dtype=np.float32) / 48000   # 1 s at 48 kHz, every sample distinct
    playback.feed(audio, 48000)
    speech_frame, idle_frame = OutFrame(0, np.zeros((2, 2, 3), np.uint8), False), OutFrame(1, None, True)
    playback.gate(speech_frame)                    # one frame: 40 ms = 1920 samples
    assert np.array_equal(playback._take(960), audio[:960])
    assert np.array_equal(playback._take(960), audio[960:1920])
    assert not playback._take(960).any()           # the next frame is late: silence, nothing skipped
    playback.gate(speech_frame)
    assert np.array_equal(playback._take(960), audio[1920:2880])
    playback.gate(idle_frame)
    assert not playback._take(960).any() and playback.buffered == 0


def test_webrtc_streams_the_avatar_and_plays_the_audio_back(models, avatars, tmp_path):
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from aiortc.contrib.media import MediaPlayer

    seconds = SECONDS
    wav = write_wav(tmp_path / "speech.wav", speech(seconds, 48000)[None], 48000)

    async def run():
        async with serve(models, avatars) as (server, hub):
            pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            pc.addTrack(MediaPlayer(str(wav)).audio)
            pc.addTransceiver("video", direction="recvonly")
            channel = pc.createDataChannel("control")
            messages, got = [], {"video": 0, "audio": 0, "loud": 0, "size": None}
            channel.on("message", lambda m: messages.append(json.loads(m)))

            async def consume(track):
                while True:
                    try:
                        frame = await track.recv()
                    except Exception:
                        return
                    got[track.kind] += 1
                    if track.kind == "video":
                        got["size"] = (frame.height, frame.width)
                    elif np.abs(frame.to_ndarray()).max() > 1000:
                        got["loud"] += 1

            pc.on("track", lambda track: asyncio.ensure_future(consume(track)))
            await pc.setLocalDescription(await pc.createOffer())
            async with ClientSession() as http:
                r = await http.post(server.make_url("/offer"), json={
                    "sdp": pc.localDescription.sdp, "type": pc.localDescription.type, "avatar": "anna"})
                answer = await r.json()
            await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], answer["type"]))
            deadline = time.monotonic() + WAIT   # the player ends; a pause finishes the utterance: 'done'
            while not any(m["type"] == "done" for m in messages) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            await asyncio.sleep(1.0)   # the last frames and audio on their way
            await pc.close()
            return r.status, answer, messages, got

    status, answer, messages, got = asyncio.run(run())
    assert status == 200 and answer["type"] == "answer" and answer["fps"] == FPS
    done = [m for m in messages if m["type"] == "done"]
    assert done, messages
    # the frames of the audio that arrived (WebRTC's jitter buffer may lose a few ms at the edges): one utterance
    assert abs(done[0]["audio_seconds"] - seconds) < 0.15, done
    assert done[0]["speech_frames"] == math.floor(done[0]["audio_seconds"] * FPS + 1e-6), done
    assert got["video"] >= done[0]["speech_frames"], got
    assert got["size"] == (120, 100)
    tone_frames = (0.32 - 0.12) / 0.02
    assert 0.7 * tone_frames <= got["loud"] <= 1.5 * tone_frames, got   # the speech came back, once


# ---------------------------------------------------------------------------------------------------- shutdown

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sigterm_closes_the_sessions_and_exits_cleanly(models_dir, avatars):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "musetalk_core", "serve", "--avatars", str(avatars),
                             "--models-dir", str(models_dir), "--port", str(port), "--device", "cpu",
                             "--precision", "fp32", "--send-buffer-kb", "8", "--acceleration", "cuda_graphs",
                             "--batch-size", "4", "--context-seconds", "6", "--block-ms", "400"], cwd=ROOT,
                            stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    stalled = None
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "real-time server on" in line:
                break
        assert proc.poll() is None, "".join(lines)

        # beside a client that never reads (its goodbye cannot be written: shutdown must not wait for it)
        stalled = raw_websocket(port, "/ws?avatar=anna&rate=16000")

        async def client():
            async with ClientSession() as http:
                ws = await http.ws_connect(f"http://127.0.0.1:{port}/ws?avatar=anna&rate=16000")
                ready = await ws.receive_json()
                for _ in range(50):   # 2 s: the stalled client's buffers fill up meanwhile
                    await next_frame(ws, 60)
                proc.send_signal(signal.SIGTERM)
                message = await next_message(ws, [], 30)
                closed = await next_message(ws, [], 30)
                return ready, message, closed

        # one deadline for it all: while a shutdown hangs, the idle frames would keep each read from timing out
        ready, message, closed = asyncio.run(asyncio.wait_for(client(), 120))
        assert proc.wait(timeout=30) == 0
        output = "".join(lines) + proc.stdout.read()
    finally:
        if stalled is not None:
            stalled.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert ready["type"] == "ready"
    # --block-ms reaches the sessions: the look-ahead they state is the 400 ms block's
    from musetalk_core.realtime.stream_windows import window_lookahead_ms

    fade = LipsyncOptions().silence_fade_frames
    assert ready["lookahead_ms"] == window_lookahead_ms(25.0, 2, 2, 400, 0, fade) > window_lookahead_ms(
        25.0, 2, 2, 200, 0, fade)
    assert message == {"type": "error", "message": "the server is shutting down"}
    assert closed == {"type": "closed", "code": 1001}
    assert "Stopped." in output, output
    assert "Building the UNet + decoder step (cuda_graphs, batch 4)" in output and "Built in" in output, output


# ---------------------------------------------------------------------------------------------------- web page

def test_web_page_talks_to_the_avatar_in_chromium(models, avatars, tmp_path):
    from browser import browser_missing, node_env

    missing = browser_missing()
    if missing:
        pytest.skip(missing)
    # Chromium loops the file: a short sound every 6 s, the avatar idling in between
    wav = write_wav(tmp_path / "microphone.wav", speech(6.0, 48000, voiced=(0.6, 0.8))[None], 48000)

    async def run():
        async with serve(models, avatars) as (server, hub):
            proc = await asyncio.create_subprocess_exec(
                "node", str(ROOT / "tools" / "realtime_page_check.js"), str(server.make_url("/")), "anna", str(wav),
                "12", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=node_env())
            out, err = await asyncio.wait_for(proc.communicate(), WAIT + 60)
            return proc.returncode, out.decode(), err.decode()

    code, out, err = asyncio.run(run())
    assert code == 0, err[-3000:]
    report = json.loads(out)
    for mode in ("ws", "webrtc"):
        page = report[mode]
        assert page["listed"] == ["anna"]
        assert page["reached"] and page["state"]["frames"] >= 12, json.dumps(report)[:3000]
        assert page["state"]["lastError"] is None, page
        assert page["state"]["ready"]["avatar"] == "anna"
    assert report["ws"]["state"]["lastFrame"] >= 11
