"""THE one place that decides which source frame each output frame belongs to.

Output frame i (0..T-1, one per audio window) is drawn over source frame ``source_indices(T, N, mode, offset)[i]``.
Every later stage (generation, blending) reads that index from MUSETALK_GENERATED.source_index; nothing else
recomputes it.

Modes, with k = i + offset:
- ``ping_pong`` (the reference): the cycle 0, 1, ..., N-1, N-1, ..., 1, 0 (both ends repeated, period 2N), i.e.
  ``(frames + frames[::-1])[k mod 2N]`` exactly as scripts/inference.py's frame_list_cycle and datagen do.
- ``loop``: 0, 1, ..., N-1, 0, 1, ... (``k mod N``).
- ``once_hold``: play the frames once, then hold the last (``clamp(k, 0, N-1)``; a negative offset holds frame 0
  first).

Reference bug fixed (§11.2.1): the reference indexes latents by i mod 2M (M = frames with a face) and frames by
i mod 2N, which drift apart as soon as one frame has no face. Here the source frame alone is decided; its latent is
looked up by frame (or the frame passes through when it has no face), so face and frame always agree. With every
face present this is the reference's datagen order exactly.
"""

from __future__ import annotations

import torch

from .errors import InputError

MODES = ("ping_pong", "loop", "once_hold")


def source_indices(num_output: int, num_source: int, mode: str = "ping_pong", offset: int = 0) -> torch.Tensor:
    """int64 (num_output,): the source frame of each output frame (CPU tensor)."""
    if mode not in MODES:
        raise InputError(f"frame_mapping '{mode}' is not known: choose one of {', '.join(MODES)}.")
    num_output, num_source, offset = int(num_output), int(num_source), int(offset)
    if num_source < 1:
        raise InputError("There are no source frames (0 images): connect at least one video frame or image.")
    if num_output < 0:
        raise InputError(f"The number of output frames must not be negative (got {num_output}).")
    k = torch.arange(num_output, dtype=torch.int64) + offset
    if mode == "ping_pong":
        period = 2 * num_source
        p = torch.remainder(k, period)
        return torch.where(p < num_source, p, period - 1 - p)
    if mode == "loop":
        return torch.remainder(k, num_source)
    return k.clamp(0, num_source - 1)


def used_source_frames(num_output: int, num_source: int, mode: str = "ping_pong", offset: int = 0):
    """(mapping (T,), wanted (N,) bool numpy): the source frame of each output frame, and which frames are used."""
    import numpy as np

    mapping = source_indices(num_output, num_source, mode, offset)
    wanted = np.zeros(int(num_source), dtype=bool)
    wanted[mapping.unique().numpy()] = True
    return mapping, wanted
