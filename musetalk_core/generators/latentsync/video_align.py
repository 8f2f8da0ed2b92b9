"""The per-video alignment driver: every source frame with a face -> its aligned res x res crop and its matrix.

As upstream's affine_transform_video: frames are aligned once each, in source-frame order, with the "smooth"
translation bias carried from one frame to the next (align.SmoothState); each (100 r x 75 r) crop is resized to
res x res with cv2 LANCZOS4 (non-uniform, as upstream). Output frames that revisit a source frame (ping-pong) reuse its
crop and matrix, exactly as upstream's loop_video reuses (reverses) the aligned lists.

Only the frames a result depends on are read: a frame the output uses, and the frames before it in its run of face
frames (the smoothing carries from each to the next). A short audio on a long video reads the start of the video
only; the aligned crops of the frames it uses are those of aligning every frame.

Frames without a face: upstream raises "Face not detected". Here they are marked (has_face False, zero crop and
matrix) and passed through later. The smoothing state restarts after such a gap: it is a 1-frame memory meant for
the same face moving, and after a cut-away the next face need not be where the last one was.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence

import numpy as np
import torch

from ...faces.smoothing import true_runs
from ...hooks import NO_HOOKS, RunHooks
from . import align

PointsFn = Callable[[int, np.ndarray], Optional[np.ndarray]]


@dataclass(frozen=True, eq=False)
class AlignedVideo:
    """crops: uint8 (N, res, res, 3) RGB (zeros where no face); matrices: float32 (N, 2, 3) frame -> crop pixels
    (zeros where no face); has_face: bool (N,); backend: where the three points came from."""

    crops: "torch.Tensor | object"
    matrices: torch.Tensor
    has_face: torch.Tensor
    resolution: int
    backend: str = "dwpose"

    @property
    def num_frames(self) -> int:
        return int(self.has_face.shape[0])


def frames_to_align(num_frames: int, wanted=None, has_face=None) -> List[int]:
    """The source frames whose alignment a result depends on, in order.

    ``wanted`` (bool per frame, None = all): the frames the output uses. ``has_face`` (None = not known before
    aligning, as with InsightFace): frames known to have no face, which reset the smoothing. A wanted frame needs
    every frame before it back to the last known gap; nothing after the last wanted frame is needed."""
    wanted = np.ones(num_frames, bool) if wanted is None else np.asarray(wanted, bool).reshape(-1)
    faced = np.ones(num_frames, bool) if has_face is None else np.asarray(has_face, bool).reshape(-1)
    todo = []
    for start, stop in true_runs(faced):
        used = np.flatnonzero(wanted[start:stop])
        if used.size:
            todo.extend(range(start, start + int(used[-1]) + 1))
    return todo


def align_frames(read: Callable[[Sequence[int]], np.ndarray], num_frames: int, points_of: PointsFn,
                 resolution: int, *, chunk: int = 16, hooks: RunHooks = NO_HOOKS,
                 backend: str = "dwpose", store=None, frames: Optional[Sequence[int]] = None) -> AlignedVideo:
    """Align the frames read in chunks by ``read(indices)`` (uint8 (n, H, W, 3) RGB) of a ``num_frames`` video.

    ``points_of(i, frame)`` gives the three points of frame i, or None when it has no usable face. ``frames``:
    the frames to align, in order (frames_to_align; default all); the others are left without a face. ``store(shape,
    dtype)`` (optional) makes the crops array (a SpilledArray for long videos; rows never written read as zeros)."""
    import cv2

    res = int(resolution)
    shape = (num_frames, res, res, 3)
    crops = store(shape, torch.uint8) if store is not None else torch.zeros(shape, dtype=torch.uint8)
    matrices = torch.zeros((num_frames, 2, 3), dtype=torch.float32)
    has_face = torch.zeros(num_frames, dtype=torch.bool)
    todo = list(range(num_frames)) if frames is None else [int(i) for i in frames]
    state, previous = align.SmoothState(), None
    for start in range(0, len(todo), chunk):
        indices = todo[start:start + chunk]
        images = np.asarray(read(indices))
        for i, frame in zip(indices, images):
            points = points_of(i, frame)
            if points is None or (previous is not None and i != previous + 1):
                state = align.SmoothState()  # a gap: the next face starts a fresh smoothing
            previous = None if points is None else i
            if points is None:
                continue
            crop, matrix = align.align_face(frame, points, res, state)
            crops[i] = torch.from_numpy(cv2.resize(crop, (res, res), interpolation=cv2.INTER_LANCZOS4))
            matrices[i] = matrix
            has_face[i] = True
        hooks.step(len(indices))
    return AlignedVideo(crops, matrices, has_face, res, backend)


def align_video(source, faces, resolution: int, backend: str = "dwpose", *, insightface_root=None,
                device: str = "cpu", hooks: RunHooks = NO_HOOKS, store=None,
                frames: Optional[Sequence[int]] = None) -> AlignedVideo:
    """Align a frame source (sources.FrameSource) with the three points of ``backend``.

    ``frames``: the frames to read and align (``frames_to_align``; default all).
    dwpose: from MUSETALK_FACES' landmarks (FaceDetectAndParse's DWPose keypoints; its has_face decides the gaps).
    insightface: upstream's detector on every frame (optional package; ``insightface_root`` holds models/buffalo_l).
    """
    from ...errors import InputError
    from .landmarks import InsightFaceLandmarks, check_backend, dwpose_points
    from .align import insightface_points

    check_backend(backend)
    n = source.num_frames
    if faces is not None and faces.num_frames != n:
        raise InputError(f"'{source.name}' has {n} frames but the faces were computed from {faces.num_frames}: "
                         "connect the same frames to FaceDetectAndParse and LatentSyncInpaint.")
    if backend == "dwpose":
        landmarks, has_face = faces.landmarks.numpy(), faces.has_face.numpy()

        def points_of(i, _frame):
            return dwpose_points(landmarks[i]) if has_face[i] else None
    else:
        detector = InsightFaceLandmarks(insightface_root, device)

        def points_of(_i, frame):
            lmk = detector(frame)
            return None if lmk is None else insightface_points(lmk)

    return align_frames(lambda idx: source.read(idx).numpy(), n, points_of, resolution, hooks=hooks,
                        backend=backend, store=store, frames=frames)


def alignment_plan(faces, num_frames: int, backend: str, wanted) -> List[int]:
    """frames_to_align for ``backend``: DWPose knows the face frames from ``faces``; InsightFace finds out."""
    has_face = faces.has_face.numpy() if backend == "dwpose" and faces is not None else None
    return frames_to_align(num_frames, wanted, has_face)
