"""Live audio chunks -> mono float32 at 16 kHz, as audio/clip.py converts a whole AUDIO.

int16 / int32 / float samples, mono (S,) or channels first (C, S); mono is the channel mean (clip.py's), and other
rates go through a soxr "HQ" stream resampler, which gives exactly ``soxr.resample``'s samples whatever the chunk
sizes (clip.py's offline resampling); at the end the stream is padded or cut to clip.py's length,
ceil(n * 16000 / rate).
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from ..audio.clip import SAMPLE_RATE, check_sample_rate
from ..errors import InputError


def mono_float(samples) -> np.ndarray:
    """A chunk as float32 mono samples in [-1, 1] (int16 / 32768, int32 / 2^31, channels averaged)."""
    if isinstance(samples, torch.Tensor):
        samples = samples.detach().cpu().numpy()
    a = np.asarray(samples)
    if a.ndim not in (1, 2) or (a.ndim == 2 and a.shape[0] < 1):
        raise InputError(f"audio chunk: expected samples (S,) or channels first (C, S), got shape {a.shape}.")
    if a.dtype == np.int16:
        a = a.astype(np.float32) / 32768.0
    elif a.dtype == np.int32:
        a = (a.astype(np.float64) / 2147483648.0).astype(np.float32)
    elif a.dtype.kind == "f":
        a = a.astype(np.float32, copy=False)
    else:
        raise InputError(f"audio chunk: samples of type {a.dtype} are not audio; send int16 PCM or float samples "
                         "in [-1, 1].")
    if not np.isfinite(a).all():
        raise InputError("audio chunk: it contains NaN or infinite samples.")
    if a.ndim == 2:
        a = torch.from_numpy(np.ascontiguousarray(a)).mean(dim=0).numpy() if a.shape[0] > 1 else a[0]
    return np.ascontiguousarray(a, dtype=np.float32)


def check_rate(sample_rate) -> int:
    return check_sample_rate(sample_rate, "audio chunk")


class To16k:
    """One stream's resampling to 16 kHz (a pass-through at 16 kHz)."""

    def __init__(self, rate: int):
        self.rate = check_rate(rate)
        self.given = 0   # samples in
        self.made = 0    # samples out
        self._stream: Optional[object] = None
        if self.rate != SAMPLE_RATE:
            import soxr

            self._stream = soxr.ResampleStream(self.rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")

    def push(self, mono: np.ndarray) -> np.ndarray:
        self.given += int(mono.size)
        out = mono if self._stream is None else self._stream.resample_chunk(mono)
        self.made += int(out.size)
        return out

    def finish(self) -> np.ndarray:
        """The stream's last samples: the resampler's tail, padded or cut to ceil(n * 16000 / rate) in all."""
        if self._stream is None:
            return np.zeros(0, np.float32)
        tail = self._stream.resample_chunk(np.zeros(0, np.float32), last=True)
        size = int(np.ceil(self.given * float(SAMPLE_RATE) / self.rate))
        want = max(0, size - self.made)  # what came out already cannot be taken back (soxr lags, so it never does)
        tail = tail[:want] if tail.size >= want else np.pad(tail, (0, want - tail.size))
        self.made += int(tail.size)
        return np.ascontiguousarray(tail, dtype=np.float32)
