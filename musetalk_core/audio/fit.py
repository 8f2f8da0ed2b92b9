"""Audio windows fitted to the output length a length-fit mode decides (frame_mapping.output_length).

The windows of output frame i never depend on T, so a shorter output takes the first T windows of the whole
audio's; a longer one (``silence``: the whole video over shorter audio) encodes the audio padded with digital
silence, so the frames past its end get the Whisper windows of silence the networks know (mouths at rest), not
zeros. The AUDIO passed on stays the one given: assembling the clip's audio pads or cuts it to T / fps.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, Mapping

import torch

from ..errors import InputError
from .clip import audio_to_mono16k, check_fps, frame_count


def audio_frames(audio: Any, fps: float) -> int:
    """floor(duration * fps) of an AUDIO, as encode_audio counts it (checks the AUDIO)."""
    mono, _rate, _channels = audio_to_mono16k(audio)
    return frame_count(mono.shape[0], check_fps(fps))


def padded_audio(audio: Mapping[str, Any], num_frames: int, fps: float) -> dict:
    """``audio`` with zeros appended to last at least ``num_frames`` frames (plus 10 ms against resampling)."""
    wave = audio["waveform"]
    rate = int(audio["sample_rate"])
    need = math.ceil(num_frames / float(fps) * rate) + rate // 100 - int(wave.shape[-1])
    if need <= 0:
        return dict(audio)
    return {**audio, "waveform": torch.cat([wave, wave.new_zeros(wave.shape[:-1] + (need,))], dim=-1)}


def encode_fitted(encode, audio: Mapping[str, Any], fps: float, num_frames: int, **settings: Any):
    """``encode(audio, fps, num_frames=T, **settings)`` (audio.windows.encode_audio bound to its models) for
    exactly T output frames: the audio padded with silence when it is shorter; the result carries the AUDIO as
    given and its own frame count in settings["audio_frames"]."""
    have = audio_frames(audio, fps)
    t = int(num_frames)
    if have < 1 or t < 1:  # the encoder's own message: audio shorter than one frame
        return encode(audio, fps, **settings)
    features = encode(audio if t <= have else padded_audio(audio, t, fps), fps, num_frames=t, **settings)
    silent = features.silent.clone()
    silent[have:] = True  # the audio has ended there, whatever the tail its window still hears
    return replace(features, audio=audio, silent=silent, settings={**features.settings, "audio_frames": have})


def fit_features(features, num_frames: int):
    """MUSETALK_AUDIO ``features`` fitted to T = ``num_frames`` output frames (the graph's generation nodes):
    itself when T is its length, its first T windows when shorter, re-encoded over the audio padded with silence
    when longer (by ``features.encoder``, the WhisperAudioEncode that made them)."""
    t, n = int(num_frames), int(features.num_frames)
    if t == n:
        return features
    if t < n and isinstance(features.features, torch.Tensor):
        settings = dict(features.settings)
        for key in ("window_rows", "level_db"):
            if isinstance(settings.get(key), torch.Tensor):
                settings[key] = settings[key][:t]
        settings.setdefault("audio_frames", n)
        return replace(features, features=features.features[:t], silent=features.silent[:t], settings=settings)
    if features.encoder is None or features.audio is None:
        raise InputError(f"'audio_features' hold {n} frames and the length-fit mode needs {t}, but they carry no "
                         "audio encoder to extend them; re-run WhisperAudioEncode.")
    fitted = encode_fitted(features.encoder, features.audio, features.fps, t)
    return replace(fitted, encoder=features.encoder)
