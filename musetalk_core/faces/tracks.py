"""Face tracks: which S3FD box in which frame belongs to the same person, for videos with several speakers.

``link_tracks`` walks the examined frames in order and, per frame:

1. matches the detections to the tracks seen in the previous examined frame by IoU between each track's
   *predicted* box (its last box moved by its recent velocity) and the detection, highest IoU first, at least
   ``min_iou``. Predicting with the velocity is what keeps two faces passing each other apart: each predicted box
   lies on its own face's path, so the higher overlap is with the right face even where the two boxes overlap;
2. re-links the detections left over to tracks not found for a while (a cut-away, an occlusion, a face that left
   the frame and came back, a missed detection), at most ``max_gap`` examined frames ago, by position and size: the
   track's last box centre moved by its velocity (for at most PREDICT_CAP frames, kept inside the frame) must lie
   within RELINK_BASE + RELINK_GROWTH per frame of gap (at most RELINK_MAX) box widths of the detection, and the
   box sizes must differ by less than MAX_SIZE_RATIO; the closest pairs are linked first;
3. starts a new track for each detection still left.

Frames given as None were not examined: no track is found or missed there, the tracks continue across them (they
do not count toward ``max_gap``). Tracks present in fewer than MIN_TRACK_FRAMES frames are dropped when a longer
track exists (a spurious detection of one or two frames); if every track is that short, all are kept. Tracks are
numbered left to right by box centre x in the frame where each first appears (ties: the earlier track first).

Limits (no appearance model, only geometry and motion):
- two faces of similar size that both disappear (both hidden, a cut-away) and reappear in each other's places are
  swapped; so are faces that cross while one is hidden for longer than the velocity is extrapolated
  (PREDICT_CAP frames) or that change direction while hidden;
- a face that leaves the frame and comes back far from where it left (the other side), or after more than
  ``max_gap`` examined frames, becomes a new track; a different person entering where one left (same size,
  within the gap) continues that person's track;
- after a camera cut where the people moved, tracks follow the position, not the person;
- a face whose detection flickers (absent every other frame) is held together only by step 2's position test;
- a face moving more than about 0.8 box widths per frame (a whip pan) while its velocity is unknown (just
  appeared or re-linked) starts a new track.
Measured on benchmarks.synthetic.make_multi_clip (2 and 3 heads, cross + cutaway + leave, 100-300 frames, box
jitter 2-5% of the width, 20 seeds each): every detection on its head's track, one track per head.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..errors import InputError
from ..hooks import NO_HOOKS, RunHooks

MIN_TRACK_FRAMES = 3
VELOCITY_FRAMES = 5  # the velocity is taken over a track's last detections, at most this many ...
VELOCITY_SPAN = 12  # ... within this many frames of its latest one
PREDICT_CAP = 10  # frames a velocity is extrapolated at most
RELINK_BASE, RELINK_GROWTH, RELINK_MAX = 0.8, 0.04, 2.0  # re-link distance in box widths: base + growth x gap
MAX_SIZE_RATIO = 1.6


@dataclass(frozen=True, eq=False)
class FaceTracks:
    """K face tracks over N frames.

    - frame_size: (H, W) of the frames;
    - boxes: float32 (K, N, 4) x1, y1, x2, y2: the S3FD box of track k in frame i as detected; NaN where absent;
    - scores: float32 (K, N) that box's S3FD score; 0 where absent.
    """

    frame_size: Tuple[int, int]
    boxes: torch.Tensor
    scores: torch.Tensor

    @property
    def num_tracks(self) -> int:
        return int(self.boxes.shape[0])

    @property
    def num_frames(self) -> int:
        return int(self.boxes.shape[1])

    def present(self, k: int) -> torch.Tensor:
        """bool (N,): frames where track k has a box."""
        return ~torch.isnan(self.boxes[k, :, 0])

    def box(self, k: int, i: int) -> Optional[torch.Tensor]:
        """Track k's box (4,) float32 in frame i, or None where it is absent."""
        b = self.boxes[k, i]
        return None if bool(torch.isnan(b[0])) else b.clone()

    def track_at(self, x: float, y: float, frame: int) -> Optional[int]:
        """The track whose box in ``frame`` contains the point (x, y) (several: the smallest box); None if none."""
        b = self.boxes[:, frame].double()
        inside = (b[:, 0] <= x) & (x <= b[:, 2]) & (b[:, 1] <= y) & (y <= b[:, 3])  # False where NaN
        if not bool(inside.any()):
            return None
        area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        area[~inside] = math.inf
        return int(torch.argmin(area))

    def summary(self) -> str:
        """One line per track: index, first-last frame, frames present, mean box centre."""
        if self.num_tracks == 0:
            return f"no face tracks in {self.num_frames} frames"
        lines = []
        for k in range(self.num_tracks):
            idx = torch.nonzero(self.present(k)).flatten()
            b = self.boxes[k, idx].double()
            cx = float(((b[:, 0] + b[:, 2]) / 2).mean())
            cy = float(((b[:, 1] + b[:, 3]) / 2).mean())
            lines.append(f"track {k}: frames {int(idx[0])}-{int(idx[-1])}, present in {idx.numel()}, "
                         f"mean centre ({cx:.0f}, {cy:.0f})")
        return "\n".join(lines)


