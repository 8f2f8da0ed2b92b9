"""Record golden values for LatentSync's face alignment and restore from the reference bytedance/LatentSync code.

Runs the reference's latentsync/utils/affine_transform.py (AlignRestore: transformation_from_points with smoothing,
align_warp_face, restore_img; kornia 0.8.0, LatentSync's pin) at the pinned commit on the frames and three points of
tests/tiny_latentsync.py ``align_inputs()``, on the CPU with ``dtype=torch.float32`` (upstream's default is float16
on the GPU). Two steps of the pipeline around it are written out here as the pipeline does them:
ImageProcessor.affine_transform's ``cv2.resize(face, (res, res), INTER_LANCZOS4)`` and restore_video's torchvision
``resize(face, (h, w), BICUBIC, antialias=True)`` (torchvision does F.interpolate bicubic, antialias, on tensors).

    /work/ls-venv/bin/python tools/golden/record_latentsync_align.py --reference /work/.mirror/bytedance+LatentSync/repo

The venv also needs kornia==0.8.0. Writes tests/golden/latentsync/align.npz.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "golden" / "latentsync" / "align.npz"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from record_latentsync import extract  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", required=True, type=Path)
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()

    import cv2
    import torch
    import torch.nn.functional as F

    import tiny_latentsync as tl
    from musetalk_core.generators.latentsync.config import REFERENCE_COMMIT

    torch.set_num_threads(2)
    inputs = tl.align_inputs()
    res = tl.ALIGN["resolution"]
    with tempfile.TemporaryDirectory() as tmp:
        extract(args.reference.resolve(), Path(tmp))
        sys.path.insert(0, tmp)
        from latentsync.utils.affine_transform import AlignRestore  # reference code

        restorer = AlignRestore(resolution=res, device="cpu", dtype=torch.float32)
        crops, resized, matrices, restored = [], [], [], []
        for frame, points in zip(inputs["frames"], inputs["points"]):
            crop, matrix = restorer.align_warp_face(frame.copy(), landmarks3=points, smooth=True)
            crops.append(crop)
            resized.append(cv2.resize(crop, (res, res), interpolation=cv2.INTER_LANCZOS4))
            matrices.append(matrix[0].numpy())
        for frame, matrix, crop in zip(inputs["frames"], matrices, crops):
            face = F.interpolate(inputs["face"][None], size=crop.shape[:2], mode="bicubic", align_corners=False,
                                 antialias=True)[0]
            restored.append(restorer.restore_img(frame, face, torch.from_numpy(matrix)[None]))

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, reference_commit=np.array(REFERENCE_COMMIT), matrices=np.stack(matrices),
                        crops=np.stack(crops), resized=np.stack(resized), restored=np.stack(restored))
    print(f"wrote {args.out}: crops {np.stack(crops).shape}, restored {np.stack(restored).shape}")


if __name__ == "__main__":
    main()
