"""Weight of the generated mouth per output frame: 0 on silent frames, faded in and out around them."""

from __future__ import annotations

import numpy as np
import torch


def silence_weights(silent: torch.Tensor, fade_frames: int) -> np.ndarray:
    """Weight of the generated mouth per output frame: 0 on silent frames, rising linearly over ``fade_frames``
    frames on either side of each silent run (d / (fade_frames + 1) at distance d), 1 elsewhere."""
    flags = silent.detach().to("cpu").numpy().astype(bool).reshape(-1)
    t = flags.shape[0]
    weights = np.ones(t, dtype=np.float64)
    if not flags.any():
        return weights
    big = t + fade_frames + 2
    dist = np.full(t, big, dtype=np.int64)
    last = -big
    for i in range(t):  # O(T) scalar pass over per-frame flags (not pixels)
        if flags[i]:
            last = i
        dist[i] = i - last
    last = 2 * big + t
    for i in range(t - 1, -1, -1):
        if flags[i]:
            last = i
        dist[i] = min(dist[i], last - i)
    weights = np.where(dist <= fade_frames, dist / (fade_frames + 1.0), 1.0)
    weights[flags] = 0.0
    return weights

