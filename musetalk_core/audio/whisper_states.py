"""Whisper hidden states of a mono 16 kHz track, block by block, for the two feature modes (see windows.py).

- "reference": transformers WhisperFeatureExtractor per 30 s segment (each normalised on its own), the encoder's 5
  hidden states, the last after the final LayerNorm;
- "v1.0-original": one log-mel over the whole file (global normalisation), 30 s encoder windows padded with 0 in the
  normalised log-mel, the states *before* the final LayerNorm.

Both yield (first row, (n, 5, 384) states) blocks of SEGMENT_BATCH encoder calls, so memory stays bounded for long
audio (windows.gather_windows consumes them as they come). ``overlapping_blocks`` does the same, in either mode, for
the overlapping segments of audio_segments "overlapping" (overlap.py).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..types import MuseTalkModels
from .clip import SAMPLE_RATE, WHISPER_FPS

SEGMENT_SAMPLES = 30 * SAMPLE_RATE  # 480 000: one encoder call
MEL_FRAMES = 3000
HOP = 160
N_FFT = 400
SEGMENT_BATCH = 4  # 30 s segments per encoder call (bounded memory for long audio)

_EXTRACTORS: dict = {}


def feature_extractor(models: MuseTalkModels):
    """transformers WhisperFeatureExtractor from whisper/preprocessor_config.json (cached per file)."""
    from transformers import WhisperFeatureExtractor

    path = None
    paths = models.extras.get("paths", {}) if models.extras else {}
    if paths.get("whisper_preprocessor"):
        path = Path(paths["whisper_preprocessor"])
    key = str(path)
    if key not in _EXTRACTORS:
        if path is None:
            _EXTRACTORS[key] = WhisperFeatureExtractor(feature_size=80, sampling_rate=SAMPLE_RATE)
        else:
            from ..models.checkpoints import read_json

            config = {k: v for k, v in read_json(path, "Whisper preprocessor config").items()
                      if k not in ("processor_class", "feature_extractor_type")}
            _EXTRACTORS[key] = WhisperFeatureExtractor(**config)
        if _EXTRACTORS[key].sampling_rate != SAMPLE_RATE or _EXTRACTORS[key].feature_size != 80:
            raise InputError(f"The Whisper preprocessor config {path} is not whisper-tiny's (16 kHz, 80 mel bins).")
    return _EXTRACTORS[key]


def segment_mels(extractor, mono: np.ndarray, first: int, count: int) -> torch.Tensor:
    """(count, 80, 3000) log-mel of 30 s segments first..first+count-1, each normalised on its own (HEAD)."""
    mels = []
    for s in range(first, first + count):
        segment = mono[s * SEGMENT_SAMPLES:(s + 1) * SEGMENT_SAMPLES]
        mels.append(extractor(segment, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features)
    return torch.cat(mels, dim=0)


def global_log_mel(extractor, mono: np.ndarray) -> torch.Tensor:
    """v1.0 OpenAI ``log_mel_spectrogram`` over the whole file: (80, n // 160), floor at the global max - 8."""
    audio = torch.from_numpy(mono)
    window = torch.hann_window(N_FFT)
    stft = torch.stft(audio, N_FFT, HOP, window=window, return_complex=True)
    magnitudes = stft[:, :-1].abs() ** 2
    filters = torch.from_numpy(np.asarray(extractor.mel_filters, dtype=np.float32).T.copy())
    log_spec = torch.clamp(filters @ magnitudes, min=1e-10).log10()
    log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
    return (log_spec + 4.0) / 4.0


def reference_blocks(models, encoder, mono, hooks):
    """Whisper frame count floor(duration*50), and an iterator of (first row, states) blocks: the 5 hidden states
    of SEGMENT_BATCH 30 s segments at a time, trimmed to that count (HEAD ``AudioProcessor``)."""
    extractor = feature_extractor(models)
    actual = int(math.floor((mono.shape[0] / SAMPLE_RATE) * WHISPER_FPS))
    segments = max(1, math.ceil(mono.shape[0] / SEGMENT_SAMPLES))
    from ..models.whisper_encoder import encoder_states

    def blocks():
        for first in range(0, segments, SEGMENT_BATCH):
            count = min(SEGMENT_BATCH, segments - first)
            mel = segment_mels(extractor, mono, first, count).to(models.device, models.dtype)
            hidden = encoder_states(encoder, mel, final_norm=True)  # (count, 1500, 5, 384)
            del mel
            begin = first * 1500
            keep = max(0, min(count * 1500, actual - begin))
            hooks.step(count)
            yield begin, hidden.reshape(count * 1500, 5, 384)[:keep]

    return actual, blocks()


def original_blocks(models, encoder, mono, hooks):
    """Like v1.0 Audio2Feature.audio2feat: global mel, 3000-frame windows padded with 0, layer 4 before ln_post,
    each window truncated to int((end - start) / 2) rows. Returns the row count and the (first row, states)
    blocks."""
    from ..models.whisper_encoder import encoder_states

    mel = global_log_mel(feature_extractor(models), mono)
    total = mel.shape[-1]
    seeks = list(range(0, total, MEL_FRAMES))
    keeps = [int((min(s + MEL_FRAMES, total) - s) / 2) for s in seeks]

    def blocks():
        pos = 0
        for b in range(0, len(seeks), SEGMENT_BATCH):
            batch = seeks[b:b + SEGMENT_BATCH]
            windows = []
            for s in batch:
                window = mel[:, s:s + MEL_FRAMES]
                if window.shape[-1] < MEL_FRAMES:
                    window = torch.nn.functional.pad(window, (0, MEL_FRAMES - window.shape[-1]))
                windows.append(window)
            hidden = encoder_states(encoder, torch.stack(windows).to(models.device, models.dtype),
                                    final_norm=False)
            block = torch.cat([hidden[j, :keeps[b + j]] for j in range(len(batch))])
            del hidden
            hooks.step(len(batch))
            yield pos, block
            pos += block.shape[0]

    return sum(keeps), blocks()


def segment_mel_at(extractor, mono: np.ndarray, first_row: int) -> torch.Tensor:
    """(1, 80, 3000) log-mel of the 30 s from Whisper row ``first_row``, normalised on its own like segment_mels."""
    start = first_row * 2 * HOP  # a Whisper row is 2 mel frames
    return extractor(mono[start:start + SEGMENT_SAMPLES], sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features


def overlapping_blocks(models, encoder, mono, hooks, feature_mode: str, plan):
    """(first row, states) blocks of the overlapping segments of ``plan`` (overlap.SegmentPlan) laid end to end,
    each segment trimmed to its rows: per-segment mels ("reference") or 30 s windows of the global mel
    ("v1.0-original"), SEGMENT_BATCH segments per encoder call. A generator: nothing runs before the first block."""
    from ..models.whisper_encoder import encoder_states

    reference = feature_mode == "reference"
    extractor = feature_extractor(models)
    mel = None if reference else global_log_mel(extractor, mono)  # v1.0: computed again here (cheap next to encoding)
    pos = 0
    for first in range(0, len(plan.starts), SEGMENT_BATCH):
        batch = range(first, min(first + SEGMENT_BATCH, len(plan.starts)))
        if reference:
            mels = torch.cat([segment_mel_at(extractor, mono, int(plan.starts[s])) for s in batch])
        else:
            windows = [mel[:, 2 * int(plan.starts[s]):2 * int(plan.starts[s]) + MEL_FRAMES] for s in batch]
            mels = torch.stack([torch.nn.functional.pad(w, (0, MEL_FRAMES - w.shape[-1])) for w in windows])
        hidden = encoder_states(encoder, mels.to(models.device, models.dtype), final_norm=reference)
        del mels
        block = torch.cat([hidden[j, :int(plan.ends[s] - plan.starts[s])] for j, s in enumerate(batch)])
        del hidden
        hooks.step(len(batch))
        yield pos, block
        pos += block.shape[0]
