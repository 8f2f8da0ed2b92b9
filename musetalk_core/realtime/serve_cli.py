"""``python -m musetalk_core serve``: the real-time avatar server (server.py) from the command line.

Loads the networks a session needs once (UNet, VAE, positional encoding, Whisper encoder; no face networks: the
avatars hold their faces), then serves until Ctrl-C / SIGTERM, which closes every session and exits 0.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import InputError
from ..lipsync_args import HelpFormatter, add_option, ranged
from ..options import PARAMS

DEFAULT_PORT = 8765   # beside ComfyUI's 8188, so both can run on one machine


def add_serve_parser(sub) -> None:
    p = sub.add_parser("serve", help="real-time avatar server: talk into a browser, an avatar lip-syncs live",
                       description="Serve the avatars in --avatars (made with `python -m musetalk_core avatar`) to "
                                   "browsers and programs: a web page at /, WebRTC (POST /offer) and a WebSocket "
                                   "(/ws?avatar=NAME&rate=16000: PCM16 in, JPEG frames out). MuseTalk only: "
                                   "LatentSync is not real time. See docs/realtime.md.",
                       formatter_class=HelpFormatter)
    p.add_argument("--avatars", type=Path, default=None, metavar="DIR",
                   help="the avatars folder (default $MUSETALK_AVATARS_DIR or <models dir>/avatars)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    p.add_argument("--port", type=ranged(int, 1, 65535, "port"), default=DEFAULT_PORT, help="TCP port")
    p.add_argument("--max-sessions", type=ranged(int, 1, 1024, "max-sessions"), default=8,
                   help="clients served at once; one more is refused (HTTP 503)")
    p.add_argument("--batch-size", type=ranged(int, 1, 256, "batch-size"), default=8,
                   help="faces per UNet pass, shared out between the sessions that need them")
    p.add_argument("--models-dir", type=Path, action="append", default=None,
                   help="models/musetalk folder (repeatable; default $MUSETALK_MODELS_DIR or ./models/musetalk)")
    for name in ("version", "device", "precision", "decoder", "acceleration", "generator"):
        add_option(p, PARAMS[name])
    p.add_argument("--context-seconds", type=ranged(float, 1.0, 30.0, "context-seconds"), default=30.0,
                   help="audio the live Whisper encoder attends to per call: 30 = the whole 30 s segment, as offline "
                        "sees it; less is cheaper (an encoder call's work shrinks with it, BENCHMARKS.md) and moves the "
                        "windows further from the offline encoding (docs/realtime.md)")
    p.add_argument("--block-ms", type=ranged(int, 20, 2000, "block-ms"), default=200,
                   help="audio per live Whisper encoder call, a multiple of 20: longer blocks mean fewer encoder calls "
                        "and larger UNet batches per session, and up to that much more latency (the stated look-ahead "
                        "is 280 ms at 200, 480 ms at 400)")
    p.add_argument("--jpeg-quality", type=ranged(int, 10, 100, "jpeg-quality"), default=85,
                   help="quality of the WebSocket's JPEG frames")
    p.add_argument("--queue-seconds", type=ranged(float, 0.1, 30.0, "queue-seconds"), default=1.0,
                   help="video held for a slow client before its oldest frames are dropped")
    p.add_argument("--send-buffer-kb", type=ranged(int, 0, 65536, "send-buffer-kb"), default=256,
                   help="a WebSocket's kernel send buffer: a slow client's frames wait in its outbox (oldest dropped) "
                        "instead of seconds of video queued in the socket; 0 = the system's default")
    p.add_argument("--ice-server", action="append", default=None, metavar="URL",
                   help="a STUN/TURN server for WebRTC across networks (repeatable, e.g. stun:stun.example.org); "
                        "default none: host addresses only (localhost, LAN)")


def run_serve(args: argparse.Namespace) -> int:
    import asyncio

    from ..options import resolve
    from ..weights import files as model_files
    from .avatar import default_avatars_dir
    from .avatar_lipsync import load_avatar_networks
    from .hub import LATENTSYNC_REFUSAL, Hub, HubSettings
    from .stream_windows import ROW_MS, check_blocks, check_context

    if args.generator != "musetalk":
        raise InputError(f"--generator {args.generator}: {LATENTSYNC_REFUSAL}")
    try:
        from . import server, webrtc
    except ImportError as exc:  # aiohttp: ComfyUI has it; a bare install gets it from requirements-server.txt
        raise InputError(f"the server needs {exc.name}: pip install -r requirements-server.txt "
                         "(or python install.py --with-server).") from None
    options = resolve({name: getattr(args, name) for name in ("version", "device", "precision", "decoder",
                                                            "acceleration")})
    check_blocks(args.block_ms, 0)  # refused now, not at each client
    check_context(args.context_seconds, args.block_ms // ROW_MS)
    dirs = args.models_dir or model_files.default_models_dirs()
    avatars = args.avatars or default_avatars_dir(dirs)
    if not Path(avatars).is_dir():
        raise InputError(f"--avatars {avatars}: no such folder. Make an avatar first: python -m musetalk_core "
                         "avatar --video V --name NAME (it goes to <models dir>/avatars), or name the folder.")
    if not webrtc.aiortc_available():
        print("musetalk: warning: aiortc is not installed, so WebRTC (POST /offer) is off; the WebSocket works. "
              "pip install -r requirements-server.txt adds it.")
    webrtc.ICE_SERVERS[:] = list(args.ice_server or ())
    print(f"Loading the MuseTalk {options.version} networks from {', '.join(map(str, dirs))} ...", flush=True)
    models = load_avatar_networks(dirs, options)
    if options.acceleration != "off":
        from .session import warm_up

        print(f"Building the UNet + decoder step ({options.acceleration}, batch {args.batch_size}) once, before the "
              "first client ...", flush=True)
        seconds = warm_up(models, options.decoder, options.acceleration, args.batch_size)
        print(f"Built in {seconds:.1f} s.", flush=True)
    settings = HubSettings(max_sessions=args.max_sessions, batch_size=args.batch_size,
                          queue_seconds=args.queue_seconds, decoder=options.decoder,
                          acceleration=options.acceleration, context_seconds=args.context_seconds,
                          block_ms=args.block_ms,
                          jpeg_quality=args.jpeg_quality, send_buffer_bytes=args.send_buffer_kb * 1024)
    hub = Hub(models, Path(avatars), settings)
    asyncio.run(server.run_server(hub, args.host, args.port, announce=lambda text: print(text, flush=True)))
    print("Stopped.", flush=True)
    return 0
