"""Real-time sessions (musetalk_core.realtime.session): time per output frame against the real-time budget,
first-frame latency, encoder calls per second of audio, several sessions sharing one generate_batch; and how far
the live Whisper windows are from the offline encoding of the same audio.

    python -m benchmarks.realtime --json benchmarks/results/cpu-realtime.json       # one session, tiny networks, CPU
    python -m benchmarks.realtime --fidelity --real-encoder --json benchmarks/results/cpu-realtime-fidelity.json
    python -m benchmarks.realtime --scale real --device cuda --dtype bf16 --size 720p --sessions 1 4 8 --batch-size 32

Session runs: an avatar of ``--frames`` synthetic frames (benchmarks.synthetic; faces from benchmarks.standins'
detector, landmarks and parser, as random networks find no face; latents from the real VAE encoder) and
``--seconds`` of speech-like audio (synthetic.make_audio), pushed in 20 ms chunks as fast as the session takes them
(not paced: the time is the compute). After each chunk every session's
ready work (up to ``--batch-size`` items over all sessions, shared out in turn) goes through one generate_batch,
and the finished frames are collected. Per run: the wall time per output frame of one stream against 1/fps, the
time in the encoder (StreamingWindows' encoder calls and their log-mel), in generate_batch and in frames() (the
blend), and the encoder calls per second of audio.

Latency, on a virtual clock (the audio arrives in real time, one worker runs the steps one after another, each
taking what it measured): a frame's latency is when the step that handed it out ends, less the start of its audio
(k / fps), so it holds the look-ahead (``lookahead_ms``), any wait for the worker and the compute. First frame,
median, p90 and last frame: when the compute keeps up with the audio they stay near the look-ahead; when it does
not (a CPU with these networks), they grow with the stream and the last frame's shows by how much.

Fidelity (``--fidelity``): StreamingWindows over 20 ms chunks against encode_audio on the same audio, relative L2
per frame ||live - offline|| / ||offline|| (median, p90, max) for several settle times, with the tiny test encoder
and (``--real-encoder``) whisper-tiny's real-size architecture on seeded random weights with sinusoidal positions
(benchmarks.seamless_audio.load_encoder). The encoder calls of the settle variants see the same audio, so they are
computed once (memoised by their mel).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

FPS = 25.0
CHUNK_MS = 20


# ---------------------------------------------------------------------------------------------- instrumentation

class Timers:
    """Seconds spent in the encoder (StreamingWindows._encode), generate_batch and frames(); encoder calls."""

    def __init__(self, device):
        self.device = torch.device(device)
        self.seconds = {"encoder": 0.0, "generate": 0.0, "blend": 0.0}
        self.calls = 0

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @contextlib.contextmanager
    def timing(self, stage: str):
        self.sync()
        start = time.perf_counter()
        try:
            yield
        finally:
            self.sync()
            self.seconds[stage] += time.perf_counter() - start


@contextlib.contextmanager
def timed_encoder(timers: Timers):
    from musetalk_core.realtime.stream_windows import StreamingWindows

    original = StreamingWindows._encode

    def encode(self, pieces, firsts=None):
        with timers.timing("encoder"):
            out = original(self, pieces, firsts)
        timers.calls += 1
        return out

    StreamingWindows._encode = encode
    try:
        yield
    finally:
        StreamingWindows._encode = original


# ---------------------------------------------------------------------------------------------- setup

def load(args):
    from musetalk_core.weights.loading import load_models

    from . import networks

    return load_models([networks.models_folder(args.scale, "v15")], version="v15", precision=args.dtype,
                       device=args.device)


def make_avatar(models, args, folder: Path):
    """An avatar of synthetic frames, its faces from the stand-in detector, landmarks and parser."""
    from musetalk_core.io.sources import TensorSource
    from musetalk_core.options import LipsyncOptions
    from musetalk_core.realtime.avatar import prepare_avatar

    from . import standins, synthetic

    from musetalk_core.generators.musetalk import generate, latents

    real = (latents.encode_moments, generate.iter_generated)
    standins.install()  # detector, landmarks and parser only: the VAE encoder, UNet, decoder and Whisper are real
    latents.encode_moments, generate.iter_generated = real
    frames, _ = synthetic.make_frames(args.frames, args.size)
    options = LipsyncOptions(precision=args.dtype, device=args.device, face_batch_size=8, vae_batch_size=8)
    return prepare_avatar(models, TensorSource(frames), FPS, options, folder, "bench"), options


def chunks(samples: np.ndarray, rate: int = 16000):
    step = rate * CHUNK_MS // 1000
    return [samples[a:a + step] for a in range(0, samples.size, step)]


# ---------------------------------------------------------------------------------------------- session runs

@torch.inference_mode()  # as the server's batcher runs its steps
def run_streams(models, avatar, options, samples: np.ndarray, sessions: int, batch_size: int, decoder: str,
                timers: Timers, acceleration: str = "off", context_seconds: float = 30.0,
                block_ms: int = 200) -> dict:
    """``sessions`` sessions fed the same audio chunk by chunk, their work through shared generate_batch calls.

    Latency on a virtual clock: chunk k arrives at its audio time (k + 1) * 20 ms; its step (push, generate, blend)
    starts then or when the previous step ended, and lasts what it measured. A frame's latency is the end of the
    step that handed it out less the start of the frame's audio (k / fps): the look-ahead, the wait for the worker
    and the compute."""
    from musetalk_core.realtime.session import AvatarSession, generate_batch

    live = [AvatarSession(models, avatar, options, session_id=str(i), context_seconds=context_seconds,
                          block_ms=block_ms) for i in range(sessions)]
    out = [0] * sessions
    generated = [0]
    latencies = []  # session 0's frames
    turn = 0

    def step() -> None:
        nonlocal turn
        while True:
            chosen, budget = [], batch_size
            for k in range(sessions):
                s = live[(turn + k) % sessions]
                items = s.work(max(1, budget // max(1, sessions - k)))
                budget -= len(items)
                chosen.append((s, items))
            turn += 1
            flat = [item for _, items in chosen for item in items]
            if not flat:
                break
            with timers.timing("generate"):
                faces = generate_batch(models, flat, decoder, acceleration, batch_size)
            generated[0] += len(flat)
            at = 0
            for s, items in chosen:
                s.deliver(items, faces[at:at + len(items)])
                at += len(items)
        with timers.timing("blend"):
            for k, s in enumerate(live):
                got = s.frames()
                out[k] += len(got)
                if k == 0:
                    handed.extend(number for number, _ in got)

    clock = 0.0
    start, cpu = time.perf_counter(), time.process_time()
    pieces = chunks(samples)
    for index in range(len(pieces) + 1):
        handed: list = []
        begin = time.perf_counter()
        for s in live:
            if index < len(pieces):
                s.push_audio(pieces[index], 16000)
            else:
                s.finish()
        step()
        arrival = min(samples.size, (index + 1) * 16000 * CHUNK_MS // 1000) / 16000
        clock = max(clock, arrival) + time.perf_counter() - begin
        latencies.extend(clock - number / FPS for number in handed)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    seconds = samples.size / 16000
    frames = out[0]
    ms = sorted(1000 * v for v in latencies)
    return {"sessions": sessions, "frames_per_session": frames, "generated_frames": generated[0],
            "audio_s": round(seconds, 3),
            "wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "ms_per_frame": round(1000 * wall / frames, 2),
            "budget_ms": round(1000 / FPS, 2), "realtime_factor": round(seconds / wall, 3),
            "stream_fps": round(frames / wall, 2), "total_fps": round(sessions * frames / wall, 2),
            "encoder_calls_per_audio_s": round(timers.calls / (sessions * seconds), 2),
            "first_frame_latency_ms": round(latencies[0] * 1000, 1),
            "latency_median_ms": round(statistics.median(ms), 1),
            "latency_p90_ms": round(ms[int(0.9 * (len(ms) - 1))], 1),
            "latency_last_ms": round(latencies[-1] * 1000, 1), "lookahead_ms": live[0].lookahead_ms,
            "stage_s": {k: round(v, 3) for k, v in timers.seconds.items()}}


def measure_sessions(args) -> dict:
    from . import synthetic

    models = load(args)
    samples = synthetic.make_audio(args.seconds)["waveform"][0, 0].numpy()
    with tempfile.TemporaryDirectory() as folder:
        avatar, options = make_avatar(models, args, Path(folder))
        options = options.updated(decoder=args.decoder)
        warm = Timers(args.device)
        with timed_encoder(warm):  # networks onto the device, kernels chosen, caches filled
            run_streams(models, avatar, options, samples[:16000], 1, args.batch_size, args.decoder, warm,
                        args.acceleration, args.context_seconds, args.block_ms)
        runs = []
        for n in args.sessions:
            timers = Timers(args.device)
            with timed_encoder(timers):
                runs.append(run_streams(models, avatar, options, samples, n, args.batch_size, args.decoder,
                                        timers, args.acceleration, args.context_seconds, args.block_ms))
            print(json.dumps(runs[-1]), flush=True)
    return {"runs": runs}


# ---------------------------------------------------------------------------------------------- fidelity

@contextlib.contextmanager
def memoised_encoder():
    """encoder_states memoised by its input (the settle variants' calls see the same audio)."""
    from musetalk_core.models import whisper_encoder

    original = whisper_encoder.encoder_states
    cache: dict = {}

    def states(encoder, mel, final_norm=True):
        key = (hashlib.sha1(mel.detach().cpu().float().numpy().tobytes()).hexdigest(), bool(final_norm))
        if key not in cache:
            cache[key] = original(encoder, mel, final_norm=final_norm)
        return cache[key]

    whisper_encoder.encoder_states = states
    try:
        yield cache
    finally:
        whisper_encoder.encoder_states = original


def live_windows(models, samples: np.ndarray, **kw) -> torch.Tensor:
    from musetalk_core.realtime.stream_windows import StreamingWindows

    sw = StreamingWindows(models, FPS, **kw)
    out = []
    for chunk in chunks(samples):
        sw.push(chunk)
        if sw.available() > sw._taken:
            out.append(sw.take(sw._taken, sw.available())[0])
    sw.finish()
    out.append(sw.take(sw._taken, sw.available())[0])
    return torch.cat(out)


def measure_fidelity(encoder: str, args) -> list:
    from musetalk_core.audio.windows import encode_audio
    from musetalk_core.weights.loading import load_models

    from . import networks, synthetic

    if encoder == "real":
        from .seamless_audio import load_encoder

        models = load_encoder("v15")
    else:
        models = load_models([networks.models_folder("tiny", "v15", networks=["whisper"])], version="v15",
                             networks=["whisper"], device="cpu", precision="fp32")
    audio = synthetic.make_audio(args.fidelity_seconds)
    samples = audio["waveform"][0, 0].numpy()
    offline = encode_audio(models, audio, FPS).features.float()
    norms = offline.flatten(1).norm(dim=1)
    rows = []
    with memoised_encoder():
        for block, settle, context in [(b, s, c) for b in args.blocks for s in args.settles for c in args.contexts]:
            start = time.perf_counter()
            live = live_windows(models, samples, block_ms=block, settle_ms=settle,
                                context_seconds=context).float()
            rel = ((live - offline).flatten(1).norm(dim=1) / norms).numpy()
            row = {"encoder": encoder, "block_ms": block, "settle_ms": settle, "context_seconds": context,
                   "frames": int(rel.size),
                   "median": round(float(np.median(rel)), 4), "p90": round(float(np.quantile(rel, 0.9)), 4),
                   "max": round(float(rel.max()), 4), "seconds": round(time.perf_counter() - start, 1)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


# ---------------------------------------------------------------------------------------------- main

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", default="tiny", choices=("tiny", "real"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="fp32", choices=("fp32", "fp16", "bf16"))
    p.add_argument("--size", default="tiny", help="frame size: tiny, 360p, 720p, 1080p or HxW")
    p.add_argument("--frames", type=int, default=16, help="avatar frames")
    p.add_argument("--seconds", type=float, default=6.0, help="audio per session run")
    p.add_argument("--sessions", type=int, nargs="+", default=[1])
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--decoder", default="vae", choices=("vae", "taesd"))
    p.add_argument("--block-ms", type=int, default=200,
                   help="the live encoder's block (StreamingWindows; one call per block of audio)")
    p.add_argument("--context-seconds", type=float, default=30.0,
                   help="the live Whisper encoder's context (StreamingWindows; 30 = the whole segment, as offline)")
    p.add_argument("--acceleration", default="off",
                   help="the UNet + decoder step (accel.py): off, compile, cuda_graphs, channels_last+compile, ...")
    p.add_argument("--fidelity", action="store_true", help="measure live vs offline windows instead")
    p.add_argument("--real-encoder", action="store_true", help="fidelity with whisper-tiny's real size too")
    p.add_argument("--fidelity-seconds", type=float, default=12.0)
    p.add_argument("--settles", type=int, nargs="+", default=[0, 80, 200])
    p.add_argument("--blocks", type=int, nargs="+", default=[200])
    p.add_argument("--contexts", type=float, nargs="+", default=[30.0],
                   help="fidelity: encoder contexts (StreamingWindows' context_seconds) to compare")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--json", type=Path)
    return p


def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    report = {"command": "python -m benchmarks.realtime " + " ".join(argv if argv is not None else sys.argv[1:]),
              "settings": {"scale": args.scale, "device": args.device, "dtype": args.dtype, "size": args.size,
                           "avatar_frames": args.frames, "fps": FPS, "batch_size": args.batch_size,
                           "decoder": args.decoder, "acceleration": args.acceleration,
                           "context_seconds": args.context_seconds, "block_ms": args.block_ms,
                           "chunk_ms": CHUNK_MS, "torch_threads": torch.get_num_threads()}}
    if args.fidelity:
        encoders = ["tiny"] + (["real"] if args.real_encoder else [])
        report["fidelity"] = [row for e in encoders for row in measure_fidelity(e, args)]
        report["settings"]["audio"] = f"benchmarks.synthetic.make_audio({args.fidelity_seconds:g})"
    else:
        report.update(measure_sessions(args))
        report["settings"]["audio"] = f"benchmarks.synthetic.make_audio({args.seconds:g})"
        if args.device != "cpu" and torch.cuda.is_available():
            report["settings"]["gpu"] = torch.cuda.get_device_name()
            report["settings"]["peak_vram_gb"] = round(torch.cuda.max_memory_allocated() / 2 ** 30, 2)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
