"""Audio files: reading any file's first audio stream as ComfyUI's AUDIO mapping, and writing a track into a video.

AUDIO is ``{"waveform": float32 (1, C, S), "sample_rate": int}``, so the command line hands the pipeline exactly
what LoadAudio would. Written audio is AAC (FLAC in .mkv: ``audio_codec``), at most two channels
(``audio_layout``), encoded once for the whole length and cut to exactly frames / fps (``mux_audio``).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any, Mapping, Optional, Tuple

import numpy as np
import torch

from ..errors import InputError
from .media_open import PathLike, check_readable, open_media

AUDIO_CHUNK = 1 << 16  # audio samples per frame handed to the AAC encoder (VideoWriter.finish)


def decode_audio(container, path: Path, what: str) -> Optional[dict]:
    """The first audio stream of an open container as an AUDIO mapping (float32 -1..1), None without one."""
    import av

    if not container.streams.audio:
        return None
    stream = container.streams.audio[0]
    chunks = []
    rate = None
    try:
        for frame in container.decode(stream):
            rate = rate or frame.sample_rate
            data = frame.to_ndarray()
            fmt = frame.format
            if not fmt.is_planar:  # packed: (1, S*C) -> (C, S)
                data = data.reshape(-1, len(frame.layout.channels)).T
            if data.dtype.kind in "iu":
                info = np.iinfo(data.dtype)
                data = data.astype(np.float32) / float(max(abs(info.min), info.max))
            chunks.append(data.astype(np.float32, copy=False))
    except av.error.FFmpegError as exc:
        raise InputError(f"{what} file '{path}': its audio stream could not be decoded ({exc}).") from None
    rate = rate or stream.sample_rate or stream.codec_context.sample_rate
    if not chunks:
        samples = np.zeros((max(1, stream.codec_context.channels or 1), 0), np.float32)
    else:
        samples = np.concatenate(chunks, axis=1)
    return {"waveform": torch.from_numpy(np.ascontiguousarray(samples)).unsqueeze(0), "sample_rate": int(rate)}


def read_audio(path: PathLike) -> dict:
    """The first audio stream of any file ffmpeg reads, as ComfyUI's AUDIO mapping (native sample rate)."""
    path = check_readable(path, "Audio")
    with open_media(path, "Audio") as container:
        audio = decode_audio(container, path, "Audio")
    if audio is None:
        raise InputError(f"Audio file '{path}' has no audio stream. Give a file with sound (wav, mp3, m4a, or a "
                         f"video with an audio track).")
    if audio["waveform"].shape[-1] == 0:
        raise InputError(f"Audio file '{path}' has an audio stream with no samples.")
    return audio


def check_audio_duration(audio: Mapping[str, Any], fps, name: str = "audio") -> None:
    """At least one video frame of sound (checked before any frame is decoded or model loaded)."""
    rate = int(audio["sample_rate"])
    samples = int(audio["waveform"].shape[-1])
    if rate <= 0 or samples * float(fps) < rate:
        ms = 1000.0 * samples / rate if rate > 0 else 0.0
        raise InputError(f"{name}: {ms:.1f} ms of audio is shorter than one video frame at {float(fps):g} fps "
                         f"({1000 / float(fps):.1f} ms). Give a longer audio clip.")


def audio_layout(audio: Optional[Mapping[str, Any]]) -> Tuple[Optional[int], int]:
    """(sample rate, channels written (1 or 2)) of an AUDIO mapping; (None, 0) without audio."""
    if audio is None:
        return None, 0
    waveform = audio["waveform"]
    channels = int(waveform.shape[-2]) if waveform.ndim >= 2 else 1
    if waveform.shape[-1] == 0 or channels == 0:
        return None, 0
    return int(audio["sample_rate"]), min(channels, 2)


def audio_codec(path: PathLike) -> str:
    """The audio codec written into ``path``: AAC, except FLAC in .mkv. AAC's last frame always holds 1024 samples
    and its encoder delay comes first: MP4 / MOV record the exact length in an edit list, Matroska keeps the whole
    last frame (0.448 s of sound for 0.400 s of video at 16 kHz) and declares the delay in its durations as well.
    FLAC has neither (a short last frame, no delay), so every container holds exactly frames / fps of audio."""
    return "flac" if Path(path).suffix.lower() == ".mkv" else "aac"


def _audio_samples(audio: Optional[Mapping[str, Any]], frames: int, rate: Fraction) -> Optional[np.ndarray]:
    """float32 (C <= 2, S) of the AUDIO mapping trimmed to ``frames / rate`` seconds, or None if empty. A view of
    the waveform where it is float32 on the CPU already (a 10-minute 48 kHz stereo track is 230 MB)."""
    if audio is None:
        return None
    waveform = audio["waveform"]
    sr = int(audio["sample_rate"])
    wav = waveform[0] if waveform.ndim == 3 else waveform
    wav = wav.detach().to(torch.float32).cpu().numpy()
    keep = int(round(float(frames / rate) * sr))
    samples = wav[:2, :keep]
    if samples.shape[0] == 0 or samples.shape[1] == 0:
        return None
    return samples


def mux_audio(container, astream, audio: Optional[Mapping[str, Any]], frames: int, rate: Fraction) -> None:
    """The whole track as ONE encode (AAC: one priming delay at the start, none anywhere else), trimmed to
    ``frames / rate`` seconds (the stream's codec: ``audio_codec``)."""
    import av

    samples = _audio_samples(audio, frames, rate)
    if samples is None:
        return
    layout = astream.layout.name
    # in pieces of AUDIO_CHUNK samples (the encoder re-cuts them into AAC frames: the same packets as one frame of
    # the whole track), so a long track is not copied whole once more
    for first in range(0, samples.shape[1], AUDIO_CHUNK):
        piece = np.ascontiguousarray(samples[:, first:first + AUDIO_CHUNK])
        if piece.shape[0] == 1 and layout == "stereo":
            piece = np.repeat(piece, 2, 0)
        aframe = av.AudioFrame.from_ndarray(piece[: (1 if layout == "mono" else 2)], format="fltp", layout=layout)
        aframe.sample_rate = astream.sample_rate
        aframe.pts = first
        container.mux(astream.encode(aframe))
    container.mux(astream.encode())
