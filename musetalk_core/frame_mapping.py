"""THE one place that decides how video and audio lengths fit: how many output frames there are, and which source
frame each output frame shows.

Output frame i (0..T-1) is drawn over source frame ``source_indices(T, N, mode, offset)[i]``; T is
``output_length(A, N, mode)`` for A audio frames (floor(duration * fps)) and N source frames. Every later stage
reads that index (MUSETALK_GENERATED.source_index, pipeline.Material.mapping); nothing else recomputes it.

Length-fit modes, with k = i + offset:
- ``bounce`` (the reference; ``ping_pong`` is its old name, still accepted): T = A; the cycle 0, 1, ..., N-1, N-1,
  ..., 1, 0 (both ends repeated, period 2N), i.e. ``(frames + frames[::-1])[k mod 2N]`` exactly as
  scripts/inference.py's frame_list_cycle and datagen do.
- ``loop``: T = A; 0, 1, ..., N-1, 0, 1, ... (``k mod N``).
- ``once_hold``: T = A; the frames once, then the last held (``clamp(k, 0, N-1)``; a negative offset holds frame 0
  first).
- ``cut_off``: T = min(A, N); the frames once (``clamp``): the output ends with the shorter of video and audio.
- ``silence``: T = N, the whole video once; audio shorter than the video is padded with silence (the generator
  sees silence there: mouths at rest; with silence handling the source mouth shows), a longer one is cut at the
  video's end.
- ``remap``: T = A; the video time-stretched to the audio's length: ``floor((k + 0.5) * N / A)`` (nearest source
  frame at the same relative time; frames repeat when the audio is longer, are skipped when it is shorter).

Reference bug fixed (§11.2.1): the reference indexes latents by i mod 2M (M = frames with a face) and frames by
i mod 2N, which drift apart as soon as one frame has no face. Here the source frame alone is decided; its latent is
looked up by frame (or the frame passes through when it has no face), so face and frame always agree. With every
face present this is the reference's datagen order exactly.
"""

from __future__ import annotations

import torch

from .errors import InputError

MODES = ("bounce", "loop", "once_hold", "cut_off", "silence", "remap", "ping_pong")
OLD_NAMES = {"ping_pong": "bounce"}  # saved workflows and job lines keep working


def canonical(mode: str) -> str:
    """The mode's name (an old name -> its new one); InputError naming the choices for an unknown mode."""
    if mode not in MODES:
        raise InputError(f"frame_mapping '{mode}' is not known: choose one of {', '.join(MODES[:-1])}.")
    return OLD_NAMES.get(mode, mode)


def output_length(audio_frames: int, num_source: int, mode: str = "bounce") -> int:
    """T: output frames for ``audio_frames`` frames of audio over ``num_source`` source frames."""
    mode = canonical(mode)
    a, n = int(audio_frames), int(num_source)
    if mode == "cut_off":
        return min(a, n)
    if mode == "silence":
        return n
    return a


def source_indices(num_output: int, num_source: int, mode: str = "bounce", offset: int = 0) -> torch.Tensor:
    """int64 (num_output,): the source frame of each output frame (CPU tensor)."""
    mode = canonical(mode)
    num_output, num_source, offset = int(num_output), int(num_source), int(offset)
    if num_source < 1:
        raise InputError("There are no source frames (0 images): connect at least one video frame or image.")
    if num_output < 0:
        raise InputError(f"The number of output frames must not be negative (got {num_output}).")
    k = torch.arange(num_output, dtype=torch.int64) + offset
    if mode == "bounce":
        period = 2 * num_source
        p = torch.remainder(k, period)
        return torch.where(p < num_source, p, period - 1 - p)
    if mode == "loop":
        return torch.remainder(k, num_source)
    if mode == "remap" and num_output:
        # integer arithmetic: floor((2k + 1) N / 2T), no float rounding at the frame edges
        return torch.div((2 * k + 1) * num_source, 2 * num_output, rounding_mode="floor").clamp(0, num_source - 1)
    return k.clamp(0, num_source - 1)


def used_source_frames(num_output: int, num_source: int, mode: str = "bounce", offset: int = 0):
    """(mapping (T,), wanted (N,) bool numpy): the source frame of each output frame, and which frames are used."""
    import numpy as np

    mapping = source_indices(num_output, num_source, mode, offset)
    wanted = np.zeros(int(num_source), dtype=bool)
    wanted[mapping.unique().numpy()] = True
    return mapping, wanted
