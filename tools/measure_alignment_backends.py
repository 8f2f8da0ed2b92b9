"""How far LatentSync's affine matrices and aligned crops move when the three alignment points move (issue 22).

The default backend takes the points from DWPose's iBUG-68 keypoints (eyebrows 17-21 / 22-26, nose bridge 27-30);
upstream takes them from InsightFace's 106 landmarks. Neither InsightFace's buffalo_l models nor the real DWPose
weights are on this machine, so the two cannot be run on real faces here. What is measured instead, on the
synthetic head of the tests (tests/media.py face_frames, 7 frames 128 x 112) with the tiny test networks (S3FD,
calibrated DWPose): the DWPose points of every frame, aligned with smoothing as the generator does, against the same
frames aligned with those points moved the ways the two backends can differ:

- ``+0.5 px``: the landmark rounding. DWPose's keypoints are int-truncated (as MuseTalk keeps them), InsightFace's
  rounded, so the DWPose points sit about 0.5 px up-left of InsightFace's for the same landmark positions;
- ``nose +-k px``: the nose point (DWPose: bridge mean; InsightFace: mean of 74, 77, 83, 86) k pixels lower/higher;
- ``brow 1 px``: one eyebrow centre 1 px higher (a small tilt).

Per scenario: the largest change of the matrix's linear part (relative), of its translation (px of the crop), how
far the crop's corners move in the frame (px), and the aligned crops' (res x res, after LANCZOS4) mean / max absolute
difference in grey levels and PSNR. Run: ``.venv/bin/python tools/measure_alignment_backends.py [--resolution 256]``.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def corners_in_frame(matrix: torch.Tensor, crop_w: int, crop_h: int) -> np.ndarray:
    """The crop's four corners mapped back into the frame (inverse of the frame -> crop matrix)."""
    m = np.eye(3)
    m[:2] = matrix.double().numpy()
    inv = np.linalg.inv(m)
    pts = np.array([[0, 0, 1], [crop_w - 1, 0, 1], [0, crop_h - 1, 1], [crop_w - 1, crop_h - 1, 1]], float)
    return (inv @ pts.T).T[:, :2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=256)
    args = parser.parse_args()
    torch.set_num_threads(2)

    from media import face_frames
    from musetalk_core.faces.material import build_faces
    from musetalk_core.generators.latentsync import align
    from musetalk_core.generators.latentsync.landmarks import IBUG_LEFT_BROW, IBUG_NOSE_BRIDGE, IBUG_RIGHT_BROW
    from musetalk_core.generators.latentsync.video_align import align_frames
    from musetalk_core.weights.loading import load_models
    from musetalk_core.io.sources import TensorSource
    from tiny import write_models

    frames = face_frames(7, 128, 112)
    with tempfile.TemporaryDirectory() as tmp:
        write_models(Path(tmp), "v15", dwpose_init="calibrated")
        models = load_models([Path(tmp)], "v15", precision="fp32", device="cpu",
                             networks=("s3fd", "landmarks", "face_parser"))
        source = TensorSource(torch.from_numpy(frames).float() / 255.0, "images")
        faces, _, _ = build_faces(models, source)
    lmk = faces.landmarks.numpy().astype(np.float64)
    has_face = faces.has_face.numpy()
    print(f"frames with a face: {int(has_face.sum())} of {len(frames)}")

    def points(i, shift=(0.0, 0.0), nose=0.0, brow=0.0):
        if not has_face[i]:
            return None
        p = lmk[i] + np.array(shift)
        left, right, nose_pt = (p[IBUG_LEFT_BROW].mean(0), p[IBUG_RIGHT_BROW].mean(0), p[IBUG_NOSE_BRIDGE].mean(0))
        return np.round([left + [0.0, -brow], right, nose_pt + [0.0, nose]])

    res = args.resolution
    _, (crop_w, crop_h) = align.face_template(res)
    read = lambda idx: frames[idx]
    base = align_frames(read, len(frames), lambda i, f: points(i), res)
    rows = []
    scenarios = {"+0.5 px (rounding)": dict(shift=(0.5, 0.5)), "nose +1 px": dict(nose=1.0),
                 "nose -1 px": dict(nose=-1.0), "nose +2 px": dict(nose=2.0), "nose +4 px": dict(nose=4.0),
                 "brow 1 px": dict(brow=1.0)}
    brow_dist = np.mean([np.linalg.norm(points(i)[1] - points(i)[0]) for i in range(len(frames)) if has_face[i]])
    print(f"eyebrow centre distance on the synthetic head: {brow_dist:.1f} px; resolution {res}, crop {crop_w} x "
          f"{crop_h}")
    for name, kw in scenarios.items():
        moved = align_frames(read, len(frames), lambda i, f, kw=kw: points(i, **kw), res)
        lin, trans, corner, mad, mx, psnr = [], [], [], [], [], []
        for i in np.flatnonzero(has_face):
            a, b = base.matrices[i].double(), moved.matrices[i].double()
            lin.append(float((b[:, :2] - a[:, :2]).abs().max() / a[:, :2].abs().max()))
            trans.append(float((b[:, 2] - a[:, 2]).abs().max()))
            corner.append(float(np.abs(corners_in_frame(b, crop_w, crop_h)
                                       - corners_in_frame(a, crop_w, crop_h)).max()))
            d = (moved.crops[i].double() - base.crops[i].double()).abs()
            mad.append(float(d.mean()))
            mx.append(float(d.max()))
            mse = float((d ** 2).mean())
            psnr.append(10 * math.log10(255 ** 2 / mse) if mse > 0 else float("inf"))
        rows.append((name, max(lin), max(trans), max(corner), float(np.mean(mad)), max(mx), min(psnr)))
    print("| points moved | linear part (rel., max) | translation (crop px, max) | crop corners in the frame (px, "
          "max) | crop mean abs diff (levels) | crop max diff | crop PSNR (min, dB) |")
    print("|---|---|---|---|---|---|---|")
    for name, lin, tr, co, mad, mx, ps in rows:
        print(f"| {name} | {lin:.4f} | {tr:.2f} | {co:.2f} | {mad:.2f} | {mx:.0f} | {ps:.1f} |")


if __name__ == "__main__":
    main()
