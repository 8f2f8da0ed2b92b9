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

Mono is the channel mean, resampling to 16 kHz is soxr "HQ" with librosa's output length, as ``librosa.load``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from ..errors import InputError
from ..hooks import NO_HOOKS, RunHooks
from ..types import MuseTalkAudio, MuseTalkModels

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
WHISPER_FPS = 50  # encoder frames per second (one per 20 ms)
SAMPLES_PER_WHISPER_FRAME = SAMPLE_RATE // WHISPER_FPS  # 320
SEGMENT_SAMPLES = 30 * SAMPLE_RATE  # 480 000: one encoder call
MEL_FRAMES = 3000
HOP = 160
N_FFT = 400
FEATURE_MODES = ("reference", "v1.0-original")
MIN_SAMPLE_RATE = 1000
MAX_SAMPLE_RATE = 768000
MAX_FPS = 1000.0
SEGMENT_BATCH = 4  # 30 s segments per encoder call (bounded memory for long audio)
GATHER_CHUNK = 512  # output frames gathered at a time


# ----------------------------------------------------------------------------------------------------- input


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
    try:
        rate = float(audio["sample_rate"])
    except (TypeError, ValueError):
        raise InputError(f"audio: 'sample_rate' must be a number, got {audio['sample_rate']!r}.") from None
    if not math.isfinite(rate) or rate != int(rate) or not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise InputError(f"audio: sample rate {audio['sample_rate']!r} Hz is not usable; expected a whole number of "
                         f"Hz between {MIN_SAMPLE_RATE} and {MAX_SAMPLE_RATE} (e.g. 16000, 44100, 48000).")
    rate = int(rate)
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


def num_segments(audio: Any) -> int:
    """How many 30 s encoder calls an AUDIO needs (for progress bars); 1 when the input is unusable."""
    try:
        wave = audio["waveform"]
        return max(1, math.ceil(wave.shape[-1] / float(audio["sample_rate"]) / 30.0))
    except Exception:  # noqa: BLE001 - validation happens in encode_audio
        return 1


# ---------------------------------------------------------------------------------------------- windows


def reference_window_rows(num_frames: int, fps: float, pad_left: int, pad_right: int, length: int) -> torch.Tensor:
    """int64 (T, L) Whisper-frame index per window slot (HEAD get_whisper_chunk), -1 where the reference reads zeros.

    HEAD: m = 50/fps, p = ceil(m), features zero-padded by p*left in front, frame i reads padded[floor(i*m) :
    floor(i*m) + L]. In unpadded indices that is floor(i*m) - p*left + k. Exact fps here (HEAD uses int(fps)).
    """
    m = WHISPER_FPS / fps
    window = 2 * (pad_left + pad_right + 1)
    starts = np.floor(np.arange(num_frames, dtype=np.float64) * m).astype(np.int64) - math.ceil(m) * pad_left
    rows = starts[:, None] + np.arange(window, dtype=np.int64)[None, :]
    rows[(rows < 0) | (rows >= length)] = -1
    return torch.from_numpy(rows)


def original_window_rows(num_frames: int, fps: float, pad_left: int, pad_right: int, length: int) -> torch.Tensor:
    """int64 (T, L) rows of v1.0 ``get_sliced_feature``: centre int(i*50/fps), rows centre-2*left ..
    centre+2*(right+1)-1, each clamped to [0, length-1]."""
    centres = np.array([int(i * 50 / fps) for i in range(num_frames)], dtype=np.int64)
    offsets = np.arange(-2 * pad_left, 2 * (pad_right + 1), dtype=np.int64)
    return torch.from_numpy(np.clip(centres[:, None] + offsets[None, :], 0, max(length - 1, 0)))


