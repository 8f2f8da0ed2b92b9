"""Opt-in "overlapping" audio segments: which 30 s encoder segment each video frame reads its Whisper rows from.

The reference encodes the audio in back-to-back 30 s segments, so a frame whose window sits at a segment edge reads
states computed with no audio context on one side (and rows from two differently normalised segments): the
features jump every 30 s. Here the segments start every ``HOP_ROWS`` Whisper rows (20 s) and overlap by 10 s; each
frame takes its whole window from the one segment in which the window is furthest from an edge that cuts audio.
With a 20 s hop every window keeps at least 5 s of context on each side (the audio's own ends aside), for 1.5x the
encoder calls of the reference (a 15 s hop would keep 7.5 s for 2x: benchmarks/seamless_audio.py measures both).

Everything here is in Whisper rows (20 ms); whisper_states.overlapping_blocks computes the segments' states.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

AUDIO_SEGMENTS = ("reference", "overlapping")
SEGMENT_ROWS = 1500  # Whisper rows of one 30 s encoder call
HOP_ROWS = 1000      # 20 s between segment starts (10 s overlap)
MAX_WINDOW_ROWS = 42  # 2 * (10 + 10 + 1): the widest window the padding settings allow


@dataclass(frozen=True)
class SegmentPlan:
    """Overlapping segments over a track of ``length`` Whisper rows, and each frame's rows into their states.

    ``starts``/``ends``: (S,) first row and one past the last row (trimmed to the track) of each segment.
    ``choice``: (T,) the segment each frame reads. ``rows``: int64 (T, L) rows into the segments' states laid end to
    end (segment order, each ``ends - starts`` rows), -1 where the frame reads zeros. ``length``: their total."""

    starts: np.ndarray
    ends: np.ndarray
    choice: np.ndarray
    rows: torch.Tensor
    length: int


def segment_starts(length: int, hop_rows: int = HOP_ROWS) -> np.ndarray:
    """First row of each segment: every ``hop_rows`` until one reaches the end of the track."""
    if not MAX_WINDOW_ROWS <= SEGMENT_ROWS - hop_rows < SEGMENT_ROWS:
        raise ValueError(f"hop_rows {hop_rows}: segments must overlap by at least one window "
                         f"({MAX_WINDOW_ROWS} rows) and advance")
    count = 1 + math.ceil(max(0, length - SEGMENT_ROWS) / hop_rows)
    return np.arange(count, dtype=np.int64) * hop_rows


def edge_margins(rows: np.ndarray, length: int, starts: np.ndarray) -> np.ndarray:
    """float (T, S): how many rows each frame's window stays inside each segment from the nearest edge that cuts
    audio (a segment's start after row 0, its end before the end of the track); -inf where the window does not
    fit in the segment, +inf where the segment holds the whole track. Frames with no row in the track: 0."""
    valid = (rows >= 0) & (rows < length)
    lo = np.where(valid, rows, length).min(axis=1)[:, None]
    hi = np.where(valid, rows, -1).max(axis=1)[:, None]
    starts = starts[None, :]
    ends = np.minimum(starts + SEGMENT_ROWS, length)
    from_start = np.where(starts > 0, lo - starts, np.inf)
    to_end = np.where(starts + SEGMENT_ROWS < length, ends - 1 - hi, np.inf)
    margin = np.minimum(from_start, to_end).astype(np.float64)
    margin[(lo < starts) | (hi >= ends)] = -np.inf
    margin[~valid.any(axis=1)] = 0.0
    return margin


def plan_segments(rows: torch.Tensor, length: int, hop_rows: int = HOP_ROWS) -> SegmentPlan:
    """The segments for a track of ``length`` rows and each frame's window ``rows`` (global rows, -1 = zeros; the
    reference's or v1.0's) moved into the chosen segment's states. Ties go to the earlier segment."""
    r = rows.numpy()
    starts = segment_starts(length, hop_rows)
    ends = np.minimum(starts + SEGMENT_ROWS, length)
    margin = edge_margins(r, length, starts)
    choice = margin.argmax(axis=1)
    if bool(np.isneginf(margin[np.arange(len(choice)), choice]).any()):
        raise AssertionError("a window fits in no overlapping segment")
    offsets = np.concatenate([[0], np.cumsum(ends - starts)])
    valid = (r >= 0) & (r < length)
    moved = np.where(valid, r - starts[choice][:, None] + offsets[choice][:, None], -1)
    return SegmentPlan(starts=starts, ends=ends, choice=choice, rows=torch.from_numpy(moved.astype(np.int64)),
                       length=int(offsets[-1]))
