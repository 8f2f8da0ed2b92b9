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
from typing import Optional, Tuple

import torch

from .checks import check_face_settings
from ..errors import InputError
from ..io.frames import image_to_uint8
from ..hooks import RunHooks
from ..types import MuseTalkFaces, MuseTalkModels

log = logging.getLogger(__name__)


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
    check_face_settings(parsing_mode, left_cheek_width, right_cheek_width, box_smoothing, batch_size)
    frames = _as_frames(images).cpu()
    n = int(frames.shape[0])
    previews = PreviewArray(n, int(frames.shape[1]), int(frames.shape[2]))
    faces, _, text = build_faces(
        models, TensorSource(frames), bbox_shift=bbox_shift, extra_margin=extra_margin, parsing_mode=parsing_mode,
        left_cheek_width=left_cheek_width, right_cheek_width=right_cheek_width, face_selection=face_selection,
        landmark_region=landmark_region, box_smoothing=box_smoothing, detector_scale=detector_scale,
        batch_size=batch_size, chunk_frames=n + int(batch_size), preview_indices=previews, hooks=hooks)
    return faces, torch.from_numpy(previews.array), text