def silence_flags(mono: np.ndarray, rows: torch.Tensor, threshold_db: float) -> tuple:
    """Per frame: RMS level (dBFS, 0 dB = a full-scale square wave) of the audio its window covers, and level <
    threshold. A window's audio is the 20 ms spans of its valid Whisper rows (zero/outside rows add nothing)."""
    n = mono.shape[0]
    energy = _energy_at_row_edges(mono)
    r = rows.numpy()
    valid = r >= 0
    lo = np.where(valid, r, np.iinfo(np.int64).max).min(axis=1)
    hi = np.where(valid, r, -1).max(axis=1) + 1
    lo_s = np.clip(lo * SAMPLES_PER_WHISPER_FRAME, 0, n)
    hi_s = np.clip(hi * SAMPLES_PER_WHISPER_FRAME, 0, n)
    count = np.maximum(hi_s - lo_s, 0)
    edge = lambda sample: -(-sample // SAMPLES_PER_WHISPER_FRAME)  # noqa: E731 - row edge k*320, or n at the end
    total = np.where(count > 0, energy[edge(np.maximum(hi_s, lo_s))] - energy[edge(lo_s)], 0.0)
    mean = np.where(count > 0, total / np.maximum(count, 1), 0.0)
    level = 10.0 * np.log10(np.maximum(mean, 1e-20))
    return torch.from_numpy(level < threshold_db), torch.from_numpy(level.astype(np.float32))


ENERGY_CHUNK = 320 * 4096  # samples squared and summed at a time (float64): 10 MB, not 230 MB for 10 minutes


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


# ------------------------------------------------------------------------------------------ mel features

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
            from ..weights.checkpoints import read_json

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


# ------------------------------------------------------------------------------------------------- encode


def _reference_blocks(models, encoder, mono, hooks):
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


def _original_blocks(models, encoder, mono, hooks):
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


def encode_audio(models: MuseTalkModels, audio: Any, fps: float, audio_padding_left: int = 2,
                 audio_padding_right: int = 2, feature_mode: str = "reference", silence_threshold_db: float = -45.0,
                 hooks: Optional[RunHooks] = None, store=None) -> MuseTalkAudio:
    """AUDIO -> MuseTalkAudio with (T, 50, 384) windows (T = floor(duration * fps)) and per-frame silence flags.

    ``store(shape, dtype)`` -> an array the windows are written to (e.g. spill.SpilledArray on disk: 77 KB per
    frame at fp32 would otherwise grow with the length of a long video)."""
    hooks = hooks or NO_HOOKS
    fps = check_fps(fps)
    if feature_mode not in FEATURE_MODES:
        raise InputError(f"feature_mode: '{feature_mode}' is unknown; choose one of {', '.join(FEATURE_MODES)}.")
    for name, value in (("audio_padding_left", audio_padding_left), ("audio_padding_right", audio_padding_right)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= int(value) <= 10:
            raise InputError(f"{name}: expected a whole number from 0 to 10 (the model was trained with 2), "
                             f"got {value!r}.")
    pad_left, pad_right = int(audio_padding_left), int(audio_padding_right)
    try:
        threshold = float(silence_threshold_db)
    except (TypeError, ValueError):
        raise InputError(f"silence_threshold_db: expected a level in dBFS (e.g. -45), got {silence_threshold_db!r}.")
    if not math.isfinite(threshold):
        raise InputError("silence_threshold_db: must be a finite level in dBFS (e.g. -45).")

    mono, source_rate, channels = audio_to_mono16k(audio)
    duration = mono.shape[0] / SAMPLE_RATE
    num_frames = frame_count(mono.shape[0], fps)
    if num_frames < 1:
        raise InputError(f"audio: {duration * 1000:.1f} ms of audio is shorter than one video frame at {fps:g} fps "
                         f"({1000 / fps:.1f} ms). Connect a longer clip.")
    if feature_mode == "v1.0-original" and mono.shape[0] <= N_FFT // 2:
        raise InputError(f"audio: {duration * 1000:.1f} ms is too short for the v1.0-original features "
                         f"(needs more than {N_FFT // 2} samples at 16 kHz, 12.5 ms).")

    with models.use("whisper") as (encoder,):
        if feature_mode == "reference":
            length, blocks = _reference_blocks(models, encoder, mono, hooks)
            rows = reference_window_rows(num_frames, fps, pad_left, pad_right, length)
        else:
            length, blocks = _original_blocks(models, encoder, mono, hooks)
            rows = original_window_rows(num_frames, fps, pad_left, pad_right, length)
        features = gather_windows(blocks, length, rows, models.dtype, store)
    silent, level = silence_flags(mono, rows, threshold)
    settings = {
        "audio_padding_left": pad_left, "audio_padding_right": pad_right, "silence_threshold_db": threshold,
        "source_sample_rate": source_rate, "source_channels": channels, "num_samples_16k": int(mono.shape[0]),
        "duration_s": duration, "window_rows": rows, "level_db": level,
    }
    return MuseTalkAudio(features=features, fps=fps, silent=silent, audio=audio, feature_mode=feature_mode,
                         version=models.version, settings=settings)
