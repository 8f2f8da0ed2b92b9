"""FaceDetectAndParse's core: everything the pipeline needs from the source frames, computed once per video.

prepare_faces = locate_faces (S3FD + DWPose + the reference's landmark box, musetalk_core.faces.locate)
              -> optional temporal smoothing of the boxes (off by default = the reference)
              -> per frame with a face: the 256x256 VAE crop (cv2 LANCZOS4 of frame[y1:y2, x1:x2], spec §4.1)
                 and the blend-mask material from BiSeNet parsing (musetalk_core.faces.parsing, spec §6-7)
              -> MuseTalkFaces, a preview (box, landmarks, mask over the frames) and the bbox_shift range report.

Frames are cropped and parsed in chunks of ``batch_size`` so a long video never holds more than one chunk of
512x512 parser inputs and label maps. Frames without a face are kept and marked; the frame count never changes.
"""

from __future__ import annotations

import logging
import math
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

from . import parsing
from ..errors import InputError
from ..io.frames import image_to_uint8
from ..hooks import RunHooks
from ..types import MuseTalkFaces, MuseTalkModels

log = logging.getLogger(__name__)

CROP_SIZE = 256
MAX_SMOOTHING_SIGMA = 5.0  # box_smoothing 1.0 = a Gaussian over time with sigma 5 frames


def _as_frames(images) -> torch.Tensor:
    if isinstance(images, (list, tuple)):
        shapes = {tuple(t.shape[-3:]) for t in images if isinstance(t, torch.Tensor)}
        if len(shapes) > 1:
            raise InputError(f"'images' holds frames of different sizes {sorted(shapes)[:4]}; a ComfyUI IMAGE batch "
                             "cannot, so something upstream is wrong. Resize all frames to one size first.")
        if not images or len(shapes) == 0:
            raise InputError("'images' is empty or not a list of IMAGE tensors.")
        images = torch.cat([t if t.ndim == 4 else t.unsqueeze(0) for t in images], 0)
    return image_to_uint8(images, "images")


def _check_settings(parsing_mode, left_cheek_width, right_cheek_width, box_smoothing, batch_size):
    if parsing_mode not in parsing.PARSING_MODES:
        raise InputError(f"'parsing_mode' must be one of {', '.join(parsing.PARSING_MODES)}; got '{parsing_mode}'.")
    for name, value in (("left_cheek_width", left_cheek_width), ("right_cheek_width", right_cheek_width)):
        if not isinstance(value, (int, np.integer)) or not 0 <= int(value) <= 256:
            raise InputError(f"'{name}' must be an integer from 0 to 256 (columns of the 512-px parsing map); "
                             f"got {value!r}.")
    if not isinstance(box_smoothing, (int, float)) or not 0.0 <= float(box_smoothing) <= 1.0 \
            or math.isnan(float(box_smoothing)):
        raise InputError(f"'box_smoothing' must be between 0 (off, the reference) and 1; got {box_smoothing!r}.")
    if not isinstance(batch_size, (int, np.integer)) or int(batch_size) < 1:
        raise InputError(f"'batch_size' must be an integer of at least 1; got {batch_size!r}.")


def true_runs(flags) -> List[Tuple[int, int]]:
    """(start, stop) of every run of consecutive True values, in order."""
    padded = np.concatenate(([False], np.asarray(flags, dtype=bool).reshape(-1), [False]))
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


def smooth_boxes(boxes: torch.Tensor, has_face: torch.Tensor, strength: float) -> torch.Tensor:
    """Temporal smoothing of crop boxes over each run of consecutive face frames (0 = unchanged).

    A Gaussian over time with sigma = 5 * strength frames, truncated at 3 sigma and renormalised at the ends of a
    run (no lag, no pull toward frames outside the run), then rounded to whole pixels. Runs are split by frames
    without a face, whose zero boxes never leak into their neighbours.
    """
    if strength <= 0:
        return boxes.clone()
    sigma = MAX_SMOOTHING_SIGMA * float(strength)
    radius = max(1, int(math.ceil(3 * sigma)))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    src = boxes.cpu().numpy().astype(np.float64)
    out = src.copy()
    for i, j in true_runs(has_face.cpu().numpy()):
        run = src[i:j]
        for k in range(j - i):
            lo, hi = max(0, k - radius), min(j - i, k + radius + 1)
            w = taps[lo - k + radius:hi - k + radius]
            out[i + k] = (w[:, None] * run[lo:hi]).sum(0) / w.sum()
    return torch.from_numpy(np.floor(out + 0.5).astype(np.int64))


def crop_face(frame: np.ndarray, box: Sequence[int]) -> Optional[np.ndarray]:
    """The reference's VAE crop: cv2.resize(frame[y1:y2, x1:x2], (256, 256), INTER_LANCZOS4).

    Numpy slicing clips a box that leaves the frame at x2/y2 (the crop is then smaller than the box and the resize
    stretches it, exactly as the reference). Returns None when nothing of the box is inside the frame.
    """
    import cv2

    x1, y1, x2, y2 = (int(v) for v in box)
    region = frame[y1:y2, x1:x2]
    if region.shape[0] == 0 or region.shape[1] == 0 or x1 < 0 or y1 < 0:
        return None
    return cv2.resize(np.ascontiguousarray(region), (CROP_SIZE, CROP_SIZE), interpolation=cv2.INTER_LANCZOS4)


