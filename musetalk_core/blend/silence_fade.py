"""Weight of the generated mouth per output frame: 0 on silent frames, faded in and out around them."""

from __future__ import annotations

import logging
from typing import Optional

import numpy as np
import torch

from ..errors import InputError

log = logging.getLogger(__name__)


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


def frame_weights(num_frames: int, silent: Optional[torch.Tensor], silence_handling: bool,
                  fade_frames: int) -> np.ndarray:
    """float64 (T,) mouth weights of a run: all 1 unless silence handling is on and the audio marks silence."""
    if not silence_handling:
        return np.ones(num_frames, dtype=np.float64)
    if silent is None:
        log.warning("BlendAndAssemble: silence handling is on but 'generated' carries no MUSETALK_AUDIO; ignored.")
        return np.ones(num_frames, dtype=np.float64)
    if int(silent.numel()) != num_frames:
        raise InputError(f"'generated' has {num_frames} frames but its audio marks silence for "
                         f"{int(silent.numel())}; re-run the generator node (MuseTalkUNetInpaint, "
                         "LatentSyncInpaint) with this audio.")
    return silence_weights(silent, int(fade_frames))
