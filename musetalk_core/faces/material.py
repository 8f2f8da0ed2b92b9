"""FaceDetectAndParse's core over a frame source, chunk by chunk (the in-memory prepare_faces is one client).

Frames are read from a ``FrameSource`` in chunks of a whole number of detection batches, so every network sees
exactly the batches it would see on the whole video (chunked output = in-memory output, bit for bit). What
outlives a chunk is small (boxes, landmarks: a few hundred bytes per frame) or goes to a store: the 256x256 crops
and the blend masks stay in memory for short clips (tensors, as before) and go to a ``SpillFolder`` for videos.

Box smoothing looks up to 3 sigma (15 frames) ahead, so with smoothing on the boxes of all frames are found first
and the frames are read a second time to crop and parse. ``wanted`` limits the work to the source frames the
output uses (short audio on a long video): those frames, plus the smoothing radius around them, are located.
"""

from __future__ import annotations

import logging
import math
from contextlib import closing, contextmanager
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from . import parsing
from .boxes import bbox_range_text
from .checks import check_face_settings
from .crop import CROP_SIZE, box_region, crop_face
from .preview import draw_preview, no_face_warning
from .smoothing import MAX_SMOOTHING_SIGMA, smooth_boxes
from ..hooks import NO_HOOKS, RunHooks
from ..io.previews import Downscaled
from ..io.sources import FrameSource
from ..io.spill import SpilledArray, SpilledMasks, SpillFolder
from ..types import MuseTalkFaces, MuseTalkModels

log = logging.getLogger(__name__)

DEFAULT_CHUNK = 64  # source frames per read (rounded to whole detection batches)
# ... and at most this many pixels per read (uint8: 177 MB; 28 frames of 1080p, 7 of 4K), at least one batch;
# the next read is decoded ahead on a thread, so two reads are in memory at a time
CHUNK_PIXELS = DEFAULT_CHUNK * 720 * 1280


def smoothing_radius(box_smoothing: float) -> int:
    """How many frames on each side the box smoothing of one frame reads (0 when off)."""
    if box_smoothing <= 0:
        return 0
    return max(1, int(math.ceil(3 * MAX_SMOOTHING_SIGMA * float(box_smoothing))))


def dilate_frames(mask: np.ndarray, radius: int) -> np.ndarray:
    """The frames within ``radius`` of a selected one (same length as ``mask``, also for videos shorter than the
    window: numpy's convolve 'same' would return the window's length there)."""
    mask = np.asarray(mask, dtype=bool)
    if radius <= 0 or mask.all():
        return mask.copy()
    padded = np.concatenate([np.zeros(radius, np.int64), mask.astype(np.int64), np.zeros(radius, np.int64)])
    return np.convolve(padded, np.ones(2 * radius + 1, np.int64), mode="valid") > 0


