"""Several speakers' AUDIO mixed into the clip's one track: each cut or zero-padded to T / fps, at the first
speaker's sample rate (soxr HQ, as the Whisper input is resampled), summed and kept within full scale."""

from __future__ import annotations

from typing import Any, Dict, Mapping, Sequence

import numpy as np
import torch

from .audio_cut import assemble_audio


def _resampled(wave: torch.Tensor, rate: int, to_rate: int) -> torch.Tensor:
    if rate == to_rate:
        return wave
    import soxr

    x = wave[0].numpy().T.astype(np.float32)  # (samples, channels)
    return torch.from_numpy(np.ascontiguousarray(soxr.resample(x, rate, to_rate, quality="soxr_hq").T))[None]


def mix_audio(audios: Sequence[Mapping[str, Any]], num_frames: int, fps: float) -> Dict[str, Any]:
    """One AUDIO of exactly ``num_frames`` / ``fps`` seconds: the sum of ``audios`` (one speaker: that one, as
    assemble_audio gives it, bit for bit)."""
    parts = [assemble_audio(a, num_frames, fps) for a in audios]
    if len(parts) == 1:
        return parts[0]
    rate = int(parts[0]["sample_rate"])
    channels = max(int(p["waveform"].shape[1]) for p in parts)
    total = None
    for p in parts:
        wave = _resampled(p["waveform"][:1].float(), int(p["sample_rate"]), rate)
        wave = wave.expand(1, channels, wave.shape[-1]) if wave.shape[1] == 1 else wave
        total = wave.clone() if total is None else _add(total, wave)
    n = int(parts[0]["waveform"].shape[-1])
    total = total[..., :n] if total.shape[-1] >= n else torch.nn.functional.pad(total, (0, n - total.shape[-1]))
    return {"waveform": total.clamp_(-1.0, 1.0).contiguous(), "sample_rate": rate}


def _add(total: torch.Tensor, wave: torch.Tensor) -> torch.Tensor:
    n = min(total.shape[-1], wave.shape[-1])
    total[..., :n] += wave[..., :n]
    return total
