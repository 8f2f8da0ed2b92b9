"""Peak memory and wall time of a lip-sync run against video length and resolution (issue 13), tiny networks.

    python -m benchmarks.memory --seconds 4 10 --resolution 720p 1080p --path cli graph [--out results/memory.json]
    python -m benchmarks.memory --seconds 60 600 --resolution 1080p --networks stand-in --timeline   # issue 13

For each (length, resolution) a synthetic talking-head video (a moving face-like blob on a gradient, H.264) and a
tone of the same length are written once to a work folder; then each path runs in a fresh Python process:
- ``cli``: ``python -m musetalk_core lipsync`` (the streaming command line);
- ``graph``: the graph's VIDEO path through NODE_CLASS_MAPPINGS (LoadVideo's lazy VIDEO -> FaceDetectAndParse ->
  VAEEncodeMasked / WhisperAudioEncode -> MuseTalkUNetInpaint -> BlendAndAssemble -> a VIDEO file);
  with ``--networks stand-in`` the per-frame network calls are cheap stand-ins (benchmarks/standins.py), so that
  long videos finish on a CPU: the pipeline's own memory against length;
- ``networks``: a process that only loads the networks: the baseline the targets are "above".
Peak RSS is the child's own resident high-water mark (VmHWM, written at its exit; file cache excluded; wait4's
ru_maxrss, also reported, includes the parent's peak when the parent is larger); wall time includes loading. ``--timeline``: the child samples its RSS every 0.5 s by stage (benchmarks/rss_timeline.py) and the row
gets each stage's peak, to see which stage sets the peak and whether it grows while it runs. The networks are the tiny real-format ones from tests/tiny, so the frames dominate, not the weights.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESOLUTIONS = {"720p": (720, 1280), "1080p": (1080, 1920), "4k": (2160, 3840)}
FPS = 25

# first in every child: at exit it writes its own resident high-water mark (VmHWM of its memory map). wait4's
# ru_maxrss is not enough: Linux carries the parent's high-water mark into a child it spawns (vfork + exec), so a
# child of a large parent (a test session) would report the parent's peak
_OWN_PEAK = r"""
import atexit, os
def _own_peak(path=os.environ.get("MUSETALK_PEAK_FILE")):
    if path:
        with open("/proc/self/status") as fh:
            kb = [int(l.split()[1]) for l in fh if l.startswith("VmHWM:")]
        with open(path, "w") as out:
            out.write(str(kb[0] / 1024.0))
atexit.register(_own_peak)
"""

_PRELUDE = _OWN_PEAK + r"""
import sys, torch
sys.path.insert(0, {root!r})
torch.set_num_threads({threads})
if {standins!r}:
    from benchmarks import standins
    standins.install()
