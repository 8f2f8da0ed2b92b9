"""The driving AUDIO as the audio stage reads it: checked, mono, at 16 kHz; the frame rate and frame count.

Mono is the channel mean, resampling to 16 kHz is soxr "HQ" with librosa's output length, as ``librosa.load``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ..errors import InputError

SAMPLE_RATE = 16000
WHISPER_FPS = 50  # Whisper encoder frames per second (one per 20 ms)
SAMPLES_PER_WHISPER_FRAME = SAMPLE_RATE // WHISPER_FPS  # 320
MIN_SAMPLE_RATE = 1000
MAX_SAMPLE_RATE = 768000
MAX_FPS = 1000.0


def audio_to_mono16k(audio: Any) -> tuple:
    """ComfyUI AUDIO -> (float32 numpy mono at 16 kHz, source sample rate, source channels). Validates everything."""
    if not isinstance(audio, Mapping):
        raise InputError(f"audio: expected a ComfyUI AUDIO (a mapping with 'waveform' and 'sample_rate'), got "
                         f"{type(audio).__name__}. Connect LoadAudio, a video's audio or a TTS node.")
    missing = [k for k in ("waveform", "sample_rate") if k not in audio]
    if missing:
        raise InputError(f"audio: the AUDIO mapping has no {', '.join(repr(k) for k in missing)} entry "
                         f"(keys: {sorted(map(str, audio))}). Connect a standard AUDIO output.")
    wave = audio["waveform"]
    if not isinstance(wave, torch.Tensor):
        try:
            wave = torch.as_tensor(np.asarray(wave))
        except Exception:  # noqa: BLE001
            raise InputError(f"audio: 'waveform' must be a tensor (batch, channels, samples), got "
                             f"{type(audio['waveform']).__name__}.") from None
    if wave.ndim == 1:
        wave = wave[None, None]
    elif wave.ndim == 2:
        wave = wave[None]
    if wave.ndim != 3:
        raise InputError(f"audio: 'waveform' must have shape (batch, channels, samples), got {tuple(wave.shape)}.")
    if wave.shape[0] != 1:
        raise InputError(f"audio: the AUDIO holds a batch of {wave.shape[0]} clips; WhisperAudioEncode takes one "
                         "clip. Split the batch or pick one clip (batch size must be 1).")
    if wave.shape[1] < 1 or wave.shape[2] < 1:
        raise InputError(f"audio: the waveform is empty (shape {tuple(wave.shape)}). Connect audio with sound in it.")
    if not (wave.is_floating_point() or wave.dtype in (torch.int16, torch.int32)):
        raise InputError(f"audio: 'waveform' has dtype {wave.dtype}; expected float samples in [-1, 1].")
    rate = check_sample_rate(audio["sample_rate"], "audio")
    if wave.dtype == torch.int16:
        wave = wave.float() / 32768.0
    elif wave.dtype == torch.int32:
        wave = wave.double() / 2147483648.0
    samples = wave[0].detach().to("cpu", torch.float32)
    if not bool(torch.isfinite(samples).all()):
        bad = int((~torch.isfinite(samples)).sum())
        raise InputError(f"audio: the waveform contains {bad} NaN/inf samples. Fix the node that produced it "
                         "(e.g. a TTS or effect node) or clean the audio before MuseTalk.")
    channels = int(samples.shape[0])
    mono = samples.mean(dim=0).numpy() if channels > 1 else samples[0].numpy()
    return resample_to_16k(np.ascontiguousarray(mono, dtype=np.float32), rate), rate, channels


def check_sample_rate(value, label: str) -> int:
    """A sample rate as a whole number of Hz in the usable range, or an InputError naming ``label`` (an AUDIO, a
    live audio chunk)."""
    try:
        rate = float(value)
    except (TypeError, ValueError):
        rate = float("nan")
    if not math.isfinite(rate) or rate != int(rate) or not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise InputError(f"{label}: sample rate {value!r} Hz is not usable; expected a whole number of Hz between "
                         f"{MIN_SAMPLE_RATE} and {MAX_SAMPLE_RATE} (e.g. 16000, 44100, 48000).")
    return int(rate)


def resample_to_16k(mono: np.ndarray, rate: int) -> np.ndarray:
    """``librosa.resample(res_type="soxr_hq")``: soxr HQ, then zero-pad/trim to ceil(n * 16000 / rate)."""
    if rate == SAMPLE_RATE:
        return mono
    import soxr

    out = soxr.resample(mono, rate, SAMPLE_RATE, quality="soxr_hq")
    size = int(np.ceil(mono.shape[-1] * float(SAMPLE_RATE) / rate))
    if out.shape[-1] > size:
        out = out[:size]
    elif out.shape[-1] < size:
        out = np.pad(out, (0, size - out.shape[-1]))
    return np.ascontiguousarray(out, dtype=np.float32)


def check_fps(fps: Any) -> float:
    try:
        value = float(fps)
    except (TypeError, ValueError):
        raise InputError(f"fps: expected a number of video frames per second, got {fps!r}.") from None
    if not math.isfinite(value) or value <= 0 or value > MAX_FPS:
        raise InputError(f"fps: {fps!r} is not a usable frame rate; expected 0 < fps <= {MAX_FPS:g} (e.g. 25, 29.97). "
                         "Wire the fps output of your video loader (GetVideoComponents) into this input.")
    return value


def frame_count(num_samples_16k: int, fps: float) -> int:
    """floor(duration * fps), computed as the reference does (duration = samples / 16000)."""
    return int(math.floor((num_samples_16k / SAMPLE_RATE) * fps))


def num_segments(audio: Any, audio_segments: str = "reference") -> int:
    """How many 30 s encoder calls an AUDIO needs (for progress bars); 1 when the input is unusable."""
    try:
        seconds = audio["waveform"].shape[-1] / float(audio["sample_rate"])
    except Exception:  # noqa: BLE001 - validation happens in encode_audio
        return 1
    if audio_segments == "overlapping":  # segments every 20 s (overlap.py)
        from .overlap import HOP_ROWS, SEGMENT_ROWS

        return 1 + max(0, math.ceil((seconds - SEGMENT_ROWS / WHISPER_FPS) / (HOP_ROWS / WHISPER_FPS)))
    return max(1, math.ceil(seconds / 30.0))
