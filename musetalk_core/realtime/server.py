"""The real-time avatar server (``python -m musetalk_core serve``): an aiohttp app.

Routes:
  GET  /                 the web page (web/index.html + web/app.js): pick an avatar, talk, watch it
  GET  /avatars          JSON list of the avatar names in --avatars
  GET  /stats            JSON: live sessions (frames sent, idle, dropped, latency), batches run
  GET  /ws?avatar=NAME&rate=16000   WebSocket: binary PCM16 LE mono 16 kHz in (any chunk size), text {"type": "end"}
                         when the speech is over; out: text {"type": "ready"|"done"|"error", ...} and binary frames
                         (FRAME_HEADER: uint32 LE frame number, uint8 flags with 1 = idle, 3 reserved bytes, then a
                         JPEG) at the avatar's fps
  POST /offer            WebRTC (aiortc): {"sdp", "type", "avatar"} -> the answer; the client's audio track in, a
                         video track and its audio (delayed to match the video) out (see webrtc.py)
"""

from __future__ import annotations

import asyncio
import io
import logging
import signal
import socket
from pathlib import Path
from typing import Optional

import numpy as np
from aiohttp import WSCloseCode, WSMsgType, web

from .hub import Hub, Refused
from .live import FRAME_HEADER, IDLE_FLAG, Live, OutFrame, control_kind

log = logging.getLogger("musetalk_core.realtime")
WEB = Path(__file__).resolve().parent / "web"
SAMPLE_RATE = 16000   # what the WebSocket takes (the page resamples the microphone to it)
HUB = web.AppKey("hub", Hub)


def make_app(hub: Hub) -> web.Application:
    app = web.Application()
    app[HUB] = hub
    app.router.add_get("/", _index)
    app.router.add_get("/avatars", _avatars)
    app.router.add_get("/stats", _stats)
    app.router.add_get("/ws", _websocket)
    app.router.add_post("/offer", _offer)
    app.router.add_static("/static/", WEB)
    app.on_startup.append(_start)
    app.on_shutdown.append(_stop)
    return app


async def _start(app: web.Application) -> None:
    await app[HUB].start()


async def _stop(app: web.Application) -> None:
    await app[HUB].stop()


async def _index(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(WEB / "index.html")


async def _avatars(request: web.Request) -> web.Response:
    return web.json_response(request.app[HUB].avatar_names())


async def _stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[HUB].stats())


def check_rate(text: Optional[str]) -> None:
    if text is None:
        return
    try:
        rate = int(text)
    except ValueError:
        raise Refused(400, f"rate={text!r} is not a sample rate in Hz") from None
    if rate != SAMPLE_RATE:
        raise Refused(400, f"rate={rate}: the WebSocket takes PCM16 mono at {SAMPLE_RATE} Hz only; resample the "
                           f"audio to {SAMPLE_RATE} Hz (or use WebRTC, POST /offer, which takes any rate)")


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


async def _websocket(request: web.Request) -> web.StreamResponse:
    hub = request.app[HUB]
    try:
        check_rate(request.query.get("rate"))
        live = await hub.open(request.query.get("avatar"))
    except Refused as refused:
        return refused.response()
    ws = web.WebSocketResponse(max_msg_size=4 << 20)
    try:
        await ws.prepare(request)
    except BaseException:  # the client left meanwhile (cancelled) too: its session must not hold a slot
        await hub.close(live)
        raise
    _limit_send_buffer(request, hub.settings.send_buffer_bytes)

    async def hang_up(message: str) -> None:
        if not ws.closed:
            await ws.send_json({"type": "error", "message": message})
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")

    live.hang_up = hang_up
    live.control(hub.ready_message(live))
    hub.begin(live)
    sender = asyncio.get_running_loop().create_task(_send(ws, live, hub), name=f"musetalk-ws-{live.id}")
    try:
        await _receive(ws, live, hub, sender)
    finally:
        # aiohttp cancels the handler once the connection is gone: the cleanup runs on in a task of its own
        await asyncio.shield(hub.spawn(_end(live, hub, sender)))
    return ws


