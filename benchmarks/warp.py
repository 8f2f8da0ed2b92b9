"""DWPose's input warp: warp_ops (OpenCV 4.9.0.80's numbers in torch, any device) against the straightforward
per-frame cv2.warpAffine of the installed OpenCV, side by side on the same frames (frames per second).

    python -m benchmarks.warp                                  # 720p and 1080p, batches of 8, CPU
    python -m benchmarks.warp --device cuda --json benchmarks/results/gpu-warp.json

Whole-frame person boxes (landmark_region "full_frame", the default), so every warp takes the axis-aligned path.
The cv2 column also says how many output values differ from ours: 0 with OpenCV 4.x, up to 6 grey levels with 5.x.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from .timing import measure

SIZES = {"720p": (720, 1280), "1080p": (1080, 1920)}


def _row(label: str, frames: np.ndarray, device: torch.device, repeats: int) -> dict:
    import cv2

    from musetalk_core.models import dwpose as dw

    n, h, w = frames.shape[:3]
    mat = dw.warp_matrix(*dw.center_scale((0, 0, w, h)))

    def cv2_side():
        return np.stack([cv2.warpAffine(f, mat, (dw.INPUT_W, dw.INPUT_H), flags=cv2.INTER_LINEAR) for f in frames])

    def ours():
        return dw.warp_inputs(frames, None, device=device)[0]

    theirs, mine = cv2_side(), ours()
    diff = np.abs(theirs.astype(int) - mine.astype(int))
    row = {"frames": label, "batch": n, "device": str(device), "opencv": cv2.__version__,
           "values_differing_from_installed_cv2": int((diff > 0).sum()), "max_difference": int(diff.max())}
    for name, fn, dev in (("warp_ops", ours, device), ("cv2", cv2_side, torch.device("cpu"))):
        m = measure(fn, n, dev, warmup=1, repeats=repeats)
        row[f"{name}_fps"] = round(m.fps, 1)
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["720p", "1080p"], choices=sorted(SIZES))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's own choice)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    rows = []
    for size in args.sizes:
        h, w = SIZES[size]
        frames = rng.integers(0, 256, (args.batch, h, w, 3), dtype=np.uint8)
        rows.append(_row(size, frames, torch.device(args.device), args.repeats))
        print(json.dumps(rows[-1]))
    if args.json:
        args.json.write_text(json.dumps({"command": "python -m benchmarks.warp " + " ".join(argv or sys.argv[1:]),
                                         "torch_threads": torch.get_num_threads(), "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