class _Track:
    """One track while linking: its detections so far and its recent velocity (pixels per frame)."""

    def __init__(self, frame: int, box: np.ndarray, score: float):
        self.frames: List[int] = []
        self.boxes: List[np.ndarray] = []
        self.scores: List[float] = []
        self.missed = 0  # examined frames since its last detection
        self.velocity = np.zeros(2)
        self.add(frame, box, score)

    def add(self, frame: int, box: np.ndarray, score: float) -> None:
        self.frames.append(frame)
        self.boxes.append(box)
        self.scores.append(score)
        self.missed = 0
        recent = [k for k in range(max(0, len(self.frames) - VELOCITY_FRAMES), len(self.frames))
                  if self.frames[k] >= frame - VELOCITY_SPAN]
        first = recent[0]
        span = frame - self.frames[first]
        self.velocity = (_centre(box) - _centre(self.boxes[first])) / span if span > 0 else np.zeros(2)

    def predicted(self, frame: int, frame_size) -> np.ndarray:
        """The last box moved by the velocity for (frame - last frame) frames, at most PREDICT_CAP; centre kept
        inside the frame (a face that walked out comes back at the edge, not where it would have walked to)."""
        box = self.boxes[-1]
        dt = min(frame - self.frames[-1], PREDICT_CAP)
        c = _centre(box) + self.velocity * dt
        h, w = frame_size
        c = np.clip(c, 0, (w, h))
        half = (box[2:] - box[:2]) / 2
        return np.concatenate([c - half, c + half])


def _centre(box: np.ndarray) -> np.ndarray:
    return (box[:2] + box[2:]) / 2


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    return float(inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter))


def _relink_cost(track: _Track, frame: int, box: np.ndarray, frame_size) -> Optional[float]:
    """How far ``box`` is from where ``track`` would be (0 = there; None = too far or too different in size)."""
    last = track.boxes[-1]
    width = max(float(last[2] - last[0]), 1.0)
    sizes = np.maximum(np.concatenate([last[2:] - last[:2], box[2:] - box[:2]]), 1e-3)
    ratio = max(sizes[0] / sizes[2], sizes[2] / sizes[0], sizes[1] / sizes[3], sizes[3] / sizes[1])
    dt = frame - track.frames[-1]
    allowed = min(RELINK_MAX, RELINK_BASE + RELINK_GROWTH * dt)
    dist = float(np.hypot(*(_centre(track.predicted(frame, frame_size)) - _centre(box)))) / width
    if dist > allowed or ratio > MAX_SIZE_RATIO:
        return None
    return dist / allowed + math.log(ratio) / math.log(MAX_SIZE_RATIO)


def _greedy(pairs) -> List[Tuple[int, int]]:
    """(key, track, detection) sorted by key (ties: track, then detection order) -> one-to-one pairs."""
    used_t, used_d, out = set(), set(), []
    for _, t, d in sorted(pairs, key=lambda p: (p[0], p[1], p[2])):
        if t not in used_t and d not in used_d:
            used_t.add(t)
            used_d.add(d)
            out.append((t, d))
    return out


