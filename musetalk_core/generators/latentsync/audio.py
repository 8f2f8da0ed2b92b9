"""LatentSync's audio windows: which Whisper frames (50 per second) feed each video frame (Audio2Feature).

LatentSync's Audio2Feature is MuseTalk v1.0's (latentsync/whisper/ at the pinned commit differs from MuseTalk's
musetalk/whisper/ only in formatting, ``weights_only=True`` and a CUDA cache flush; ``get_sliced_feature`` and
``audio2feat`` compute the same). So the windows are those of WhisperAudioEncode's "v1.0-original" mode,
``musetalk_core.audio.windows.original_window_rows``: video frame i reads Whisper frames int(i * 50 / fps) - 4 ... + 5,
clamped to the ends, each a (5 layers, 384) block, flattened to (50, 384).

Upstream makes one window per i while int(i * 50 / fps) <= n_features (feature2chunks): a frame or two more than the
audio lasts, and the pipeline makes that many output frames. The generator will make exactly T = duration * fps
frames instead (docs/latentsync.md); ``reference_window_count`` keeps upstream's count for the goldens.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ...audio.windows import original_window_rows

FEATURE_RATE = 50  # Whisper encoder frames per second


def reference_window_count(n_features: int, fps: float = 25) -> int:
    """How many windows upstream's feature2chunks makes for ``n_features`` Whisper frames."""
    i = 0
    while int(i * FEATURE_RATE / fps) <= n_features:
        i += 1
    return i + 1


def audio_windows(features: torch.Tensor, frames: int, fps: float = 25,
                  feat_length: Sequence[int] = (2, 2)) -> torch.Tensor:
    """(frames, 10 * layers, width) windows from Whisper features (n_features, layers, width)."""
    rows = original_window_rows(frames, fps, feat_length[0], feat_length[1], features.shape[0])
    return features[rows.to(features.device)].reshape(frames, -1, features.shape[-1])
