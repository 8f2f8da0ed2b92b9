"""BlendAndAssemble's input checks: the settings, and the frames against the faces and the generated clip."""

from __future__ import annotations

import math

import torch

from ..errors import InputError
from ..io.frames import rgb_frames
from ..io.spill import SpilledArray
from ..types import MuseTalkFaces, MuseTalkGenerated


def check_blend_settings(blur_factor, upper_boundary_ratio, silence_fade_frames, chunk_size) -> None:
    if not (0.0 <= float(blur_factor) <= 1.0):
        raise InputError(f"'blur_factor' must be between 0 and 1 (0.05 = reference), got {blur_factor}.")
    if not (0.0 <= float(upper_boundary_ratio) <= 1.0):
        raise InputError(f"'upper_boundary_ratio' must be between 0 and 1 (0.5 = reference), got {upper_boundary_ratio}.")
    if int(silence_fade_frames) < 0:
        raise InputError(f"'silence_fade_frames' must be 0 or more, got {silence_fade_frames}.")
    if int(chunk_size) < 1:
        raise InputError(f"'chunk_size' must be at least 1, got {chunk_size}.")


def check_material(faces, generated, n, h, w, replacement_faces, blur_factor, upper_boundary_ratio,
                   silence_fade_frames, chunk_size, name: str = "images", kind: str = "IMAGE") -> None:
    """Checks shared by the IMAGE and the VIDEO path: the source (n frames of h x w) against faces/generated."""
    if not isinstance(faces, MuseTalkFaces):
        raise InputError(f"'faces' must be MUSETALK_FACES from FaceDetectAndParse, got {type(faces).__name__}.")
    if not isinstance(generated, MuseTalkGenerated):
        raise InputError("'generated' must be MUSETALK_GENERATED from MuseTalkUNetInpaint, "
                         f"got {type(generated).__name__}.")
    if n != faces.num_frames or (h, w) != tuple(int(v) for v in faces.frame_size):
        raise InputError(
            f"'{name}' ({n} frames of {w}x{h}) are not the frames the faces were computed from "
            f"({faces.num_frames} frames of {faces.frame_size[1]}x{faces.frame_size[0]}): connect the same {kind} "
            "to FaceDetectAndParse and BlendAndAssemble.")
    check_blend_settings(blur_factor, upper_boundary_ratio, silence_fade_frames, chunk_size)
    if (faces.frames_fingerprint and generated.frames_fingerprint
            and faces.frames_fingerprint != generated.frames_fingerprint):
        raise InputError("'generated' was made from another video than 'faces' (frame fingerprints differ): connect "
                         "the MUSETALK_FACES that fed VAEEncodeMasked -> MuseTalkUNetInpaint for this generation.")
    t = generated.num_frames
    if t == 0:
        raise InputError("'generated' has 0 frames: the audio was shorter than one video frame.")
    gf, size = generated.faces, generated.face_size
    if not isinstance(gf, (torch.Tensor, SpilledArray)) or tuple(gf.shape) != (t, size, size, 3) \
            or gf.dtype != torch.uint8:
        raise InputError(f"'generated' faces must be uint8 ({t}, {size}, {size}, 3); got "
                         f"{tuple(getattr(gf, 'shape', ()))}. Use the generator node's output unchanged.")
    idx = generated.source_index
    if int(idx.min()) < 0 or int(idx.max()) >= n:
        raise InputError(f"'generated' refers to source frames {int(idx.min())}..{int(idx.max())}, but the video has "
                         f"{n} frames: it was generated from another video. Re-run MuseTalkUNetInpaint with these faces.")
    if replacement_faces is not None:
        if not isinstance(replacement_faces, torch.Tensor) or replacement_faces.ndim != 4:
            raise InputError("'replacement_faces' must be an IMAGE batch (frames, 256, 256, 3).")
        rgb_frames(replacement_faces, "replacement_faces")  # channels and value range, once
        rt, rh, rw = (int(v) for v in replacement_faces.shape[:3])
        if rt != t or (rh, rw) != (size, size):
            raise InputError(
                f"'replacement_faces' must hold {t} faces of {size}x{size} (one per generated frame, as the generator "
                f"node outputs them); got {rt} of {rw}x{rh}. Keep the batch size and resize back to {size}x{size} "
                "after face restoration.")


def check_fps(generated: MuseTalkGenerated) -> float:
    fps = float(generated.fps)
    if not (fps > 0 and math.isfinite(fps)):
        raise InputError(f"'generated' has an invalid fps ({fps}); re-run WhisperAudioEncode with fps > 0.")
    return fps