def link_tracks(detections: Sequence, frame_size, *, min_iou: float = 0.3, max_gap: int = 50) -> FaceTracks:
    """Face tracks from per-frame detections (see the module docstring). ``detections[i]``: None (frame not
    examined) or an object with ``boxes`` float (m, 4) and ``scores`` (m,), as s3fd.Detections."""
    frame_size = (int(frame_size[0]), int(frame_size[1]))
    tracks: List[_Track] = []
    open_ids: List[int] = []
    previous = None  # the last examined frame
    for i, det in enumerate(detections):
        if det is None:
            continue
        boxes = torch.as_tensor(det.boxes).detach().cpu().double().numpy().reshape(-1, 4)
        scores = torch.as_tensor(det.scores).detach().cpu().double().numpy().reshape(-1)
        recent = [t for t in open_ids if tracks[t].frames[-1] == previous]
        pairs = []
        for t in recent:
            pred = tracks[t].predicted(i, frame_size)
            for d in range(len(boxes)):
                iou = _iou(pred, boxes[d])
                if iou >= min_iou:
                    pairs.append((-iou, t, d))
        matched = _greedy(pairs)
        taken_t = {t for t, _ in matched}
        taken_d = {d for _, d in matched}
        pairs = []
        for t in open_ids:
            if t in taken_t:
                continue
            for d in range(len(boxes)):
                cost = None if d in taken_d else _relink_cost(tracks[t], i, boxes[d], frame_size)
                if cost is not None:
                    pairs.append((cost, t, d))
        matched += _greedy(pairs)
        for t, d in matched:
            tracks[t].add(i, boxes[d], float(scores[d]))
        taken_t = {t for t, _ in matched}
        taken_d = {d for _, d in matched}
        for t in open_ids:
            if t not in taken_t:
                tracks[t].missed += 1
        open_ids = [t for t in open_ids if tracks[t].missed <= max_gap]
        for d in range(len(boxes)):
            if d not in taken_d:
                open_ids.append(len(tracks))
                tracks.append(_Track(i, boxes[d], float(scores[d])))
        previous = i
    return _as_face_tracks(tracks, len(detections), frame_size)


def _as_face_tracks(tracks: List[_Track], n: int, frame_size) -> FaceTracks:
    if any(len(t.frames) >= MIN_TRACK_FRAMES for t in tracks):
        tracks = [t for t in tracks if len(t.frames) >= MIN_TRACK_FRAMES]
    tracks = sorted(tracks, key=lambda t: (float(_centre(t.boxes[0])[0]), t.frames[0]))
    boxes = torch.full((len(tracks), n, 4), float("nan"), dtype=torch.float32)
    scores = torch.zeros((len(tracks), n), dtype=torch.float32)
    for k, t in enumerate(tracks):
        idx = torch.tensor(t.frames, dtype=torch.long)
        boxes[k, idx] = torch.from_numpy(np.stack(t.boxes)).float()
        scores[k, idx] = torch.tensor(t.scores, dtype=torch.float32)
    return FaceTracks(frame_size, boxes, scores)


def detect_tracks(models, source, wanted, *, detector_scale: float = 1.0, batch_size: int = 8,
                  chunk_frames: Optional[int] = None, hooks: Optional[RunHooks] = None) -> FaceTracks:
    """S3FD over the ``wanted`` frames of a FrameSource (bool (N,) or None = all), chunk by chunk as
    faces/material.py reads them and batched as faces/locate.py detects, then ``link_tracks``. Frames outside
    ``wanted`` are not examined. Memory: two chunks of frames plus the detections. hooks.step(n) per batch of
    n frames."""
    from ..models import s3fd as s3fd_module
    from .locate import S3FD_PIXEL_BUDGET, warn_large_frames
    from .material import CHUNK_PIXELS, DEFAULT_CHUNK, _read_ahead

    hooks = hooks or NO_HOOKS
    if not (0.0 < float(detector_scale) <= 1.0):
        raise InputError(f"'detector_scale' must be in (0, 1]; got {detector_scale}.")
    if int(batch_size) < 1:
        raise InputError(f"'batch_size' must be at least 1; got {batch_size}.")
    n = int(source.num_frames)
    h, w = (int(v) for v in source.frame_size)
    wanted = np.ones(n, dtype=bool) if wanted is None else np.asarray(wanted, dtype=bool)
    if wanted.shape != (n,):
        raise InputError(f"'wanted' must be {n} booleans (one per source frame); got shape {wanted.shape}.")
    batch = int(batch_size)
    chunk = max(batch, min(int(chunk_frames or DEFAULT_CHUNK), CHUNK_PIXELS // max(1, h * w)) // batch * batch)
    s3fd_batch = max(1, min(batch, S3FD_PIXEL_BUDGET // max(1, int(h * w * detector_scale ** 2))))
    warn_large_frames(h, w, float(detector_scale))
    detections: List = [None] * n
    with models.use("s3fd") as (s3fd,):
        for indices, frames_u8 in _read_ahead(source, wanted, chunk):
            for start in range(0, len(indices), batch):  # locate_faces' batches, so S3FD sees the same inputs
                stop = min(start + batch, len(indices))
                for s in range(start, stop, s3fd_batch):
                    found = s3fd_module.detect(s3fd, frames_u8[s:min(s + s3fd_batch, stop)],
                                               scale=float(detector_scale))
                    for i, d in zip(indices[s:s + len(found)], found):
                        detections[i] = s3fd_module.Detections(d.boxes.cpu().clone(), d.scores.cpu().clone())
                hooks.step(stop - start)
            del frames_u8
    return link_tracks(detections, (h, w))
