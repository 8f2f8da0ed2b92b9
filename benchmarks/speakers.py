"""Per-speaker cost: the streaming core with 1, 2 and 3 speakers (each with its own audio) on one synthetic clip of
three heads, against the one-speaker default path (speaker_selection 'default': no tracking), side by side.

    python -m benchmarks.speakers --smoke --scale stand-in # stand-in networks, 8 frames of 144x256: seconds (tests)
    python -m benchmarks.speakers --smoke                  # tiny networks, the same clip: about 2 min on 2 cores
    python -m benchmarks.speakers --frames 40 --size 360p --threads 2 --json benchmarks/results/cpu-speakers.json
    python -m benchmarks.speakers --scale real --frames 64 --size 720p --device cuda --dtype bf16 --batch-size 32

The clip (benchmarks.synthetic.make_multi_clip, 3 heads, no events) is written as an H.264 file and run file to
file as the command line runs it (``--io memory``: frames in memory, output frames collected). Runs:
``default`` (clip audio 0, speaker_selection 'default'), ``1 speaker`` (track 0), ``2 speakers`` (tracks 0, 1),
``3 speakers`` (tracks 0, 1, 2), each speaker with its own head's audio; heads without a speaker stay as they are.

Networks (``--scale``): ``tiny`` (the test suite's real-format networks with random weights, BiSeNet at its real
size), ``real`` (real-size random weights, benchmarks/networks.py) or ``stand-in`` (benchmarks/standins.py's cheap
parsing, VAE encoder and UNet + decoder: what is left is the core's own work). Random weights find no face, so S3FD
and DWPose run in full and their answers are then replaced by the drawn heads (standins.heads_detector /
heads_landmarks); with ``stand-in`` only the stand-ins run.

Stages come from the core's progress callbacks (pipeline._hooks): a stage lasts from its callback to the next one
(summed over speakers): setup, audio (Whisper, per speaker), face tracks (one S3FD pass over the used frames, several
speakers or a tracked selection only), faces (locate + crops + parsing, per speaker), vae encode (per speaker),
lip-sync (UNet + VAE decode per speaker, blend per speaker, frames read and handed to the encoder once), and
finish (the encoder's tail and the audio mix muxed). ``generate`` is the part of lip-sync spent in the generator's
batches (UNet + VAE decode); ``blend + io`` the rest. fps = output frames / seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

RUNS = {"default": 0, "1 speaker": 1, "2 speakers": 2, "3 speakers": 3}  # name -> speakers given (0: one audio)
HEADS = 3
STAGES = ("setup", "audio", "face tracks", "faces", "vae encode", "lip-sync", "generate", "blend + io", "finish")


# ------------------------------------------------------------------------------------------------ stage clock
def now() -> tuple:
    """(wall seconds, this process's CPU seconds): CPU time moves less than wall time when neighbours share the CPU."""
    return time.perf_counter(), time.process_time()


class StageClock:
    """A progress factory that notes when each stage starts; ``generated`` sums the time inside generator batches."""

    def __init__(self, device: torch.device):
        self.device = device
        self.marks: list = []  # (stage, now())
        self.generated = [0.0, 0.0]  # wall, CPU

    def progress(self, stage: str, total: int):
        from musetalk_core.hooks import RunHooks
        from .timing import synchronize

        synchronize(self.device)  # the stage before has really finished
        self.marks.append((stage, now()))
        return RunHooks()

    def timed_batches(self, iter_generated):
        """``iter_generated`` whose every batch adds its time to ``generated``."""
        from .timing import synchronize

        def wrapper(*a, **k):
            it = iter(iter_generated(*a, **k))
            try:
                while True:
                    start = now()
                    try:
                        item = next(it)
                    except StopIteration:
                        return
                    finally:
                        synchronize(self.device)
                        stop = now()
                        self.generated = [g + b - a for g, a, b in zip(self.generated, start, stop)]
                    yield item
            finally:
                if hasattr(it, "close"):
                    it.close()
        return wrapper

    def seconds(self, start: tuple, returned: tuple, end: tuple, which: int = 0) -> dict:
        """Seconds per stage (``which`` 0: wall, 1: CPU): ``start`` to the first callback is setup, the core's
        return to ``end`` is finish."""
        out = {name: 0.0 for name in STAGES}
        edges = [("setup", start)] + self.marks + [("finish", returned)]
        for (name, t0), (_, t1) in zip(edges, edges[1:]):
            out[name] = out.get(name, 0.0) + t1[which] - t0[which]  # a stage no table lists keeps its own key
        out["finish"] = end[which] - returned[which]
        out["generate"] = self.generated[which]
        out["blend + io"] = out["lip-sync"] - self.generated[which]
        out["total"] = end[which] - start[which]
        return out


@contextlib.contextmanager
def patched(pairs):
    """Set (module, name, value) attributes for the duration, then put the old ones back."""
    old = [(m, n, getattr(m, n)) for m, n, _ in pairs]
    try:
        for m, n, v in pairs:
            setattr(m, n, v)
        yield
    finally:
        for m, n, v in reversed(old):
            setattr(m, n, v)


@contextlib.contextmanager
def drawn_heads(clip, scale: str, clock: StageClock):
    """Detector and landmarks answer with ``clip``'s drawn heads (after running, unless ``scale`` is stand-in);
    with stand-in the parsing, VAE encoder and generator are standins.install()'s. Generator batches are timed."""
    from musetalk_core.faces import locate as face_locate
    from musetalk_core.faces import parsing
    from musetalk_core.generators.musetalk import generate, latents
    from musetalk_core.models import dwpose, s3fd

    from . import standins

    heads, marks = standins.heads_detector(clip), standins.heads_landmarks(clip)
    saved = [(s3fd, "detect"), (face_locate, "_landmarks"), (parsing, "parse_labels"), (latents, "encode_moments"),
             (generate, "iter_generated"), (dwpose, "predict_keypoints")]
    with patched([(m, n, getattr(m, n)) for m, n in saved]):  # restores what install() replaces, too
        if scale == "stand-in":
            standins.install()
            pairs = [(s3fd, "detect", heads), (face_locate, "_landmarks", lambda net, frames, boxes: marks(
                net, frames, boxes))]
        else:
            detect, predict = s3fd.detect, dwpose.predict_keypoints

            def run_then_detect(net, frames, *, scale=1.0):
                detect(net, frames, scale=scale)  # the network's cost, its random answer dropped
                return heads(net, frames, scale=scale)

            def run_then_predict(net, frames, boxes=None):
                predict(net, frames, boxes)
                return marks(net, frames, boxes)

            pairs = [(s3fd, "detect", run_then_detect), (dwpose, "predict_keypoints", run_then_predict)]
        pairs.append((generate, "iter_generated", clock.timed_batches(generate.iter_generated)))
        with patched(pairs):
            yield


# ------------------------------------------------------------------------------------------------ one run
class Setup:
    """The clip (as a file too), its audios, the models and options, shared by every run."""

    def __init__(self, args):
        from dataclasses import replace

        from musetalk_core.io import video_read, video_write
        from musetalk_core.options import LipsyncOptions
        from musetalk_core.weights.loading import clear_cache, load_models

        from . import networks as bench_networks
        from .synthetic import make_multi_clip

        self.args = args
        clip = make_multi_clip(args.frames, heads=HEADS, size=args.size, fps=args.fps, seed=args.seed)
        self.folder = Path(tempfile.mkdtemp(prefix="musetalk-speakers-"))
        self.video = self.folder / "in.mp4"
        if args.io == "file":  # the stand-ins know frames by content: give them the frames the decoder gives
            video_write.write_video(self.video, clip.frames, args.fps)
            clip = replace(clip, frames=video_read.read_video(self.video, with_audio=False).frames)
        self.clip = clip
        scale = "tiny" if args.scale == "stand-in" else args.scale
        clear_cache()
        start = time.perf_counter()
        self.models = load_models([bench_networks.models_folder(scale, args.version)], version=args.version,
                                  precision=args.dtype, device=args.device)
        self.load_s = time.perf_counter() - start
        self.device = self.models.device
        self.options = LipsyncOptions(version=args.version, precision=args.dtype, device=args.device,
                                      face_batch_size=args.face_batch_size, vae_batch_size=args.batch_size,
                                      batch_size=args.batch_size, chunk_size=args.chunk_size)

    def speakers(self, count: int):
        from musetalk_core.speakers import Speaker

        return [Speaker(self.clip.audios[k], f"track {k}", f"head {k}") for k in range(count)]

    def run(self, count: int, audio_frames: int = 0) -> dict:
        """One run with ``count`` speakers (0: the default path; ``audio_frames`` > 0: its audio cut to that many
        frames, so only the first frames are used); wall and CPU seconds per stage and the result's checks."""
        from musetalk_core.io.sources import TensorSource
        from musetalk_core.pipeline import lipsync_stream

        clock = StageClock(self.device)
        audio = self.clip.audios[0] if count == 0 else None
        if audio is not None and audio_frames:
            samples = round(audio_frames / self.args.fps * audio["sample_rate"])
            audio = {"waveform": audio["waveform"][..., :samples], "sample_rate": audio["sample_rate"]}
        speakers = self.speakers(count) if count else None
        with drawn_heads(self.clip, self.args.scale, clock):
            start = now()
            if self.args.io == "memory":
                out = []
                result = lipsync_stream(self.models, TensorSource(self.clip.frames), audio, self.args.fps,
                                        self.options, out.append, progress=clock.progress, speakers=speakers)
                returned = end = now()
            else:
                result, returned = self._file_run(audio, speakers, clock)
                end = now()
        row = {"wall": clock.seconds(start, returned, end, 0), "cpu": clock.seconds(start, returned, end, 1)}
        row["output_frames"] = int(result.frame_count)
        row["tracks"] = None if result.tracks is None else int(result.tracks.num_tracks)
        row["speaker_tracks"] = [k for k, _, _ in result.speakers]
        row["faces_found"] = [int(faces.has_face.sum()) for _, _, faces in result.speakers]
        return row

    def _file_run(self, audio, speakers, clock):
        from musetalk_core.io import audio_file, video_read, video_write
        from musetalk_core.pipeline import lipsync_stream

        source = video_read.open_video(self.video)
        try:
            h, w = source.frame_size
            rate, channels = audio_file.audio_layout(audio or speakers[0].audio)
            with video_write.VideoWriter(self.folder / "out.mp4", source.fps, w, h, 18, rate, channels) as writer:
                result = lipsync_stream(self.models, source, audio, float(source.fps), self.options, writer.write,
                                        progress=clock.progress, speakers=speakers)
                returned = now()
                writer.finish(result.audio)
        finally:
            source.close()
        return result, returned

    def close(self) -> None:
        import shutil

        shutil.rmtree(self.folder, ignore_errors=True)


# ------------------------------------------------------------------------------------------------ the benchmark
def summarise(rows: list) -> dict:
    """Median wall and CPU seconds per stage over the timed runs of one configuration, fps = output frames / wall
    seconds."""
    t = rows[0]["output_frames"]
    median = lambda clock: {name: statistics.median(r[clock][name] for r in rows)  # noqa: E731
                            for name in STAGES + ("total",)}
    seconds, cpu = median("wall"), median("cpu")
    return {"output_frames": t, "repeats": len(rows), "seconds": {k: round(v, 3) for k, v in seconds.items()},
            "fps": {k: (round(t / v, 3) if v > 0 else None) for k, v in seconds.items()},
            "cpu_seconds": {k: round(v, 3) for k, v in cpu.items()},
            "total_s_each": [round(r["wall"]["total"], 3) for r in rows],
            "tracks": rows[0]["tracks"], "speaker_tracks": rows[0]["speaker_tracks"],
            "faces_found": rows[0]["faces_found"]}


def per_speaker(runs: dict, key: str = "seconds") -> dict:
    """Seconds each speaker after the first adds (least squares over 1, 2, 3 speakers), per stage and in total;
    ``key`` "seconds" (wall) or "cpu_seconds"."""
    counts = [RUNS[name] for name in runs if RUNS[name]]
    if len(counts) < 2:
        return {}
    out = {}
    for stage in STAGES + ("total",):
        ys = [runs[name][key][stage] for name in runs if RUNS[name]]
        mx, my = statistics.mean(counts), statistics.mean(ys)
        slope = sum((x - mx) * (y - my) for x, y in zip(counts, ys)) / sum((x - mx) ** 2 for x in counts)
        out[stage] = round(slope, 3)
    return out


def run_benchmark(args) -> dict:
    from .run import machine_info

    setup = Setup(args)
    names = [n for n in RUNS if n in args.runs]
    try:
        for _ in range(args.warmup):  # untimed: every network's first call (the default path runs them all), short
            setup.run(0, audio_frames=min(args.frames, 8))
        rows = {n: [] for n in names}
        for _ in range(args.repeats):  # round robin, so drift on a shared machine hits every run alike
            for name in names:
                print(f"[speakers] {name}", file=sys.stderr, flush=True)
                rows[name].append(setup.run(RUNS[name]))
    finally:
        setup.close()
    runs = {n: summarise(r) for n, r in rows.items()}
    return {"command": "python -m benchmarks.speakers " + shlex.join(args.argv),
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "machine": machine_info(),
            "settings": {"scale": args.scale, "version": args.version, "device": str(setup.device),
                         "dtype": str(setup.models.dtype).replace("torch.", ""), "frames": args.frames,
                         "size": "x".join(map(str, setup.clip.frames.shape[1:3])), "heads": HEADS, "io": args.io,
                         "batch_size": args.batch_size, "face_batch_size": args.face_batch_size,
                         "chunk_size": args.chunk_size, "warmup": args.warmup, "repeats": args.repeats,
                         "threads": torch.get_num_threads()},
            "load_s": round(setup.load_s, 3), "runs": runs, "per_extra_speaker_s": per_speaker(runs),
            "per_extra_speaker_cpu_s": per_speaker(runs, "cpu_seconds")}


def format_markdown(report: dict) -> str:
    """The figures as BENCHMARKS.md shows them: fps per stage (wall), then CPU seconds per stage (setup, well
    under a second, only in the JSON)."""
    s, runs = report["settings"], report["runs"]
    shown = STAGES[1:]
    head = ["| run | wall s (each run) | fps |"] + [f" {st} fps |" for st in shown]
    out = [f"Command: `{report['command']}`  ",
           f"Settings: {s['scale']} networks, {s['device']} {s['dtype']}, {s['frames']} frames at {s['size']}, "
           f"{s['heads']} heads, io {s['io']}, batch {s['batch_size']}, face batch {s['face_batch_size']}, "
           f"chunk {s['chunk_size']}, {s['threads']} threads, warm-up {s['warmup']}, {s['repeats']} timed run(s), "
           "median.", "", "".join(head), "|---|---:" + "|---:" * (len(shown) + 1) + "|"]
    for name, r in runs.items():
        cells = [f"{r['fps'][st]:.2f}" if r["fps"][st] else "–" for st in shown]
        each = ", ".join(f"{v:.0f}" for v in r["total_s_each"])
        out.append(f"| {name} | {r['seconds']['total']:.1f} ({each}) | **{r['fps']['total']:.2f}** | "
                   + " | ".join(cells) + " |")
    extra = report.get("per_extra_speaker_s")
    if extra:
        out.append(f"| each extra speaker adds (wall s) | {extra['total']:+.1f} | | "
                   + " | ".join(f"{extra[st]:+.1f}" for st in shown) + " |")
    out += ["", "CPU seconds of this process per stage (all its threads; less moved by neighbours than wall time):",
            "", "| run | total | " + " | ".join(shown) + " |", "|---|---:" + "|---:" * len(shown) + "|"]
    for name, r in runs.items():
        c = r["cpu_seconds"]
        out.append(f"| {name} | {c['total']:.1f} | " + " | ".join(f"{c[st]:.1f}" for st in shown) + " |")
    extra = report.get("per_extra_speaker_cpu_s")
    if extra:
        out.append(f"| each extra speaker adds | {extra['total']:+.1f} | "
                   + " | ".join(f"{extra[st]:+.1f}" for st in shown) + " |")
    return "\n".join(out) + "\n"


def format_table(report: dict) -> str:
    lines = [f"{'run':<12}{'total s':>9}{'fps':>8}" + "".join(f"{st[:10]:>11}" for st in STAGES) + "   (stage s)"]
    for name, r in report["runs"].items():
        lines.append(f"{name:<12}{r['seconds']['total']:>9.2f}{r['fps']['total']:>8.3f}"
                     + "".join(f"{r['seconds'][st]:>11.2f}" for st in STAGES))
    extra = report.get("per_extra_speaker_s")
    if extra:
        lines.append(f"{'+1 speaker':<12}{extra['total']:>9.2f}{'':>8}"
                     + "".join(f"{extra[st]:>11.2f}" for st in STAGES))
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.speakers", description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny networks, 8 frames of 144x256, one timed run")
    p.add_argument("--scale", choices=("tiny", "real", "stand-in"), default="tiny")
    p.add_argument("--version", choices=("v15", "v1"), default="v15")
    p.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda", "mps"))
    p.add_argument("--dtype", default="fp32", choices=("auto", "fp32", "fp16", "bf16"))
    p.add_argument("--frames", type=int, default=40, help="source frames (= output frames: each audio is as long)")
    p.add_argument("--size", default="360p", help="360p, 720p, 1080p or HxW")
    p.add_argument("--fps", type=float, default=25.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--io", choices=("file", "memory"), default="file",
                   help="file: H.264 in, H.264 + AAC out (the command line); memory: frames in and out in memory")
    p.add_argument("--batch-size", type=int, default=8, help="VAE and UNet batch size")
    p.add_argument("--face-batch-size", type=int, default=8)
    p.add_argument("--chunk-size", type=int, default=16)
    p.add_argument("--runs", nargs="+", choices=list(RUNS), default=list(RUNS))
    p.add_argument("--warmup", type=int, default=1, help="untimed runs of the default path first")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--json", type=Path)
    p.add_argument("--markdown", type=Path)
    p.add_argument("--report", type=Path, help="print this JSON report's Markdown tables and stop")
    return p


def main(argv=None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    if args.report:
        report = json.loads(args.report.read_text())
        print(format_markdown(report))
        return report
    if args.smoke:
        args.scale = "tiny" if "--scale" not in argv else args.scale
        args.frames = args.frames if "--frames" in argv else 8
        args.size = args.size if "--size" in argv else "144x256"
        args.warmup = args.warmup if "--warmup" in argv else 0
        args.batch_size = args.batch_size if "--batch-size" in argv else 4
        args.face_batch_size = args.face_batch_size if "--face-batch-size" in argv else 4
        args.chunk_size = args.chunk_size if "--chunk-size" in argv else 4
    if args.threads:
        torch.set_num_threads(args.threads)
    report = run_benchmark(args)
    print(format_table(report))
    for path, text in ((args.json, json.dumps(report, indent=2) + "\n"), (args.markdown, format_markdown(report))):
        if path:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    return report


if __name__ == "__main__":
    main()