def _line_width(h: int, w: int) -> int:
    return max(1, int(round(min(h, w) / 320)))


def draw_preview(frame: np.ndarray, box, crop_box, landmarks, mask) -> np.ndarray:
    """One preview frame: the blend mask (upper half cut at ratio 0.5, unblurred) tinted green, the expanded
    blend box in blue, the VAE crop box in red, its middle line (where the masked lower half starts: bbox_shift
    moves it) in yellow, and the 68 landmarks as white dots."""
    import cv2

    out = frame.copy()
    h, w = out.shape[:2]
    lw = _line_width(h, w)
    xs, ys, xe, ye = (int(v) for v in crop_box)
    if mask is not None and mask.size:
        m = mask.copy()
        m[: int(m.shape[0] * 0.5)] = 0
        fx0, fx1, fy0, fy1 = max(xs, 0), min(xe, w), max(ys, 0), min(ye, h)
        if fx1 > fx0 and fy1 > fy0:
            a = m[fy0 - ys:fy1 - ys, fx0 - xs:fx1 - xs, None].astype(np.float32) * (0.45 / 255.0)
            region = out[fy0:fy1, fx0:fx1].astype(np.float32)
            tint = np.array([0, 255, 0], np.float32)
            out[fy0:fy1, fx0:fx1] = np.clip(region * (1 - a) + tint * a + 0.5, 0, 255).astype(np.uint8)
    cv2.rectangle(out, (xs, ys), (xe - 1, ye - 1), (60, 120, 255), lw)
    x1, y1, x2, y2 = (int(v) for v in box)
    cv2.rectangle(out, (x1, y1), (x2 - 1, y2 - 1), (255, 40, 40), lw)
    mid = y1 + (y2 - y1) // 2
    cv2.line(out, (x1, mid), (x2 - 1, mid), (255, 230, 0), lw)
    for x, y in np.asarray(landmarks).reshape(-1, 2):
        if x >= 0 and y >= 0:
            cv2.circle(out, (int(x), int(y)), lw, (255, 255, 255), -1)
    return out


def no_face_warning(num_frames: int, detected: bool = False, detector_scale: float = 1.0) -> str:
    """The one message for a video without a usable face: what happens (the video passes through unchanged, with
    the new audio, which is normal for cutaways) and what to check. ``detected``: the detector found faces but
    none could be cropped."""
    if detected:
        why = ("faces were detected but every face box lay outside the frame or was too small to crop "
               "(check bbox_shift / extra_margin and the preview)")
    else:
        why = ("the face detector (S3FD) found none: faces that are very small, turned away (profile or back of "
               "the head), covered or very dark are not detected")
        if float(detector_scale) < 1.0:
            why += f"; detector_scale is {float(detector_scale):g}: set it to 1 so that small faces are seen"
        else:
            why += "; for small faces, upscale the frames before this node"
    what = "no usable face was found" if detected else "no face was found"
    return (f"FaceDetectAndParse: {what} in any of the {num_frames} frames, so the video is passed "
            f"through unchanged (every frame, with the new audio). Why: {why}.")


def prepare_faces(models: MuseTalkModels, images, *, bbox_shift: int = 0, extra_margin: int = 10,
                  parsing_mode: str = "auto", left_cheek_width: int = 90, right_cheek_width: int = 90,
                  face_selection: str = "highest_score", landmark_region: str = "full_frame",
                  box_smoothing: float = 0.0, detector_scale: float = 1.0, batch_size: int = 8,
                  hooks: Optional[RunHooks] = None) -> Tuple[MuseTalkFaces, torch.Tensor, str]:
    """Boxes, landmarks, 256x256 crops and blend masks for every frame of ``images`` (IMAGE or uint8 RGB).

    Returns (MuseTalkFaces, preview uint8 (N, H, W, 3) RGB on the CPU, the bbox_shift range report).
    Progress: ``hooks.step`` is called 2N times in all (N for face location, N for cropping and parsing).
    The in-memory client of face_material.build_faces: the whole batch is one chunk, material stays in memory.
    """
    from .material import PreviewArray, build_faces
    from ..io.sources import TensorSource

    if not isinstance(models, MuseTalkModels):
        raise InputError("'musetalk_models' must come from LoadMuseTalkModels (MUSETALK_MODELS).")
    _check_settings(parsing_mode, left_cheek_width, right_cheek_width, box_smoothing, batch_size)
    frames = _as_frames(images).cpu()
    n = int(frames.shape[0])
    previews = PreviewArray(n, int(frames.shape[1]), int(frames.shape[2]))
    faces, _, text = build_faces(
        models, TensorSource(frames), bbox_shift=bbox_shift, extra_margin=extra_margin, parsing_mode=parsing_mode,
        left_cheek_width=left_cheek_width, right_cheek_width=right_cheek_width, face_selection=face_selection,
        landmark_region=landmark_region, box_smoothing=box_smoothing, detector_scale=detector_scale,
        batch_size=batch_size, chunk_frames=n + int(batch_size), preview_indices=previews, hooks=hooks)
    return faces, torch.from_numpy(previews.array), text
