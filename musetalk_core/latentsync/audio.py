"""LatentSync's audio windows: which Whisper frames (50 per second) feed each video frame (Audio2Feature).

Each video frame i gets the Whisper encoder frames ``int(i * 50 / fps) - 4 ... + 5`` (10 frames, clamped to the
ends), every one a (5 layers, 384) block, flattened to (50, 384). Upstream produces one window per i while
``int(i * 50 / fps) <= n_features`` (feature2chunks), which is one or two windows more than the audio lasts; the
pipeline then makes that many output frames. Our generator will cut to exactly T = duration * fps frames instead
(see docs/latentsync.md); ``reference_window_count`` keeps upstream's count for the goldens.
"""

from __future__ import annotations

from typing import List, Sequence

import torch

FEATURE_RATE = 50  # Whisper encoder frames per second


def window_indices(frame: int, n_features: int, fps: float = 25, feat_length: Sequence[int] = (2, 2)) -> List[int]:
    """Whisper frame indices of video frame ``frame`` (get_sliced_feature)."""
    center = int(frame * FEATURE_RATE / fps)
    left, right = center - feat_length[0] * 2, center + (feat_length[1] + 1) * 2
    return [min(max(idx, 0), n_features - 1) for idx in range(left, right)]


def reference_window_count(n_features: int, fps: float = 25) -> int:
    """How many windows upstream's feature2chunks makes for ``n_features`` Whisper frames."""
    i = 0
    while int(i * FEATURE_RATE / fps) <= n_features:
        i += 1
    return i + 1


def audio_windows(features: torch.Tensor, frames: int, fps: float = 25,
                  feat_length: Sequence[int] = (2, 2)) -> torch.Tensor:
    """(frames, 10 * layers, width) windows from Whisper features (n_features, layers, width)."""
    n = features.shape[0]
    index = torch.tensor([window_indices(i, n, fps, feat_length) for i in range(frames)], device=features.device)
    return features[index].reshape(frames, -1, features.shape[-1])
