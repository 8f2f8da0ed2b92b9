"""Record the issue-22 parity goldens from the reference bytedance/LatentSync code: the restore of decoded faces that
overshoot [-1, 1], and the InsightFace alignment path.

restore.npz: ``LipsyncPipeline.restore_video`` itself (the per-frame torchvision bicubic antialias resize to the
crop box, then ``AlignRestore.restore_img``: inverse warp, clamp AFTER the warp, soft-mask blend, uint8 truncation)
on tests/tiny_latentsync.py ``restore_inputs()`` (two 96 x 128 frames, float32 faces reaching +-1.45), with the
matrices of ``AlignRestore.align_warp_face`` (smoothing over the two frames), resolution 64, CPU float32
(upstream: float16 on the GPU). torchvision is stubbed: ``transforms.functional.resize`` is what torchvision does
on a float tensor (F.interpolate bicubic, align_corners=False, antialias, no clamp).

insightface_align.npz: ``ImageProcessor.affine_transform`` per frame in order (smoothing carried), with the reference
``FaceDetector`` (face filters, landmark rounding) over a stand-in ``insightface.app.FaceAnalysis`` that returns
``insightface_inputs()``' detections: the three points, the warp, the cv2 LANCZOS4 resize to 64 x 64.

    /work/ls-venv/bin/python tools/golden/record_latentsync_restore.py --reference /work/.mirror/bytedance+LatentSync/repo

(venv as tests/golden/latentsync/README.md: diffusers 0.32.2, einops, omegaconf, kornia 0.8.0, opencv).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "golden" / "latentsync"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from record_latentsync import extract, stub_modules  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", required=True, type=Path)
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()

    import torch
    import torch.nn.functional as F

    import tiny_latentsync as tl
    from musetalk_core.generators.latentsync.config import REFERENCE_COMMIT

    torch.set_num_threads(2)
    res = tl.PARITY["resolution"]
    ref = args.reference.resolve()
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "ref"
        tree.mkdir()
        extract(ref, tree)
        from diffusers import AutoencoderKL  # noqa: F401  (diffusers probes torchvision at import: before the stub)
        from diffusers.pipelines import DiffusionPipeline  # noqa: F401

        stub_modules(tree)
        git = ["git", "--git-dir", str(ref if (ref / "HEAD").is_file() else ref / ".git")]
        for real in ("latentsync/utils/affine_transform.py", "latentsync/utils/face_detector.py"):  # the real ones
            (tree / real).write_bytes(subprocess.run(git + ["show", f"{REFERENCE_COMMIT}:{real}"], check=True,
                                                     capture_output=True).stdout)
        tv = sys.modules["torchvision"]

        def resize(img, size, interpolation=None, antialias=None):  # torchvision on a float tensor
            return F.interpolate(img[None], size=tuple(size), mode="bicubic", align_corners=False,
                                 antialias=bool(antialias))[0]

        tv.transforms.functional = types.SimpleNamespace(resize=resize)
        detections = []
        app = tl.insightface_stand_in(detections)
        sys.modules.update({"insightface": types.ModuleType("insightface"), "insightface.app": app})
        sys.path.insert(0, str(tree))
        from latentsync.pipelines.lipsync_pipeline import LipsyncPipeline  # reference code from here on
        from latentsync.utils.affine_transform import AlignRestore
        from latentsync.utils.face_detector import FaceDetector
        from latentsync.utils.image_processor import ImageProcessor

        # --- restore of overshooting faces
        inputs = tl.restore_inputs()
        restorer = AlignRestore(resolution=res, device="cpu", dtype=torch.float32)
        matrices, boxes = [], []
        for frame, points in zip(inputs["frames"], inputs["points"]):
            crop, matrix = restorer.align_warp_face(frame.copy(), landmarks3=points, smooth=True)
            matrices.append(matrix)
            boxes.append([0, 0, crop.shape[1], crop.shape[0]])  # ImageProcessor.affine_transform's box
        pipe = types.SimpleNamespace(image_processor=types.SimpleNamespace(restorer=restorer))
        restored = LipsyncPipeline.restore_video(pipe, torch.from_numpy(inputs["faces"]), inputs["frames"], boxes,
                                                 matrices)

        # --- the InsightFace alignment path
        ins = tl.insightface_inputs()
        detections.extend(ins["detections"])
        processor = ImageProcessor(res, device="cpu", mask_image=torch.ones(3, res, res))  # mask unused here
        processor.face_detector = FaceDetector(device="cuda")  # the stand-in FaceAnalysis needs no GPU
        processor.restorer = AlignRestore(resolution=res, device="cpu", dtype=torch.float32)
        crops, ins_matrices = [], []
        for frame in ins["frames"]:
            face, _box, matrix = processor.affine_transform(frame)
            crops.append(face.permute(1, 2, 0).numpy())
            ins_matrices.append(matrix[0].numpy())

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / "restore.npz", reference_commit=np.array(REFERENCE_COMMIT),
                        matrices=np.stack([m[0].numpy() for m in matrices]), restored=restored)
    np.savez_compressed(out / "insightface_align.npz", reference_commit=np.array(REFERENCE_COMMIT),
                        matrices=np.stack(ins_matrices), crops=np.stack(crops))
    print(f"wrote {out}/restore.npz: restored {restored.shape}; insightface_align.npz: crops {np.stack(crops).shape}")


if __name__ == "__main__":
    main()