def _groups(indices: np.ndarray, chunk: int) -> List[List[int]]:
    """``indices`` (sorted) split at multiples of ``chunk``: the frames of one chunk window per group."""
    out: Dict[int, List[int]] = {}
    for i in indices.tolist():
        out.setdefault(i // chunk, []).append(i)
    return [out[k] for k in sorted(out)]


class _Material:
    """Per-frame results of the pass (small ones as arrays, crops and masks in memory or spilled)."""

    def __init__(self, n: int, spill: Optional[SpillFolder], crops: bool = True):
        self.n = n
        self.on_disk = spill is not None
        self.has_face = torch.zeros(n, dtype=torch.bool)
        self.boxes = torch.zeros((n, 4), dtype=torch.int64)
        self.landmarks = torch.full((n, 68, 2), -1, dtype=torch.int64)
        self.crop_boxes = torch.zeros((n, 4), dtype=torch.int64)
        self.range_minus: List[int] = []
        self.range_plus: List[int] = []
        self.unusable: List[int] = []
        self.settings: dict = {}
        self.found_any = False
        if not crops:  # a generator that needs no crops (LatentSync): none are made or stored
            self.crops = torch.zeros((0, CROP_SIZE, CROP_SIZE, 3), dtype=torch.uint8)
            self.masks = [None] * n
        elif spill is None:
            self.crops = torch.zeros((n, CROP_SIZE, CROP_SIZE, 3), dtype=torch.uint8)
            self.masks: object = [None] * n
        else:
            self.crops = SpilledArray(spill, "crops.u8", (n, CROP_SIZE, CROP_SIZE, 3))
            self.masks = SpilledMasks(spill, "masks.u8", n)

    def add_locations(self, indices: Sequence[int], loc) -> None:
        idx = torch.tensor(list(indices), dtype=torch.long)
        self.has_face[idx] = loc.has_face.cpu().bool()
        self.boxes[idx] = loc.boxes.cpu()
        self.landmarks[idx] = loc.landmarks.cpu().to(torch.int64)
        self.range_minus.extend(loc.range_minus)
        self.range_plus.extend(loc.range_plus)
        self.settings = dict(loc.settings)
        self.found_any = self.found_any or bool(loc.has_face.any())


def _crop_and_parse(parser, models, frames: np.ndarray, indices: Sequence[int], mat: _Material, mode: str,
                    left: int, right: int) -> None:
    """The reference's 256x256 crop and the parsing mask of each frame with a face in one parser batch."""
    from ..cpu_pool import map_frames

    idx, face_frames, face_boxes = [], [], []
    located = [k for k, i in enumerate(indices) if mat.has_face[i]]
    crops = map_frames(lambda k: crop_face(frames[k], mat.boxes[indices[k]].tolist()), located)
    for k, crop in zip(located, crops):
        i = indices[k]
        box = mat.boxes[i].tolist()
        if crop is None or parsing.crop_box(box)[1] < 1:
            mat.unusable.append(i)
            mat.has_face[i] = False
            continue
        mat.crops[i] = torch.from_numpy(crop)
        idx.append(i)
        face_frames.append(frames[k])
        face_boxes.append(box)
    if idx:
        cboxes, cmasks = parsing.face_masks(parser, face_frames, face_boxes, mode, left, right, device=models.device)
        for i, cbox, mask in zip(idx, cboxes, cmasks):
            mat.crop_boxes[i] = torch.tensor(cbox, dtype=torch.int64)
            mat.masks[i] = mask


def _mark_unusable(frames: np.ndarray, indices: Sequence[int], mat: _Material) -> None:
    """The frames _crop_and_parse would find no usable crop in, found without cropping or parsing."""
    for k, i in enumerate(indices):
        box = mat.boxes[i].tolist()
        if mat.has_face[i] and (box_region(frames[k], box) is None or parsing.crop_box(box)[1] < 1):
            mat.unusable.append(i)
            mat.has_face[i] = False


class PreviewArray:
    """Preview frames written straight into one preallocated uint8 (N, H, W, 3) array: what the IMAGE path outputs,
    without a dict of N separate frames that would then be stacked (two more copies of the whole video)."""

    def __init__(self, n: int, h: int, w: int):
        self.array = np.empty((n, h, w, 3), dtype=np.uint8)
        self.done = np.zeros(n, dtype=bool)

    def __contains__(self, i) -> bool:
        return 0 <= int(i) < len(self.done)

    def __setitem__(self, i: int, frame: np.ndarray) -> None:
        self.array[i] = frame
        self.done[i] = True

    def items(self):
        return ((i, self.array[i] if self.done[i] else None) for i in range(len(self.done)))


def _preview(frames: np.ndarray, indices: Sequence[int], mat: _Material, want):
    from ..cpu_pool import map_frames

    def draw(k: int, i: int) -> np.ndarray:
        if not mat.has_face[i]:
            return frames[k].copy()
        mask = mat.masks[i]
        mask = mask.numpy() if isinstance(mask, torch.Tensor) else mask
        return draw_preview(frames[k], mat.boxes[i].tolist(), mat.crop_boxes[i].tolist(),
                            mat.landmarks[i].numpy(), mask)

    shown = [(k, i) for k, i in enumerate(indices) if i in want]
    for (k, i), frame in zip(shown, map_frames(draw, [k for k, _ in shown], [i for _, i in shown])):
        want[i] = frame


def build_faces(models: MuseTalkModels, source: FrameSource, *, bbox_shift: int = 0, extra_margin: int = 10,
                parsing_mode: str = "auto", left_cheek_width: int = 90, right_cheek_width: int = 90,
                face_selection: str = "highest_score", landmark_region: str = "full_frame",
                box_smoothing: float = 0.0, detector_scale: float = 1.0, batch_size: int = 8,
                wanted: Optional[np.ndarray] = None, chunk_frames: Optional[int] = None,
                spill: Optional[SpillFolder] = None, preview_indices: Union[Sequence[int], PreviewArray] = (),
                hooks: Optional[RunHooks] = None, crops: bool = True,
                track_boxes: Optional[torch.Tensor] = None) -> Tuple[MuseTalkFaces, Dict[int, np.ndarray], str]:
    """MuseTalkFaces for every frame of ``source`` (see the module docstring).

    Returns (faces, {frame index: uint8 preview frame, downscaled as previews.strip shows it} for
    ``preview_indices``, the bbox_shift range report); a PreviewArray as ``preview_indices`` receives every frame's
    full-size preview instead (and is what is returned).
    Frames outside ``wanted`` are marked as having no face. hooks.step: once per located frame and once per
    cropped/parsed frame. ``crops`` False (a generator that needs only boxes and landmarks): no 256-px crop, no
    parsing mask, the face parser is not used; frames whose box could not be cropped still count as face-less.
    ``track_boxes``: float (N, 4), one speaker's S3FD box per frame (NaN: not in that frame) from faces.tracks;
    its face is used instead of face_selection's pick, and S3FD is not run again.
    """
    from .locate import locate_faces

    if not isinstance(models, MuseTalkModels):
        from ..errors import InputError

        raise InputError("'musetalk_models' must come from LoadMuseTalkModels (MUSETALK_MODELS).")
    hooks = hooks or NO_HOOKS
    check_face_settings(parsing_mode, left_cheek_width, right_cheek_width, box_smoothing, batch_size)
    n = int(source.num_frames)
    h, w = (int(v) for v in source.frame_size)
    mode = parsing.resolve_mode(parsing_mode, models.version)
    batch = int(batch_size)
    chunk = max(batch, min(int(chunk_frames or DEFAULT_CHUNK), CHUNK_PIXELS // max(1, h * w)) // batch * batch)
    wanted = np.ones(n, dtype=bool) if wanted is None else np.asarray(wanted, dtype=bool)
    radius = smoothing_radius(float(box_smoothing))
    located = dilate_frames(wanted, radius)
    mat = _Material(n, spill, crops)
    previews = (preview_indices if isinstance(preview_indices, PreviewArray)
                else Downscaled.fromkeys(int(i) for i in preview_indices))
    left, right = int(left_cheek_width), int(right_cheek_width)
    fingerprint = source.fingerprint()

    def locate(indices, frames_u8):
        loc = locate_faces(models, frames_u8, version=models.version, bbox_shift=bbox_shift,
                           extra_margin=extra_margin, face_selection=face_selection,
                           landmark_region=landmark_region, detector_scale=detector_scale, batch_size=batch,
                           hooks=hooks, given_boxes=_given(track_boxes, indices))
        mat.add_locations(indices, loc)

    def crop_parse(parser, indices, frames_u8):
        frames = frames_u8.numpy()
        if crops:
            for s in range(0, len(indices), batch):  # the parser batches of the in-memory pass
                _crop_and_parse(parser, models, frames[s:s + batch], indices[s:s + batch], mat, mode, left, right)
                hooks.step(len(indices[s:s + batch]))
        else:  # no crop, no parsing: only which boxes could have been cropped
            _mark_unusable(frames, indices, mat)
        _preview(frames, indices, mat, previews)

    parser_in = models.use if crops else _no_parser
    if radius == 0:  # one pass: locate, crop and parse each chunk while it is in memory
        for indices, frames_u8 in _read_ahead(source, located, chunk):
            locate(indices, frames_u8)
            with parser_in("face_parser") as (parser,):
                crop_parse(parser, indices, frames_u8)
            del frames_u8
    else:  # smoothing reads ahead: boxes of all frames first, then a second read to crop and parse
        for indices, frames_u8 in _read_ahead(source, located, chunk):
            locate(indices, frames_u8)
            del frames_u8
        mat.boxes = smooth_boxes(mat.boxes, mat.has_face, float(box_smoothing))
        if not wanted.all():  # located only for the smoothing of a neighbour: not part of the result
            drop = torch.from_numpy(~wanted)
            mat.has_face &= ~drop
            mat.boxes[drop] = 0
            mat.landmarks[drop] = -1
        with parser_in("face_parser") as (parser,):
            for indices, frames_u8 in _read_ahead(source, wanted, chunk):
                crop_parse(parser, indices, frames_u8)
                del frames_u8
    missing = [i for i, v in previews.items() if v is None]
    if missing:  # preview frames the output does not use: shown as they are
        for i, frame in zip(missing, source.read(missing).numpy()):
            previews[i] = frame
    text = bbox_range_text(n, mat.range_minus, mat.range_plus, int(bbox_shift))
    settings = dict(version=models.version, bbox_shift=int(bbox_shift), extra_margin=int(extra_margin),
                    parsing_mode=mode, parsing_mode_requested=parsing_mode, left_cheek_width=left,
                    right_cheek_width=right, expand=parsing.EXPAND, box_smoothing=float(box_smoothing),
                    face_selection=face_selection, landmark_region=landmark_region,
                    detector_scale=float(detector_scale), crops=bool(crops))
    faces = _finish(mat, (h, w), fingerprint, text, settings)
    return faces, previews, text


def _given(track_boxes: Optional[torch.Tensor], indices: Sequence[int]):
    """Per frame of a chunk, the speaker's box or None; None altogether without a speaker track."""
    if track_boxes is None:
        return None
    return [None if bool(torch.isnan(track_boxes[i]).any()) else track_boxes[i] for i in indices]


@contextmanager
def _no_parser(_name):
    yield (None,)


def _read_ahead(source: FrameSource, selected: np.ndarray, chunk: int):
    """(indices, uint8 frames) of the selected frames, ``chunk`` at a time; the next chunk decodes on a thread
    while the caller runs the networks on this one. Callers drop their chunk (``del``) before asking for the next,
    so two chunks are alive at most, not three."""
    from ..io.sources import prefetched

    groups = list(_groups(np.flatnonzero(selected), chunk))
    with closing(prefetched(source, groups)) as reads:
        yield from zip(groups, reads)


def _finish(mat: _Material, frame_size, fingerprint, text, settings: dict) -> MuseTalkFaces:
    """MuseTalkFaces from the pass's material; ``settings``: the faces stage's settings as used."""
    masks = mat.masks
    if isinstance(masks, list):  # numpy -> tensors outside inference mode, so later stages may edit copies
        masks = tuple(None if m is None else torch.from_numpy(m) for m in masks)
    if mat.unusable:
        log.warning("FaceDetectAndParse: %d frame(s) had a face box outside the frame or too small to crop "
                    "(first: frame %d); they are treated as frames without a face.", len(mat.unusable),
                    mat.unusable[0])
        mat.boxes[torch.tensor(mat.unusable)] = 0
    if not bool(mat.has_face.any()):
        log.warning("%s", no_face_warning(mat.n, detected=mat.found_any,
                                          detector_scale=settings["detector_scale"]))
    return MuseTalkFaces(frame_size=tuple(frame_size), has_face=mat.has_face, boxes=mat.boxes,
                         landmarks=mat.landmarks, crop_boxes=mat.crop_boxes, masks=masks, crops=mat.crops,
                         bbox_range=text, settings={**mat.settings, **settings}, frames_fingerprint=fingerprint,
                         on_disk=mat.on_disk)
