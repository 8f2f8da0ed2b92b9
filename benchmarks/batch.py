"""The same batch of jobs in one process and on Ray, side by side (issue 16).

    python -m benchmarks.batch                                   # 4 jobs, tiny networks, 64x48 frames, CPU, 3 runs
    python -m benchmarks.batch --jobs 8 --seconds 2 --workers 2 --json batch.json
    python -m benchmarks.batch --models-dir models/musetalk --video my.mp4 --device cuda   # real networks, GPUs

Each run is ``python -m musetalk_core batch`` in a fresh process, timed from the outside (wall clock: process start,
imports, cluster start, network loading and every job), on an empty output folder. The jobs: ``--jobs`` audio
tracks of ``--seconds`` each over two videos (each video shared by half the jobs, so its per-video material is
computed once and reused). Reported per run: wall seconds, output frames per second over the whole run, and from
the summary the per-job prepare seconds (audio features + per-video material: the per-job fixed cost) and job
seconds. Tiny networks by default (the test suite's, tests/tiny), which find faces in the synthetic clips; real
networks with random weights find none (every frame would pass through), so real-scale runs need real weights
(--models-dir) and a real face video (--video).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _media(folder: Path, args) -> list:
    sys.path.insert(0, str(ROOT / "tests"))
    from media import face_frames, tone, write_video, write_wav

    h, w = (int(v) for v in args.size.split("x"))
    videos = [Path(args.video)] if args.video else [
        write_video(folder / f"video{k}.mp4", face_frames(args.frames, h, w, seed=k), Fraction(25)) for k in range(2)]
    jobs = []
    for k in range(args.jobs):
        audio = write_wav(folder / f"speech{k}.wav", tone(args.seconds, 16000, freq=180.0 + 20 * k))
        jobs.append({"video": str(videos[k % len(videos)]), "audio": str(audio), "output": f"job{k}.mp4",
                     "device": args.device, "batch_size": args.batch_size})
    (folder / "jobs.jsonl").write_text("".join(json.dumps(j) + "\n" for j in jobs))
    return jobs


def _run(folder: Path, models: Path, name: str, extra: list, repeat: int = 0, env: dict = None) -> dict:
    out = folder / f"{name.replace(' ', '-').replace(',', '')}-{repeat}"
    cmd = [sys.executable, "-m", "musetalk_core", "batch", str(folder / "jobs.jsonl"), "--output-dir", str(out),
           "--models-dir", str(models), "--no-progress", *extra]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, **(env or {})})
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    records = [json.loads(line) for line in (out / "summary.jsonl").read_text().splitlines()]
    frames = sum(r["frames"] for r in records)
    return {"run": name, "command": " ".join(cmd[1:]), "wall_s": round(wall, 2), "frames": frames,
            "fps": round(frames / wall, 3), "jobs": len(records),
            "prepare_s_median": round(statistics.median(r["prepare_seconds"] for r in records), 2),
            "job_s_median": round(statistics.median(r["seconds"] for r in records), 2),
            "reused_video_material": sum(bool(r["reused_video_material"]) for r in records)}


def _median(name: str, runs: list) -> dict:
    """The run with the median wall time, with every run's wall time beside it."""
    ordered = sorted(runs, key=lambda r: r["wall_s"])
    return {**ordered[len(ordered) // 2], "wall_s_all": [r["wall_s"] for r in runs]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=4)
    p.add_argument("--seconds", type=float, default=1.0, help="audio per job (output = seconds x 25 frames)")
    p.add_argument("--frames", type=int, default=8, help="source frames per synthetic video")
    p.add_argument("--size", default="64x48", help="synthetic frame size HxW")
    p.add_argument("--video", help="use this video for every job instead of the synthetic ones")
    p.add_argument("--models-dir", help="models folder (default: the tiny test networks)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--split-seconds", type=float, default=None, help="also split jobs on Ray")
    p.add_argument("--one-thread", action="store_true", help="also one process with OMP_NUM_THREADS=1")
    p.add_argument("--repeats", type=int, default=3, help="runs of each side, alternated; the median is reported")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="musetalk-batch-bench-") as tmp:
        folder = Path(tmp)
        _media(folder, args)  # puts tests/ on sys.path
        if args.models_dir:
            models = Path(args.models_dir)
        else:  # the test suite's tiny networks (as tests/conftest.py writes them: they find the synthetic faces)
            from tiny import write_models

            models = write_models(folder / "models", "v15")
        ray = ["--ray", "auto", "--workers", str(args.workers)]
        if args.split_seconds:
            ray += ["--split-seconds", str(args.split_seconds)]
        sides = {"one process": ([], {}), f"ray {args.workers} workers": (ray, {})}
        if args.one_thread:  # one worker's own pace: the yardstick for the Ray side's scaling
            sides["one process, 1 thread"] = ([], {"OMP_NUM_THREADS": "1"})
        runs = {name: [] for name in sides}
        for k in range(args.repeats):  # alternated, so a change in the machine's load hits every side alike
            for name, (extra, env) in sides.items():
                runs[name].append(_run(folder, models, name, extra, k, env))
        results = [_median(name, rs) for name, rs in runs.items()]
    base = results[0]["wall_s"]
    for r in results:
        r["speedup"] = round(base / r["wall_s"], 2)
    report = {"cpu_count": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2), "args": vars(args),
              "results": results}
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
