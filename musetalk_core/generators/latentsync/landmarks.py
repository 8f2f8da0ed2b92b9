"""Where LatentSync's three alignment points come from: our DWPose face keypoints (default) or InsightFace.

Upstream (image_processor.py) detects with InsightFace's FaceAnalysis (detection + landmark_2d_106) and takes the
left eyebrow centre, the right eyebrow centre and the nose centre (``align.insightface_points``). Our default needs no
new dependency: FaceDetectAndParse already computes DWPose's 68 face keypoints in the iBUG-68 layout, and the same
three points are taken from them:

- left eyebrow centre (image left): mean of iBUG 17..21; right eyebrow centre: mean of 22..26;
- nose centre: mean of the nose bridge 27..30.

Why the bridge and not the whole nose (27..35): the alignment template puts the nose point 20 / 41 = 0.49
eyebrow-distances below the eyebrow line. On the 68-point mean face shape (OpenFace's dlib template, min-max
normalised) the bridge mean sits 0.51 eyebrow-distances below it, the mean of all nine nose points 0.74: the bridge is
the choice that lands where InsightFace's points land for the template to fit. Not measured against InsightFace on
real faces here (no InsightFace models on this machine): see docs/latentsync.md.

The points are rounded as upstream rounds InsightFace's. Our landmarks are int-truncated (as MuseTalk's reference
keeps them), so a mean of 4-5 of them is biased by about -0.5 px before rounding.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ...errors import InputError, ModelFilesMissing

BACKENDS = ("dwpose", "insightface")

IBUG_LEFT_BROW = list(range(17, 22))
IBUG_RIGHT_BROW = list(range(22, 27))
IBUG_NOSE_BRIDGE = list(range(27, 31))

INSIGHTFACE_INSTALL = "pip install insightface onnxruntime"  # onnxruntime-gpu on CUDA machines
INSIGHTFACE_DETECT_SIZE = 512  # face_detector.py


def dwpose_points(landmarks68: np.ndarray) -> Optional[np.ndarray]:
    """(3, 2) float64 points from iBUG-68 landmarks (x, y), or None when the landmarks are unknown (all -1, as
    MUSETALK_FACES stores a face-less frame) or the three points coincide (no transform fits them).

    Points may lie outside the frame (negative): a face at the border still aligns, as upstream's would."""
    lmk = np.asarray(landmarks68, dtype=np.float64)
    if lmk.shape != (68, 2) or (lmk == -1).all():
        return None
    left = lmk[IBUG_LEFT_BROW].mean(axis=0)
    right = lmk[IBUG_RIGHT_BROW].mean(axis=0)
    nose = lmk[IBUG_NOSE_BRIDGE].mean(axis=0)
    points = np.round([left, right, nose])
    if np.ptp(points, axis=0).max() == 0:
        return None
    return points


def onnx_providers(device) -> tuple:
    """onnxruntime providers and InsightFace's ctx_id for a torch device: 'cuda:1' runs on GPU 1 (the provider's
    device_id; insightface's ctx_id only tells GPU from CPU), 'cpu' / 'mps' on the CPU."""
    import torch

    dev = torch.device(device)
    if dev.type != "cuda":
        return ["CPUExecutionProvider"], -1
    index = dev.index if dev.index is not None else 0
    return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"], index


class InsightFaceLandmarks:
    """Upstream's FaceDetector: InsightFace FaceAnalysis, the largest plausible face, its 106 landmarks.

    Optional: needs ``insightface`` and ``onnxruntime`` installed and the buffalo_l detection + 106-landmark models
    under ``<root>/models/buffalo_l`` (upstream: checkpoints/auxiliary). Nothing is downloaded here: FaceAnalysis
    would fetch missing models from the network, so their presence is checked first.
    """

    def __init__(self, root: Path, device: str = "cpu"):
        try:
            from insightface.app import FaceAnalysis  # type: ignore
        except ImportError:
            raise InputError("The 'insightface' alignment backend needs the optional InsightFace package: "
                             f"{INSIGHTFACE_INSTALL} (or use the default 'dwpose' backend).") from None
        root = Path(root or "models/musetalk/latentsync/auxiliary")
        folder = root / "models" / "buffalo_l"
        if not folder.is_dir() or not any(folder.glob("*.onnx")):
            raise ModelFilesMissing(
                f"InsightFace's buffalo_l models (detection and 2d106det .onnx) were not found in {folder}. Copy "
                "LatentSync's checkpoints/auxiliary/models/buffalo_l there, or use the default 'dwpose' backend.",
                [str(folder)])
        providers, ctx_id = onnx_providers(device)
        self.app = FaceAnalysis(allowed_modules=["detection", "landmark_2d_106"], root=str(root),
                                providers=providers)
        self.app.prepare(ctx_id=ctx_id, det_size=(INSIGHTFACE_DETECT_SIZE, INSIGHTFACE_DETECT_SIZE))

    def __call__(self, frame_rgb: np.ndarray, threshold: float = 0.5) -> Optional[np.ndarray]:
        """(106, 2) int landmarks of the largest face passing upstream's filters, or None.

        The frame is given in RGB, as upstream's read_video hands it to FaceAnalysis."""
        best, best_area = None, 0
        for face in self.app.get(frame_rgb):
            x1, y1, x2, y2 = face.bbox.astype(np.int_).tolist()
            w, h = x2 - x1, y2 - y1
            if w < 50 or h < 80 or not 0.2 <= w / h <= 1.5 or face.det_score < threshold:
                continue
            if w * h > best_area:
                best, best_area = face, w * h
        if best is None:
            return None
        return np.round(best.landmark_2d_106).astype(np.int_)


def check_backend(name: str) -> str:
    if name not in BACKENDS:
        raise InputError(f"alignment backend '{name}' is not known: choose one of {', '.join(BACKENDS)}.")
    return name


def points_from_faces(landmarks: Sequence[np.ndarray], has_face: Sequence[bool]) -> list:
    """Per frame the DWPose three points, or None where the frame has no face or unknown keypoints."""
    return [dwpose_points(lmk) if bool(ok) else None for lmk, ok in zip(landmarks, has_face)]