async def _end(live: Live, hub: Hub, sender: asyncio.Task) -> None:
    sender.cancel()
    await asyncio.gather(sender, return_exceptions=True)
    await hub.close(live)


def _limit_send_buffer(request: web.Request, size: int) -> None:
    """A small kernel send buffer: frames a slow client has not taken wait in its outbox, where the oldest are
    dropped, rather than in megabytes of socket buffer that would show it seconds-old video."""
    sock = request.transport.get_extra_info("socket") if request.transport is not None else None
    if sock is not None and size:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, int(size))


async def _receive(ws: web.WebSocketResponse, live: Live, hub: Hub, sender: asyncio.Task) -> None:
    async for msg in ws:
        if msg.type == WSMsgType.BINARY:
            if len(msg.data) % 2:
                return await _reject(ws, sender, "binary messages must be PCM16 (signed 16-bit little-endian "
                                                 f"samples, an even number of bytes); got {len(msg.data)} bytes",
                                     b"not PCM16")
            live.hear(np.frombuffer(msg.data, dtype="<i2"), SAMPLE_RATE)
        elif msg.type == WSMsgType.TEXT:
            if control_kind(msg.data) != "end":
                return await _reject(ws, sender, 'text messages must be JSON {"type": "end"} (end of speech); '
                                                 "audio goes in binary messages (PCM16 mono 16 kHz)",
                                     b"unknown message")
            live.finish()
        elif msg.type == WSMsgType.ERROR:
            return


async def _reject(ws: web.WebSocketResponse, sender: asyncio.Task, message: str, reason: bytes) -> None:
    sender.cancel()
    await asyncio.gather(sender, return_exceptions=True)
    await ws.send_json({"type": "error", "message": message})
    await ws.close(code=WSCloseCode.UNSUPPORTED_DATA, message=reason)


async def _send(ws: web.WebSocketResponse, live: Live, hub: Hub) -> None:
    """The outbox onto the socket. A client that does not read blocks only this task (its outbox drops frames).
    If sending fails otherwise, the client is told and disconnected (not left watching a frozen picture)."""
    try:
        await _send_outbox(ws, live, hub)
    except (asyncio.CancelledError, ConnectionError):
        raise
    except Exception as exc:  # noqa: BLE001 - e.g. a frame the JPEG encoder refuses
        log.exception("MuseTalk real-time session %s: sending failed", live.id)
        if not ws.closed:
            await ws.send_json({"type": "error", "message": f"the session failed: {exc}"})
            await ws.close(code=WSCloseCode.INTERNAL_ERROR)


async def _send_outbox(ws: web.WebSocketResponse, live: Live, hub: Hub) -> None:
    loop = asyncio.get_running_loop()
    quality = hub.settings.jpeg_quality
    while not ws.closed:
        item = await live.outbox.get()
        if isinstance(item, OutFrame):
            jpeg = await loop.run_in_executor(hub.encoder, encode_jpeg, item.image, quality)
            await ws.send_bytes(FRAME_HEADER.pack(item.number, IDLE_FLAG if item.idle else 0) + jpeg)
        else:
            await ws.send_json(item)
            if item.get("type") == "error":   # the session is over (generation failed, shutdown)
                await ws.close(code=WSCloseCode.INTERNAL_ERROR)
                return


async def _offer(request: web.Request) -> web.Response:
    from . import webrtc

    return await webrtc.answer(request, request.app[HUB])


# ---- running it ----
async def run_server(hub: Hub, host: str, port: int, stop: Optional[asyncio.Event] = None,
                     announce=print) -> None:
    """Serve until SIGINT/SIGTERM (or ``stop`` is set), then close every session and stop every thread."""
    app = make_app(hub)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=5.0)
    await runner.setup()
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    handled = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
            handled.append(sig)
        except (NotImplementedError, RuntimeError):  # not the main thread / not a POSIX loop
            pass
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        announce(f"MuseTalk real-time server on http://{host}:{port}/ (avatars in {hub.avatars_dir}); "
                 "Ctrl-C stops it.")
        await stop.wait()
        announce("Stopping: closing the sessions ...")
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)
        await runner.cleanup()
