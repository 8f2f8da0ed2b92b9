"""The clip's audio for BlendAndAssemble: the driving waveform cut or zero-padded to exactly T / fps seconds."""

from __future__ import annotations

import math
from typing import Any, Dict, Mapping, Optional

import torch

from ..errors import InputError

SILENT_AUDIO_RATE = 44100  # sample rate of the silent track produced when the generated clip carries no audio


def audio_length(num_frames: int, fps: float, sample_rate: int) -> int:
    """Samples in ``num_frames / fps`` seconds: ``floor(num_frames * sample_rate / fps + 0.5)`` (round half up)."""
    return int(math.floor(num_frames * float(sample_rate) / float(fps) + 0.5))


def assemble_audio(audio: Optional[Mapping[str, Any]], num_frames: int, fps: float) -> Dict[str, Any]:
    """The clip's AUDIO: the driving waveform trimmed or zero-padded to exactly T / fps seconds, on the CPU.

    Without audio (a MUSETALK_GENERATED built without MUSETALK_AUDIO) the result is mono silence at 44100 Hz."""
    if audio is None:
        n = audio_length(num_frames, fps, SILENT_AUDIO_RATE)
        return {"waveform": torch.zeros((1, 1, n), dtype=torch.float32), "sample_rate": SILENT_AUDIO_RATE}
    try:
        waveform = audio["waveform"]
        rate = int(audio["sample_rate"])
    except (KeyError, TypeError, ValueError):
        raise InputError("The audio inside 'generated' is not an AUDIO mapping with 'waveform' and 'sample_rate'; "
                         "connect WhisperAudioEncode's input audio from a standard audio node.") from None
    if not isinstance(waveform, torch.Tensor) or waveform.ndim not in (2, 3) or rate <= 0:
        raise InputError("The audio inside 'generated' must have a waveform of shape (batch, channels, samples) and "
                         f"a positive sample rate; got {getattr(waveform, 'shape', type(waveform).__name__)} at {rate}.")
    if waveform.ndim == 2:
        waveform = waveform.unsqueeze(0)
    n = audio_length(num_frames, fps, rate)
    wav = waveform.detach().to("cpu")
    if not wav.is_floating_point():
        wav = wav.float()
    have = wav.shape[-1]
    if have >= n:
        out = wav[..., :n].clone()
    else:
        out = torch.cat([wav, wav.new_zeros(wav.shape[:-1] + (n - have,))], dim=-1)
    return {"waveform": out.contiguous(), "sample_rate": rate}
