"""Face detection, landmarks and the crop box for a batch of frames (reference preprocessing.get_landmark_and_bbox).

Per frame, as the reference: DWPose's 68 face points (whole frame as the person box), S3FD's face box, then the
landmark box with bbox_shift, the clamp, the S3FD fallback, the v1.5 extra_margin and a zero placeholder for frames
without a face; plus the "adjustable range" report. Both networks run batched. Options beyond the reference (off by
default): which face to use when S3FD finds several, landmarks on that face's region instead of the whole frame,
and detection on a downscaled frame.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, List, Mapping, Optional, Sequence

import numpy as np
import torch

from ..errors import InputError
from .boxes import bbox_range_text as _range_text
from .boxes import landmark_box
from ..hooks import NO_HOOKS, RunHooks

FACE_SELECTIONS = ("highest_score", "largest", "leftmost", "rightmost")
LANDMARK_REGIONS = ("full_frame", "face_region")
FACE_REGION_FACTOR = 2.0  # face_region: DWPose's person box is a square of 2x the S3FD box's longer side
# frames x pixels per S3FD forward (batch shrinks on big frames; results unchanged): about 1 GB of first-layer
# activations, so 720p and 1080p peak alike; a 4K frame alone is 8.3 Mpx (use detector_scale 0.5 there)
S3FD_PIXEL_BUDGET = 2_000_000
S3FD_BYTES_PER_PIXEL = 520  # measured peak per detected pixel at fp32 on the CPU (two 64-channel maps + workspace)
log = logging.getLogger(__name__)
_warned_sizes: set = set()


def warn_large_frames(h: int, w: int, detector_scale: float) -> None:
    """Once per frame size and scale: a frame alone of more than twice the pixel budget (4K at detector_scale 1)
    is one S3FD pass at its full size, several GB; say which detector_scale keeps it near the budget."""
    pixels = int(h * w * detector_scale ** 2)
    if pixels <= 2 * S3FD_PIXEL_BUDGET or (h, w, detector_scale) in _warned_sizes:
        return
    _warned_sizes.add((h, w, detector_scale))
    fit = int((1.1 * S3FD_PIXEL_BUDGET / (h * w)) ** 0.5 * 20) / 20  # multiple of 0.05: 0.5 for 4K, 0.25 for 8K
    log.warning("FaceDetectAndParse: %dx%d frames at detector_scale %g are %.1f Mpx per face-detector pass (about "
                "%.1f GB at fp32); detector_scale %.2f keeps a pass near %.0f Mpx (about %.1f GB) and detects about "
                "%.0fx faster (small faces are found less well).", w, h, detector_scale, pixels / 1e6,
                pixels * S3FD_BYTES_PER_PIXEL / 1e9, fit, S3FD_PIXEL_BUDGET / 1e6,
                h * w * fit ** 2 * S3FD_BYTES_PER_PIXEL / 1e9, pixels / (h * w * fit ** 2))


@dataclass(frozen=True, eq=False)
class FaceLocations:
    """What face location found for N frames (all int64 CPU tensors unless noted).

    - has_face: bool (N,): S3FD found a face with p > 0.5.
    - boxes: (N, 4) the final crop box (bbox_shift, clamp, fallback, v1.5 extra_margin); zeros where no face.
    - landmarks: (N, 68, 2) the 68 face points truncated to int32 as the reference, before the bbox_shift
      mutation of point 29; -1 where no face.
    - landmark_scores: float32 (N, 68) SimCC scores (-1 where no face).
    - detector_boxes: (N, 4) the chosen S3FD box (clipped at 0, int-truncated, x2/y2 not clipped); zeros if none.
    - used_fallback: bool (N,) the S3FD box replaced an unusable landmark box (the reference's "error bbox").
    - range_minus / range_plus: per frame with a face, lm30.y - lm29.y and lm29.y - lm28.y (before the shift).
    """

    frame_size: tuple
    has_face: torch.Tensor
    boxes: torch.Tensor
    landmarks: torch.Tensor
    landmark_scores: torch.Tensor
    detector_boxes: torch.Tensor
    used_fallback: torch.Tensor
    range_minus: List[int]
    range_plus: List[int]
    bbox_shift: int = 0
    settings: Mapping[str, Any] = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return int(self.has_face.shape[0])

    def bbox_range_text(self) -> str:
        """The reference's 'adjustable range' line (safe when no frame has a face)."""
        return _range_text(self.num_frames, self.range_minus, self.range_plus, self.bbox_shift)


def bbox_range_text(num_frames: int, range_minus, range_plus, bbox_shift: int) -> str:
    return _range_text(num_frames, range_minus, range_plus, bbox_shift)


def _check(frames_u8, version, bbox_shift, extra_margin, face_selection, landmark_region, detector_scale,
           batch_size):
    if not isinstance(frames_u8, torch.Tensor) or frames_u8.dtype != torch.uint8 or frames_u8.ndim != 4 \
            or frames_u8.shape[-1] != 3:
        shape = tuple(frames_u8.shape) if isinstance(frames_u8, torch.Tensor) else type(frames_u8).__name__
        raise InputError(f"'images' must be uint8 RGB frames (N, H, W, 3) (use frames.image_to_uint8); got {shape}.")
    if frames_u8.shape[0] == 0:
        raise InputError("'images' is an empty batch (0 frames).")
    if version not in ("v15", "v1"):
        raise InputError(f"Unknown MuseTalk version '{version}': use 'v15' or 'v1'.")
    if face_selection not in FACE_SELECTIONS:
        raise InputError(f"'face_selection' must be one of {', '.join(FACE_SELECTIONS)}; got '{face_selection}'.")
    if landmark_region not in LANDMARK_REGIONS:
        raise InputError(f"'landmark_region' must be one of {', '.join(LANDMARK_REGIONS)}; got '{landmark_region}'.")
    if not (0.0 < float(detector_scale) <= 1.0):
        raise InputError(f"'detector_scale' must be in (0, 1] (1 = full resolution, the reference); "
                         f"got {detector_scale}.")
    if int(batch_size) < 1:
        raise InputError(f"'batch_size' must be at least 1; got {batch_size}.")
    if int(extra_margin) < 0:
        raise InputError(f"'extra_margin' must be 0 or more pixels; got {extra_margin}.")
    if not isinstance(bbox_shift, (int, np.integer)):
        raise InputError(f"'bbox_shift' must be an integer number of pixels; got {bbox_shift!r}.")


def select_face(boxes: torch.Tensor, scores: torch.Tensor, mode: str) -> Optional[int]:
    """Index into the frame's detections (highest score first) of the face to use, or None if there is none."""
    n = int(boxes.shape[0])
    if n == 0:
        return None
    if mode == "highest_score" or n == 1:
        return 0
    b = boxes.double()
    if mode == "largest":
        area = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
        return int(torch.argmax(area))
    cx = (b[:, 0] + b[:, 2]) / 2
    return int(torch.argmin(cx)) if mode == "leftmost" else int(torch.argmax(cx))


def _region_box(det_box, width, height):
    x1, y1, x2, y2 = (float(v) for v in det_box)
    side = max(x2 - x1, y2 - y1, 1.0) * FACE_REGION_FACTOR
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    return (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)


def _landmarks(lm_net, frames_rgb: np.ndarray, boxes):
    """133 keypoints and scores from the torch DWPose or the mmpose backend object (same contract)."""
    if isinstance(lm_net, torch.nn.Module):
        from ..models.dwpose import predict_keypoints

        return predict_keypoints(lm_net, frames_rgb, boxes)
    return lm_net.predict_keypoints(frames_rgb, boxes)


def locate_faces(models, frames_u8: torch.Tensor, *, version: str = "v15", bbox_shift: int = 0,
                 extra_margin: int = 10, face_selection: str = "highest_score",
                 landmark_region: str = "full_frame", detector_scale: float = 1.0, batch_size: int = 8,
                 hooks: Optional[RunHooks] = None, given_boxes: Optional[Sequence[Optional[torch.Tensor]]] = None
                 ) -> FaceLocations:
    """Faces, landmarks and crop boxes for uint8 (N, H, W, 3) RGB frames (see the module docstring).

    Networks come from ``models`` ("s3fd", "landmarks"). hooks.step(n) is called after every batch of n frames.
    ``given_boxes``: per frame, the S3FD box of the face to use (a speaker's track, faces/tracks.py) or None for no
    face; S3FD is not run again, face_selection does not apply and the landmarks are found on that face's region.
    """
    from ..models.dwpose import FACE_SLICE

    hooks = hooks or NO_HOOKS
    _check(frames_u8, version, bbox_shift, extra_margin, face_selection, landmark_region, detector_scale,
           batch_size)
    n, h, w = (int(v) for v in frames_u8.shape[:3])
    margin = int(extra_margin) if version == "v15" else None
    batch = int(batch_size)
    s3fd_batch = max(1, min(batch, S3FD_PIXEL_BUDGET // max(1, int(h * w * detector_scale ** 2))))
    warn_large_frames(h, w, float(detector_scale))

    has_face = torch.zeros(n, dtype=torch.bool)
    boxes = torch.zeros(n, 4, dtype=torch.int64)
    landmarks = torch.full((n, 68, 2), -1, dtype=torch.int64)
    lm_scores = torch.full((n, 68), -1.0, dtype=torch.float32)
    det_boxes = torch.zeros(n, 4, dtype=torch.int64)
    fallback = torch.zeros(n, dtype=torch.bool)
    range_minus: List[int] = []
    range_plus: List[int] = []

    with models.use("s3fd", "landmarks") as (s3fd, lm_net):
        for start in range(0, n, batch):
            chunk = frames_u8[start:start + batch]
            if given_boxes is not None:
                chosen = [None if b is None else torch.as_tensor(b).cpu()
                          for b in given_boxes[start:start + int(chunk.shape[0])]]
            else:
                chosen = _detect_and_select(s3fd, chunk, s3fd_batch, float(detector_scale), face_selection)
            frames_np = chunk.cpu().numpy()
            regions = None
            # a tracked speaker's landmarks come from its own face: on the whole frame DWPose finds whichever person
            # it prefers, not necessarily this one
            if landmark_region == "face_region" or given_boxes is not None:
                regions = [None if c is None else _region_box(c.tolist(), w, h) for c in chosen]
            kps, scores = _landmarks(lm_net, frames_np, regions)
            for j, c in enumerate(chosen):
                i = start + j
                if c is None:
                    continue
                face_lm = kps[j][FACE_SLICE].astype(np.int32)
                det = tuple(int(v) for v in torch.clamp(c.float(), min=0).tolist())
                fb = landmark_box(face_lm, det, int(bbox_shift), margin, h)
                has_face[i] = True
                boxes[i] = torch.tensor(fb.box, dtype=torch.int64)
                landmarks[i] = torch.from_numpy(face_lm.astype(np.int64))
                lm_scores[i] = torch.from_numpy(np.asarray(scores[j][FACE_SLICE], dtype=np.float32))
                det_boxes[i] = torch.tensor(det, dtype=torch.int64)
                fallback[i] = fb.used_fallback
                range_minus.append(fb.range_minus)
                range_plus.append(fb.range_plus)
            hooks.step(int(chunk.shape[0]))

    settings = dict(version=version, bbox_shift=int(bbox_shift), extra_margin=int(extra_margin),
                    face_selection=face_selection, landmark_region=landmark_region,
                    detector_scale=float(detector_scale), landmark_backend=_backend_name(lm_net))
    return FaceLocations((h, w), has_face, boxes, landmarks, lm_scores, det_boxes, fallback, range_minus,
                         range_plus, int(bbox_shift), settings)


def _detect_and_select(s3fd, chunk: torch.Tensor, s3fd_batch: int, scale: float, face_selection: str) -> list:
    """Per frame the chosen S3FD box (CPU) or None."""
    from ..models.s3fd import detect

    dets = []
    for s in range(0, chunk.shape[0], s3fd_batch):
        dets.extend(detect(s3fd, chunk[s:s + s3fd_batch], scale=scale))
    chosen = []
    for d in dets:
        k = select_face(d.boxes, d.scores, face_selection)
        chosen.append(None if k is None else d.boxes[k].cpu())
    return chosen


def _backend_name(lm_net) -> str:
    return "torch" if isinstance(lm_net, torch.nn.Module) else "mmpose"
