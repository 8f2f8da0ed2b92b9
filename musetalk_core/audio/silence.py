"""Silence detection: per video frame, the RMS level of the audio its Whisper window covers, and level < threshold."""

from __future__ import annotations

import numpy as np
import torch

from .clip import SAMPLES_PER_WHISPER_FRAME

ENERGY_CHUNK = 320 * 4096  # samples squared and summed at a time (float64): 10 MB, not 230 MB for 10 minutes


def silence_flags(mono: np.ndarray, rows: torch.Tensor, threshold_db: float) -> tuple:
    """Per frame: RMS level (dBFS, 0 dB = a full-scale square wave) of the audio its window covers, and level <
    threshold. A window's audio is the 20 ms spans of its valid Whisper rows (zero/outside rows add nothing)."""
    energy = _energy_at_row_edges(mono)
    edge = lambda sample: -(-sample // SAMPLES_PER_WHISPER_FRAME)  # noqa: E731 - row edge k*320, or n at the end
    level = window_levels(rows, mono.shape[0], lambda samples: energy[edge(samples)])
    return torch.from_numpy(level < threshold_db), torch.from_numpy(level.astype(np.float32))


def window_levels(rows: torch.Tensor, n: int, energy_at) -> np.ndarray:
    """RMS level (dBFS) of the audio each window's valid rows cover, within the first ``n`` samples;
    ``energy_at(samples)``: the running sum of squares at those samples (row edges, or n). The offline track and a
    live stream (realtime/stream_windows.py) share it, so their flags agree bit for bit."""
    r = rows.numpy()
    valid = r >= 0
    lo = np.where(valid, r, np.iinfo(np.int64).max).min(axis=1)
    hi = np.where(valid, r, -1).max(axis=1) + 1
    lo_s = np.clip(lo * SAMPLES_PER_WHISPER_FRAME, 0, n)
    hi_s = np.clip(hi * SAMPLES_PER_WHISPER_FRAME, 0, n)
    count = np.maximum(hi_s - lo_s, 0)
    total = np.where(count > 0, energy_at(np.maximum(hi_s, lo_s)) - energy_at(lo_s), 0.0)
    mean = np.where(count > 0, total / np.maximum(count, 1), 0.0)
    return 10.0 * np.log10(np.maximum(mean, 1e-20))


def _energy_at_row_edges(mono: np.ndarray) -> np.ndarray:
    """float64 running sum of squares at samples 0, 320, 640, ... and at the end (n): entry k = sum of the first
    min(320 k, n) squared samples. Summed chunk by chunk, each chunk continuing from the previous total, so every
    entry is bit for bit the one a cumulative sum over the whole track gives."""
    n = mono.shape[0]
    edges = np.zeros(-(-n // SAMPLES_PER_WHISPER_FRAME) + 1, dtype=np.float64)
    carry = 0.0
    for start in range(0, n, ENERGY_CHUNK):
        chunk = mono[start:start + ENERGY_CHUNK].astype(np.float64)
        np.square(chunk, out=chunk)
        running = np.cumsum(np.concatenate([[carry], chunk]))  # running[j] = sum of the first start + j
        first = start // SAMPLES_PER_WHISPER_FRAME
        picked = running[0:len(chunk):SAMPLES_PER_WHISPER_FRAME]
        edges[first:first + len(picked)] = picked
        carry = running[-1]
    edges[-1] = carry
    return edges