from benchmarks import rss_timeline
mark = rss_timeline.start()
"""

_CLI = _PRELUDE + r"""
rss_timeline.mark_stages()
from musetalk_core.cli import main
sys.exit(main(sys.argv[1:]))
"""

_GRAPH = _PRELUDE + r"""
from tests.conftest import load_pack
from musetalk_core.io import audio_file
from nodes.video_types import FileVideo
nodes = load_pack().NODE_CLASS_MAPPINGS
mark("load")
(models,) = nodes["LoadMuseTalkModels"]().load("v15", "auto", "cpu", "torch")
video = FileVideo({video!r})
audio = audio_file.read_audio({audio!r})
mark("WhisperAudioEncode")
features = nodes["WhisperAudioEncode"]().encode(models, audio, 25.0, 2, 2, "reference", -45.0, video=video)[0]
mark("FaceDetectAndParse")
faces = nodes["FaceDetectAndParse"]().prepare(models, video=video, batch_size=8, detector_scale={scale})[0]
mark("VAEEncodeMasked")
(latents,) = nodes["VAEEncodeMasked"]().encode(models, faces, "sample", 0, 8)
mark("MuseTalkUNetInpaint")
generated = nodes["MuseTalkUNetInpaint"]().generate(models, latents, features, "bounce", 0, 8)[0]
mark("BlendAndAssemble")
out = nodes["BlendAndAssemble"]().blend(video=video, faces=faces, generated=generated)
mark("end")
print("frames", out[3], out[4].get_stream_source())
"""

# the output file of the graph path (BlendAndAssemble writes it under ComfyUI's output folder, or a temp folder)
_GRAPH_OUT = re.compile(r"frames \d+ (\S+)")

_NETWORKS = _OWN_PEAK + r"""
import sys, torch
sys.path.insert(0, {root!r})
from musetalk_core.weights.loading import load_models
load_models([{models!r}], "v15", precision="fp32", device="cpu")
"""


def make_media(folder: Path, seconds: float, resolution: str) -> tuple:
    """A synthetic face video and a tone, written once per (length, resolution)."""
    import av
    import numpy as np

    h, w = RESOLUTIONS[resolution]
    video = folder / f"talk_{resolution}_{seconds:g}s.mp4"
    audio = folder / f"tone_{seconds:g}s.wav"
    if not video.exists():
        yy, xx = np.mgrid[0:h, 0:w]
        base = ((xx // 4 + yy // 4) % 256).astype(np.uint8)
        tmp = video.with_suffix(".part.mp4")
        with av.open(str(tmp), "w") as c:
            s = c.add_stream("libx264", rate=FPS)
            s.width, s.height, s.pix_fmt = w, h, "yuv420p"
            s.options = {"preset": "ultrafast", "crf": "23"}
            for i in range(int(round(seconds * FPS))):
                img = np.stack([np.roll(base, i, 1), base, np.full_like(base, 90)], -1)
                cy, cx, ry, rx = h // 2 + (i % 5), w // 2, h // 5, w // 9
                sl = (slice(cy - ry, cy + ry), slice(cx - rx, cx + rx))
                blob = ((yy[sl] - cy) / ry) ** 2 + ((xx[sl] - cx) / rx) ** 2 < 1
                img[sl][blob] = (220, 180, 150)
                c.mux(s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
            c.mux(s.encode())
        tmp.rename(video)
    if not audio.exists():
        import soundfile as sf

        t = np.arange(int(seconds * 16000)) / 16000
        sf.write(str(audio), 0.4 * np.sin(2 * np.pi * 220 * t) * (0.6 + 0.4 * np.sin(6 * np.pi * t)), 16000)
    return video, audio


def check_output(path: str, seconds: float) -> dict:
    """Frames and durations of a written output: exactly floor(audio seconds x fps) frames, audio = video."""
    from musetalk_core.io.video_read import probe

    info = probe(path)
    expected = int(seconds * FPS)  # the tone is exactly ``seconds`` long at 16 kHz
    video_s = info["frames"] / float(info["fps"])
    return {"out_frames": info["frames"], "expected_frames": expected, "video_s": round(video_s, 4),
            "audio_s": round(float(info["audio_seconds"] or 0.0), 4),
            "frames_ok": info["frames"] == expected,
            "durations_ok": abs(video_s - float(info["audio_seconds"] or 0.0)) < 1.0 / 16000 + 1e-6}


def run_child(argv, env=None, timeline=None) -> dict:
    """Run one child process; its peak RSS (MB: its own VmHWM, written at its exit), CPU and wall time.

    ``timeline``: a file the child samples its RSS into (benchmarks/rss_timeline.py); summarised per stage."""
    import tempfile

    peak_file = Path(tempfile.mkstemp(prefix="musetalk-peak-")[1])
    env = dict(env or os.environ, MUSETALK_PEAK_FILE=str(peak_file))
    if timeline is not None:
        env["MUSETALK_RSS_TIMELINE"] = str(timeline)
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    out, err = proc.stdout.read(), proc.stderr.read()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"{argv[:4]} failed ({code}): {err[-2000:]}")
    # CPU seconds as well: on a shared machine the wall time follows the load, the CPU time follows the work
    own = peak_file.read_text().strip()
    peak_file.unlink()
    if not own:
        raise RuntimeError(f"{argv[:4]} did not report its peak memory")
    row = {"peak_rss_mb": round(float(own), 1), "ru_maxrss_mb": round(usage.ru_maxrss / 1024, 1),
           "wall_s": round(wall, 1), "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
           "stdout": out.strip()[-300:]}
    if timeline is not None:
        from benchmarks.rss_timeline import summarise

        row["stages"] = summarise(str(timeline))
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, nargs="+", default=[4.0, 10.0])
    p.add_argument("--resolution", nargs="+", choices=list(RESOLUTIONS), default=["720p"])
    p.add_argument("--path", nargs="+", choices=["cli", "graph"], default=["cli", "graph"])
    p.add_argument("--work", type=Path, default=Path("/tmp/musetalk_memory_bench"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--detector-scale", type=float, default=1.0,
                   help="S3FD on downscaled frames: same memory picture, much less CPU time on big frames")
    p.add_argument("--networks", choices=["tiny", "stand-in"], default="tiny",
                   help="tiny: the tiny real-format networks; stand-in: the per-frame network calls replaced by "
                        "cheap functions (benchmarks/standins.py) for length sweeps: what grows with length")
    p.add_argument("--timeline", action="store_true",
                   help="sample each run's RSS every 0.5 s by stage (WORK/timeline_PATH_RES_SECONDSs.txt) and "
                        "report the peak of every stage")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(ROOT / "tests"))
    from tiny import write_models

    models = args.work / "tiny_models"
    if not (models / ".done").exists():
        write_models(models, "v15")
        (models / ".done").write_text("ok")
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads),
               MUSETALK_MODELS_DIR=str(models))
    rows = [{"path": "networks", **run_child([sys.executable, "-c", _NETWORKS.format(root=str(ROOT),
                                                                                    models=str(models))], env)}]
    print(json.dumps(rows[-1]), flush=True)
    for resolution in args.resolution:
        for seconds in args.seconds:
            video, audio = make_media(args.work, seconds, resolution)
            for path in args.path:
                standins = args.networks == "stand-in"
                if path == "cli":
                    out = args.work / "out_cli.mp4"
                    cmd = [sys.executable, "-c", _CLI.format(root=str(ROOT), threads=args.threads,
                                                             standins=standins),
                           "lipsync", "--video", str(video), "--audio",
                           str(audio), "-o", str(out), "--models-dir", str(models),
                           "--device", "cpu", "--no-progress", "--detector-scale", str(args.detector_scale)]
                else:
                    cmd = [sys.executable, "-c", _GRAPH.format(root=str(ROOT), threads=args.threads,
                                                               video=str(video), audio=str(audio),
                                                               scale=args.detector_scale, standins=standins)]
                row = {"path": path, "networks": args.networks, "resolution": resolution, "seconds": seconds,
                       "detector_scale": args.detector_scale,
                       "frames": int(round(seconds * FPS))}
                timeline = args.work / f"timeline_{path}_{resolution}_{seconds:g}s.txt" if args.timeline else None
                row.update(run_child(cmd, env, timeline))
                found = _GRAPH_OUT.search(row["stdout"]) if path == "graph" else None
                written = str(out) if path == "cli" else (found.group(1) if found else None)
                if written:
                    row.update(check_output(written, seconds))
                rows.append(row)
                print(json.dumps(row), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
