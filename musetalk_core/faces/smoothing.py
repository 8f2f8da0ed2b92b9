"""Temporal smoothing of the face boxes (opt-in box_smoothing; off = the reference), over runs of face frames."""

from __future__ import annotations

import math
from typing import List, Tuple

import numpy as np
import torch

MAX_SMOOTHING_SIGMA = 5.0  # box_smoothing 1.0 = a Gaussian over time with sigma 5 frames


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
