"""H.264 encoding speed and size per libx264 preset (the command line's ``--preset``), through
io.video_write.VideoWriter.

    python -m benchmarks.encode                                  # 1080p, 96 frames, veryfast / fast / medium
    python -m benchmarks.encode --size 720p --presets ultrafast veryfast medium slow --json results/encode.json

The frames are a real-looking clip rather than noise (noise encodes at a fraction of the speed): a moving face-like
blob on a textured gradient, as benchmarks/memory.py makes them. Reported per preset: frames per second of the
whole write (the writer's own encoder thread included), the file size, and the mean absolute difference of the
decoded frames from the input (the quality a preset keeps at the same crf).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

SIZES = {"720p": (720, 1280), "1080p": (1080, 1920)}


def clip(n: int, h: int, w: int) -> torch.Tensor:
    yy, xx = np.mgrid[0:h, 0:w]
    base = ((xx // 4 + yy // 4) % 256).astype(np.uint8)
    frames = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        img = np.stack([np.roll(base, 3 * i, 1), base, np.full_like(base, 90)], -1)
        cy, cx, ry, rx = h // 2 + 2 * (i % 9), w // 2 + (i % 7), h // 5, w // 9
        blob = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
        img[blob] = (220, 180, 150)
        frames[i] = img
    return torch.from_numpy(frames)


def run(frames: torch.Tensor, preset: str, crf: int, folder: Path) -> dict:
    from musetalk_core.io import video_read, video_write

    n, h, w = (int(v) for v in frames.shape[:3])
    path = folder / f"{preset}.mp4"
    t0 = time.perf_counter()
    with video_write.VideoWriter(path, Fraction(25), w, h, crf, preset=preset) as writer:
        for start in range(0, n, 16):
            writer.write(frames[start:start + 16])
        writer.finish(None)
    seconds = time.perf_counter() - t0
    back = video_read.read_video(path).frames
    return {"preset": preset, "fps": round(n / seconds, 1), "seconds": round(seconds, 2),
            "size_kb": round(path.stat().st_size / 1024, 1),
            "mean_abs_diff": round(float((back.float() - frames.float()).abs().mean()), 3)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=list(SIZES), default="1080p")
    p.add_argument("--frames", type=int, default=96)
    p.add_argument("--crf", type=int, default=18)
    p.add_argument("--presets", nargs="+", default=["veryfast", "fast", "medium"])
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    frames = clip(args.frames, *SIZES[args.size])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets:
            rows.append({"size": args.size, "frames": args.frames, "crf": args.crf,
                         **run(frames, preset, args.crf, Path(tmp))})
            print(json.dumps(rows[-1]), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
