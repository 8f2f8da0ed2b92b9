"""The streaming blend (command line, VIDEO path, batch jobs) of uint8 frames: blend squares only, against whole
frames converted to float and back, side by side on the same chunk (frames per second, peak RSS / VRAM increase).

    python -m benchmarks.blend_stream                       # 1080p and 720p, 16-frame chunks, CPU
    python -m benchmarks.blend_stream --device cuda --json results/blend_stream_cuda.json

- ``squares``: ``Blender.blend_uint8``: only the crop box within the frame of each face goes to the device and
  only the composited pixels come back into the uint8 chunk (what the pack does);
- ``whole frames``: ``to_uint8(Blender.blend(...)).cpu()``: the chunk to the device, to float, composited, rounded
  back and copied to the CPU (what it did before, and the IMAGE path's way).
Both sides give the same pixels (checked here on every run). The faces are synthetic: a box of ``--face`` pixels
(default 400, a 1080p talking head) with its parsing-like mask, the crop square 1.5x the box, as FaceDetectAndParse
makes them. Masks are blurred once and cached by both sides alike (warm-up run), as in a real run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from .timing import measure

SIZES = {"720p": (720, 1280), "1080p": (1080, 1920), "4k": (2160, 3840)}


def _material(n: int, h: int, w: int, face: int, seed: int = 0):
    """n uint8 frames, faces (MuseTalkFaces) with a box of ``face`` px near the centre, and generated faces."""
    from musetalk_core.types import MuseTalkFaces, MuseTalkGenerated

    rng = np.random.default_rng(seed)
    frames = torch.from_numpy(rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8))
    boxes, crops, masks = [], [], []
    for i in range(n):
        x, y = w // 2 - face // 2 + (i % 7) - 3, h // 2 - face // 2 + (i % 5) - 2
        boxes.append((x, y, x + face, y + face))
        s = int(face // 2 * 1.5)
        cx, cy = x + face // 2, y + face // 2
        crops.append((cx - s, cy - s, cx + s, cy + s))
        mask = np.zeros((2 * s, 2 * s), np.uint8)
        mask[s - face // 2:s + face // 2, s - face // 2:s + face // 2] = 255  # the face box, as parsing would
        masks.append(torch.from_numpy(mask))
    faces = MuseTalkFaces(frame_size=(h, w), has_face=torch.ones(n, dtype=torch.bool),
                          boxes=torch.tensor(boxes), landmarks=torch.full((n, 68, 2), -1),
                          crop_boxes=torch.tensor(crops), masks=tuple(masks),
                          crops=torch.zeros((n, 256, 256, 3), dtype=torch.uint8))
    gen = torch.from_numpy(rng.integers(0, 256, (n, 256, 256, 3), dtype=np.uint8))
    generated = MuseTalkGenerated(faces=gen, source_index=torch.arange(n), has_face=torch.ones(n, dtype=torch.bool),
                                  fps=25.0)
    return frames, faces, generated


def run(size: str, chunk: int, face: int, device: torch.device, repeats: int) -> dict:
    from musetalk_core.blend.blender import make_blender, to_uint8

    h, w = SIZES[size]
    frames, faces, generated = _material(chunk, h, w, face)
    gen_dev = generated.faces.to(device)
    blender = make_blender(faces, generated, device, 0.05, 0.5, False, 3)
    faces_of = lambda rows: gen_dev[rows]  # noqa: E731
    squares = lambda: blender.blend_uint8(0, chunk, frames.clone(), faces_of)  # noqa: E731
    whole = lambda: to_uint8(blender.blend(0, chunk, frames.clone(), faces_of), in_place=True).cpu()  # noqa: E731
    same = torch.equal(squares(), whole())
    row = {"size": size, "chunk": chunk, "face_px": face, "device": str(device), "identical": same}
    for name, fn in (("squares", squares), ("whole_frames", whole)):
        m = measure(fn, chunk, device, warmup=1, repeats=repeats)
        row[name] = {"fps": round(m.fps, 1), "median_s": round(m.median_s, 4),
                     "rss_increase_mb": round(m.rss_increase_mb, 1),
                     "vram_increase_mb": None if getattr(m, "vram_increase", None) is None else round(m.vram_increase, 1)}
    row["speedup"] = round(row["squares"]["fps"] / row["whole_frames"]["fps"], 2)
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="+", choices=list(SIZES), default=["1080p", "720p"])
    p.add_argument("--chunk", type=int, default=16, help="frames per output chunk (the CLI's default 16)")
    p.add_argument("--face", type=int, default=400, help="face box side in pixels")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    rows = []
    for size in args.sizes:
        rows.append(run(size, args.chunk, args.face, torch.device(args.device), args.repeats))
        print(json.dumps(rows[-1]), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1))
    return 0 if all(r["identical"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
