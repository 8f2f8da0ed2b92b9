"""Audio -> per-video-frame Whisper windows (T, 50, 384), as MuseTalk's reference computes them (spec §2).

Two feature modes:
- "reference": TMElyralab/MuseTalk HEAD ``AudioProcessor`` (used for v1.5 and for HEAD's ``--version v1``):
  transformers WhisperFeatureExtractor per 30 s segment, the encoder's 5 hidden states (the last after the final
  LayerNorm), zero feature frames around the audio, a window of 2*(left+right+1) Whisper frames per video frame.
- "v1.0-original": the pre-v1.5 ``Audio2Feature`` with OpenAI Whisper: one log-mel over the whole file (global
  normalisation), 30 s encoder windows padded with 0 in the normalised log-mel, layer 4 *before* the final
  LayerNorm, window rows clamped to the audio (edge replication). Runs the same HF encoder weights.

Deliberate differences from the reference (documented in docs/audio.md):
- the exact fps is used for the frame count and the window positions (HEAD truncates fps to an int);
- windows that reach past the padded features read zero frames instead of aborting the process;
- v1.0-original emits floor(duration * fps) frames, not the two extra frames past the end of the audio.

The parts: clip.py (the AUDIO checked, mono at 16 kHz), whisper_states.py (the encoder's hidden states in blocks for
either mode), silence.py (per-frame silence flags); this module places the states into each frame's window.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np
import torch

from ..errors import InputError
from ..hooks import NO_HOOKS, RunHooks
from ..types import MuseTalkAudio, MuseTalkModels
from .clip import SAMPLE_RATE, WHISPER_FPS, audio_to_mono16k, check_fps, frame_count, num_segments
from .overlap import AUDIO_SEGMENTS, SEGMENT_ROWS, plan_segments
from .silence import silence_flags
from .whisper_states import N_FFT, original_blocks, overlapping_blocks, reference_blocks

FEATURE_MODES = ("reference", "v1.0-original")
GATHER_CHUNK = 512  # output frames gathered at a time

__all__ = ["AUDIO_SEGMENTS", "FEATURE_MODES", "audio_to_mono16k", "encode_audio", "gather_windows", "num_segments",
           "original_window_rows", "reference_window_rows", "silence_flags"]


# ---------------------------------------------------------------------------------------------- windows


def reference_window_rows(num_frames: int, fps: float, pad_left: int, pad_right: int, length: int,
                          first: int = 0) -> torch.Tensor:
    """int64 (T, L) Whisper-frame index per window slot (HEAD get_whisper_chunk), -1 where the reference reads zeros.

    HEAD: m = 50/fps, p = ceil(m), features zero-padded by p*left in front, frame i reads padded[floor(i*m) :
    floor(i*m) + L]. In unpadded indices that is floor(i*m) - p*left + k. Exact fps here (HEAD uses int(fps)).
    ``first``: only frames first..num_frames-1 (a live stream's next frames; the same rows as the whole track's).
    """
    m = WHISPER_FPS / fps
    window = 2 * (pad_left + pad_right + 1)
    starts = np.floor(np.arange(first, num_frames, dtype=np.float64) * m).astype(np.int64) - math.ceil(m) * pad_left
    rows = starts[:, None] + np.arange(window, dtype=np.int64)[None, :]
    rows[(rows < 0) | (rows >= length)] = -1
    return torch.from_numpy(rows)


def original_window_rows(num_frames: int, fps: float, pad_left: int, pad_right: int, length: int) -> torch.Tensor:
    """int64 (T, L) rows of v1.0 ``get_sliced_feature``: centre int(i*50/fps), rows centre-2*left ..
    centre+2*(right+1)-1, each clamped to [0, length-1]."""
    centres = np.array([int(i * 50 / fps) for i in range(num_frames)], dtype=np.int64)
    offsets = np.arange(-2 * pad_left, 2 * (pad_right + 1), dtype=np.int64)
    return torch.from_numpy(np.clip(centres[:, None] + offsets[None, :], 0, max(length - 1, 0)))


def gather_windows(blocks, length: int, rows: torch.Tensor, dtype: torch.dtype, store=None) -> torch.Tensor:
    """Whisper states arriving block by block -> (T, 5L, 384) windows, token 5*t + layer; rows -1 read zeros.

    ``blocks``: (first row, (n, 5, 384) states) in row order, together rows 0 .. length-1. A frame's window is
    written as soon as every row it reads has arrived, and rows no later frame reads are dropped, so only about
    one block of states is held however long the audio is (the whole track's states are 230 MB at fp32 for 10
    minutes). ``store(shape, dtype)``: where the windows go instead of a tensor (a spill.SpilledArray)."""
    num_frames, window = rows.shape
    r = rows.numpy()
    valid = (r >= 0) & (r < length)  # -1, and rows of a track with no states at all (v1.0 clamps to 0), read zeros
    needed_to = np.where(valid, r, -1).max(axis=1) + 1  # a frame is ready once rows < needed_to have arrived
    first_read = np.where(valid, r, length).min(axis=1)
    keep_from = np.minimum.accumulate(first_read[::-1])[::-1]  # the lowest row any frame from here on reads
    out = None
    held, held_from, arrived, done = None, 0, 0, 0
    for begin, states in blocks:
        if begin != arrived:
            raise ValueError(f"Whisper states block starts at row {begin}, expected {arrived}")
        if out is None:
            shape = (num_frames, window * states.shape[1], states.shape[2])
            out = torch.empty(shape, dtype=dtype, device=states.device) if store is None else store(shape, dtype)
        held = states if held is None else torch.cat([held, states])
        arrived = begin + states.shape[0]
        done = _write_ready(out, held, held_from, arrived, rows, length, needed_to, done)
        if done == num_frames:  # every window written: the rest of the track is not needed
            held = None
        else:  # drop the rows no remaining frame reads
            drop = int(min(keep_from[done], arrived)) - held_from
            if drop > 0:
                held, held_from = held[drop:], held_from + drop
    if out is None or done < num_frames or arrived != length:
        raise ValueError(f"Whisper states ended at row {arrived} of {length} with {done} of {num_frames} windows")
    return out


def _write_ready(out, held, held_from, available, rows, length, needed_to, done) -> int:
    """Write the windows of frames done.. whose rows are all below ``available``; returns the new ``done``."""
    ready = done
    while ready < len(needed_to) and needed_to[ready] <= available:
        ready += 1
    if ready == done:
        return done
    table = torch.cat([held, held.new_zeros((1,) + tuple(held.shape[1:]))])  # last row: zeros for -1
    window = rows.shape[1]
    for start in range(done, ready, GATHER_CHUNK):
        stop = min(start + GATHER_CHUNK, ready)
        idx = rows[start:stop] - held_from
        missing = (rows[start:stop] < 0) | (rows[start:stop] >= length)
        if bool((idx[~missing] < 0).any()):  # a row dropped too early would silently wrap around
            raise AssertionError("gather_windows dropped a Whisper row a later window reads")
        idx[missing] = table.shape[0] - 1
        picked = table[idx.to(table.device).reshape(-1)]
        out[start:stop] = picked.reshape(stop - start, window * table.shape[1], table.shape[2])
    return ready


# ------------------------------------------------------------------------------------------------- encode


def _check_settings(feature_mode: str, audio_padding_left, audio_padding_right, silence_threshold_db) -> tuple:
    """(padding left, padding right, silence threshold in dBFS), each checked before any audio is decoded."""
    if feature_mode not in FEATURE_MODES:
        raise InputError(f"feature_mode: '{feature_mode}' is unknown; choose one of {', '.join(FEATURE_MODES)}.")
    for name, value in (("audio_padding_left", audio_padding_left), ("audio_padding_right", audio_padding_right)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= int(value) <= 10:
            raise InputError(f"{name}: expected a whole number from 0 to 10 (the model was trained with 2), "
                             f"got {value!r}.")
    try:
        threshold = float(silence_threshold_db)
    except (TypeError, ValueError):
        raise InputError(f"silence_threshold_db: expected a level in dBFS (e.g. -45), got {silence_threshold_db!r}.")
    if not math.isfinite(threshold):
        raise InputError("silence_threshold_db: must be a finite level in dBFS (e.g. -45).")
    return int(audio_padding_left), int(audio_padding_right), threshold


def encode_audio(models: MuseTalkModels, audio: Any, fps: float, audio_padding_left: int = 2,
                 audio_padding_right: int = 2, feature_mode: str = "reference", silence_threshold_db: float = -45.0,
                 hooks: Optional[RunHooks] = None, store=None, num_frames: Optional[int] = None,
                 audio_segments: str = "reference") -> MuseTalkAudio:
    """AUDIO -> MuseTalkAudio with (T, 50, 384) windows (T = floor(duration * fps)) and per-frame silence flags.

    ``num_frames``: T when a length-fit mode decided another output length (frame_mapping.output_length): fewer
    windows are the first T of the whole audio's; more read zeros past the audio's end and are flagged silent.
    ``settings["audio_frames"]`` keeps floor(duration * fps) either way.

    ``audio_segments``: "reference" (back-to-back 30 s encoder segments) or "overlapping" (overlap.py: each frame
    reads the segment its window is furthest inside; audio of one segment or less gets the reference's features).

    ``store(shape, dtype)`` -> an array the windows are written to (e.g. spill.SpilledArray on disk: 77 KB per
    frame at fp32 would otherwise grow with the length of a long video)."""
    hooks = hooks or NO_HOOKS
    fps = check_fps(fps)
    pad_left, pad_right, threshold = _check_settings(feature_mode, audio_padding_left, audio_padding_right,
                                                     silence_threshold_db)
    if audio_segments not in AUDIO_SEGMENTS:
        raise InputError(f"audio_segments: '{audio_segments}' is unknown; choose one of {', '.join(AUDIO_SEGMENTS)}.")
    mono, source_rate, channels = audio_to_mono16k(audio)
    duration = mono.shape[0] / SAMPLE_RATE
    audio_frames = frame_count(mono.shape[0], fps)
    num_frames = audio_frames if num_frames is None else int(num_frames)
    if audio_frames < 1:
        raise InputError(f"audio: {duration * 1000:.1f} ms of audio is shorter than one video frame at {fps:g} fps "
                         f"({1000 / fps:.1f} ms). Connect a longer clip.")
    if feature_mode == "v1.0-original" and mono.shape[0] <= N_FFT // 2:
        raise InputError(f"audio: {duration * 1000:.1f} ms is too short for the v1.0-original features "
                         f"(needs more than {N_FFT // 2} samples at 16 kHz, 12.5 ms).")

    with models.use("whisper") as (encoder,):
        if feature_mode == "reference":
            length, blocks = reference_blocks(models, encoder, mono, hooks)
            rows = reference_window_rows(num_frames, fps, pad_left, pad_right, length)
        else:
            length, blocks = original_blocks(models, encoder, mono, hooks)
            rows = original_window_rows(num_frames, fps, pad_left, pad_right, length)
        if audio_segments == "overlapping" and length > SEGMENT_ROWS:  # the reference's blocks are never started
            plan = plan_segments(rows, length)
            blocks = overlapping_blocks(models, encoder, mono, hooks, feature_mode, plan)
            features = gather_windows(blocks, plan.length, plan.rows, models.dtype, store)
        else:
            features = gather_windows(blocks, length, rows, models.dtype, store)
    silent, level = silence_flags(mono, rows, threshold)
    silent[audio_frames:] = True  # past the audio's end (v1.0-original's clamped rows would repeat its last sound)
    settings = {
        "audio_padding_left": pad_left, "audio_padding_right": pad_right, "silence_threshold_db": threshold,
        "source_sample_rate": source_rate, "source_channels": channels, "num_samples_16k": int(mono.shape[0]),
        "duration_s": duration, "window_rows": rows, "level_db": level, "audio_frames": audio_frames,
        "audio_segments": audio_segments,
    }
    return MuseTalkAudio(features=features, fps=fps, silent=silent, audio=audio, feature_mode=feature_mode,
                         version=models.version, settings=settings)
