"""WhisperAudioEncode: loader, window positions at every fps, silence flags, bad input, node contract.

Golden comparisons against the reference live in test_audio_golden.py. Most tests here use a stub encoder whose
hidden state at Whisper frame j is the loudness of the audio at j (mean log-mel of its 2 mel frames) plus the
layer number, so where a sound lands in each frame's window is visible in the output values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
import torch

from musetalk_core.audio import silence, whisper_states
from musetalk_core.audio import windows as core
from musetalk_core.errors import InputError, WeightFileError
from musetalk_core.hooks import RunHooks
from musetalk_core.weights.loading import load_models
from musetalk_core.types import MuseTalkAudio, MuseTalkModels
from tiny.whisper import as_audio, seeded_signal, write

# ------------------------------------------------------------------------------------------------ helpers


class _AddConst(torch.nn.Module):
    def __init__(self, value):
        super().__init__()
        self.value = value

    def forward(self, h, *args, **kwargs):
        return (h + self.value,)


class StubEncoder(torch.nn.Module):
    """Encoder-shaped: stem = per-position loudness (max log-mel over bins of mel frames 2j, 2j+1); each layer
    adds 1; the "final norm" adds 100. Records batch sizes."""

    def __init__(self):
        super().__init__()
        self.layers = torch.nn.ModuleList([_AddConst(1.0) for _ in range(4)])
        self.batches = []

    def forward(self, mel):
        self.batches.append(mel.shape[0])
        loud = mel.amax(dim=1).reshape(mel.shape[0], 1500, 2).amax(dim=2)  # (B, 1500)
        h = loud[:, :, None].expand(-1, -1, 384).contiguous()
        for layer in self.layers:
            h = layer(h)[0]
        return (h + 100.0,)


def stub_models(version="v15", dtype=torch.float32):
    return MuseTalkModels(version=version, device=torch.device("cpu"), dtype=dtype, models_dir=Path("."),
                          networks={"whisper": StubEncoder()}, extras={})


class VHSAudio(Mapping):
    """VideoHelperSuite hands over a lazy Mapping, not a dict."""

    def __init__(self, d):
        self._d = d

    def __getitem__(self, k):
        return self._d[k]

    def __iter__(self):
        return iter(self._d)

    def __len__(self):
        return len(self._d)


def burst_audio(seconds, at, rate=16000, length=0.015):
    """Digital silence with one loud noise burst from ``at`` to ``at + length`` seconds."""
    n = int(round(seconds * rate))
    x = np.zeros((1, n), np.float32)
    a, b = int(round(at * rate)), int(round((at + length) * rate))
    x[0, a:b] = np.random.default_rng(0).uniform(-0.8, 0.8, b - a)
    return {"waveform": torch.from_numpy(x)[None], "sample_rate": rate}


# -------------------------------------------------------------------------------------------------- loader


@pytest.fixture(scope="module")
def tiny_whisper_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("whisper_models")
    write(folder, "v15")
    return folder


def test_loader_accepts_both_key_layouts_and_pickle(tiny_whisper_dir, tmp_path):
    """model.safetensors with "model.encoder.*" and pytorch_model.bin with WhisperModel's "encoder.*" load alike."""
    a = load_models([tiny_whisper_dir], networks=["whisper"], device="cpu").network("whisper")
    other = tmp_path / "m"
    write(other, "v15", pickle=True, prefix=False)
    (other / "whisper" / "model.safetensors").unlink(missing_ok=True)
    b = load_models([other], networks=["whisper"], device="cpu").network("whisper")
    sa, sb = a.state_dict(), b.state_dict()
    assert set(sa) == set(sb) and "layers.3.fc2.weight" in sa
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    # the weights really came from the file, not the constructor's init
    from tiny.whisper import seeded_whisper

    ref = seeded_whisper(7).model.encoder.state_dict()
    assert torch.equal(sa["conv1.weight"], ref["conv1.weight"])


def test_loader_rejects_missing_and_misshaped_encoder_keys(tiny_whisper_dir, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    src = tiny_whisper_dir / "whisper"
    for case in ("missing", "shape", "config"):
        folder = tmp_path / case / "whisper"
        shutil.copytree(src, folder)
        state = load_file(str(folder / "model.safetensors"))
        if case == "missing":
            del state["model.encoder.layers.2.fc1.weight"]
        elif case == "shape":
            state["model.encoder.conv1.weight"] = torch.zeros(384, 80, 5)
        else:
            import json

            cfg = json.loads((folder / "config.json").read_text())
            cfg["d_model"] = 256
            (folder / "config.json").write_text(json.dumps(cfg))
        save_file(state, str(folder / "model.safetensors"))
        with pytest.raises(WeightFileError) as err:
            load_models([folder.parent], networks=["whisper"], device="cpu")
        expected = {"missing": "layers.2.fc1.weight", "shape": "conv1.weight", "config": "d_model"}[case]
        assert expected in str(err.value)


def test_real_encoder_states_match_transformers_hidden_states(tiny_whisper_dir):
    """HEAD stacks hidden_states (last after the final LayerNorm); v1.0 takes layer 4 before it."""
    from transformers import WhisperModel

    from musetalk_core.models.whisper_encoder import encoder_states

    enc = load_models([tiny_whisper_dir], networks=["whisper"], device="cpu").network("whisper")
    hf = WhisperModel.from_pretrained(str(tiny_whisper_dir / "whisper")).encoder.eval()
    mel = torch.randn(1, 80, 3000, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = encoder_states(enc, mel)
        ours_v10 = encoder_states(enc, mel, final_norm=False)
        theirs = torch.stack(hf(mel, output_hidden_states=True).hidden_states, dim=2)
        pre_norm = hf.layers[3](theirs[:, :, 3], None)
        pre_norm = pre_norm[0] if isinstance(pre_norm, tuple) else pre_norm
    assert torch.allclose(ours, theirs, atol=1e-5)
    assert torch.allclose(ours_v10[:, :, :4], theirs[:, :, :4], atol=1e-5)
    assert torch.allclose(ours_v10[:, :, 4], pre_norm, atol=1e-5)
    assert not torch.allclose(ours_v10[:, :, 4], theirs[:, :, 4], atol=1e-2)


# ------------------------------------------------------------------------------------- frames and windows


@pytest.mark.parametrize("fps", [23.976, 24.0, 25.0, 29.97, 30.0, 60.0])
def test_frame_count_and_window_follow_exact_fps(fps):
    """T = floor(duration * fps); a burst at t0 shows up exactly in the frames whose window covers t0, and
    every frame's window covers its own time i/fps."""
    seconds, t0 = 37.3, 33.0125  # second segment, so both the seam and a late frame are exercised
    out = core.encode_audio(stub_models(), burst_audio(seconds, t0), fps)
    n16 = int(round(seconds * 16000))
    assert out.num_frames == math.floor(n16 / 16000 * fps)
    assert out.features.shape == (out.num_frames, 50, 384)

    m, p = 50.0 / fps, math.ceil(50.0 / fps)
    i = np.arange(out.num_frames)
    start = np.floor(i * m) - 2 * p  # first Whisper frame of the window (20 ms units)
    # every frame's 200 ms window contains its own timestamp
    assert np.all(start * 0.02 <= i / fps + 1e-9) and np.all(i / fps < (start + 10) * 0.02)

    feats = out.features.numpy()
    # 15 ms burst placed so only the STFT frames 3301-3303 (Whisper rows 1650, 1651) hear it
    loud_rows = np.nonzero((feats[:, 0::5, 0] > 0.5))  # stem tokens (layer 0) louder than silence
    seen = set(loud_rows[0].tolist())
    burst_rows = {1650, 1651}
    expected = {k for k in i if any(start[k] <= r < start[k] + 10 for r in burst_rows)}
    assert seen == expected and expected
    # the frames that hear the burst sit around t0 * fps (with int(fps) they would sit at t0 * int(fps))
    assert abs(np.mean(sorted(seen)) / fps - t0) < 0.1
    if fps == 29.97:
        assert min(seen) > 33.0 * 29.5


def test_token_order_layers_and_zero_padding():
    """Token 5*t + layer; zero frames before the audio (reference); clamped edge rows (v1.0-original)."""
    audio = as_audio(seeded_signal(3.0, 16000, 1, seed=3), 16000)
    ref = core.encode_audio(stub_models(), audio, 25.0).features
    base = ref[:, 0::5]
    for layer in range(1, 4):
        assert torch.allclose(ref[5:-5, layer::5] - base[5:-5], torch.full_like(base[5:-5], float(layer)), atol=1e-4)
    assert torch.allclose(ref[5:-5, 4::5] - base[5:-5], torch.full_like(base[5:-5], 104.0), atol=1e-4)
    assert torch.count_nonzero(ref[0, :20]) == 0 and torch.count_nonzero(ref[0, 20:]) > 0  # 4 zero frames
    assert torch.count_nonzero(ref[1, :10]) == 0 and torch.count_nonzero(ref[1, 10:]) > 0
    assert torch.equal(ref[3, 0:5], ref[1, 20:25])  # windows step 2 Whisper frames per video frame at 25 fps

    v10 = core.encode_audio(stub_models("v1"), audio, 25.0, feature_mode="v1.0-original").features
    assert torch.equal(v10[0, 0:5], v10[0, 20:25])  # rows -4..0 clamp to row 0
    assert torch.allclose(v10[0, 4::5] - v10[0, 0::5], torch.full((10, 384), 4.0), atol=1e-4)  # no final norm
    assert v10.shape[0] == ref.shape[0] == 75


def test_padding_changes_window_length_and_offset():
    audio = burst_audio(4.0, 2.0)
    out = core.encode_audio(stub_models(), audio, 25.0, audio_padding_left=1, audio_padding_right=3)
    assert out.features.shape == (100, 5 * 2 * (1 + 3 + 1), 384)
    rows = out.settings["window_rows"]
    assert rows[50, 0] == 100 - 2 and rows.shape[1] == 10  # start = 2i - p*left


def test_long_audio_encodes_in_bounded_batches():
    """10 minutes: segments go through the encoder a few at a time, the result is complete and in place."""
    seconds, t0 = 600.0, 571.33
    models = stub_models()
    calls = []
    hooks = RunHooks(advance=calls.append)
    out = core.encode_audio(models, burst_audio(seconds, t0), 25.0, hooks=hooks)
    enc = models.network("whisper")
    assert max(enc.batches) <= whisper_states.SEGMENT_BATCH and sum(enc.batches) == 20 and sum(calls) == 20
    assert out.num_frames == 15000
    loud = np.nonzero(out.features[:, 0::5, 0].numpy().max(axis=1) > 0.5)[0]
    assert loud.min() >= int(t0 * 25) - 3 and loud.max() <= int(t0 * 25) + 3


def _whole_table_gather(states, rows):
    """The straightforward way: all states in one table, a zero row last, index it."""
    table = torch.cat([states, torch.zeros_like(states[:1])])
    idx = rows.clone()
    idx[idx < 0] = table.shape[0] - 1
    return table[idx.reshape(-1)].reshape(rows.shape[0], rows.shape[1] * states.shape[1], states.shape[2])


def _blocks(states, sizes):
    pos = 0
    for size in sizes:
        yield pos, states[pos:pos + size].clone()
        pos += size


@pytest.mark.parametrize("fps", [1.0, 7.5, 23.976, 25.0, 60.0, 1000.0])
@pytest.mark.parametrize("block", [3, 1500, 4000, 6000])
@pytest.mark.parametrize("scheme", ["reference", "original"])
def test_blockwise_gather_equals_whole_table(fps, block, scheme):
    """Windows gathered while the states arrive block by block (only about a block held) equal indexing the
    whole track's states, for blocks smaller than a window, windows across block edges, frames past the end."""
    length = 6143  # 122.86 s of Whisper frames: five 30 s segments, the last one short
    states = torch.randn(length, 2, 3)
    num_frames = int(length / 50 * fps) + (2 if scheme == "reference" else 0)  # reference: frames past the end
    make = core.reference_window_rows if scheme == "reference" else core.original_window_rows
    rows = make(num_frames, fps, 2, 2, length)
    sizes = [block] * (length // block) + ([length % block] if length % block else [])
    ours = core.gather_windows(_blocks(states, sizes), length, rows, torch.float32)
    assert torch.equal(ours, _whole_table_gather(states, rows))


def test_v10_audio_too_short_for_one_whisper_row_reads_zero_windows():
    """300 samples at 60 fps: one video frame, one mel frame, no Whisper row in v1.0-original mode (its rows are
    clamped to row 0 of nothing): zero windows, as the whole-table way gave, not an error."""
    audio = as_audio(seeded_signal(300 / 16000, 16000, 1, seed=4), 16000)
    out = core.encode_audio(stub_models("v1"), audio, 60.0, feature_mode="v1.0-original")
    assert out.features.shape == (1, 50, 384) and torch.count_nonzero(out.features) == 0


def test_blockwise_gather_rejects_missing_or_out_of_order_states():
    rows = core.reference_window_rows(10, 25.0, 2, 2, 20)
    states = torch.randn(20, 2, 3)
    with pytest.raises(ValueError, match="ended at row 10 of 20"):
        core.gather_windows(_blocks(states, [10]), 20, rows, torch.float32)
    with pytest.raises(ValueError, match="starts at row 10, expected 5"):
        core.gather_windows(iter([(0, states[:5]), (10, states[10:])]), 20, rows, torch.float32)


# ------------------------------------------------------------------------------------------------ silence


def test_silence_flags_follow_window_energy():
    rate = 16000
    x = np.zeros((1, 4 * rate), np.float32)
    x[0, rate:2 * rate] = 0.5 * np.sin(np.arange(rate) * 2 * np.pi * 220 / rate)  # 1-2 s loud (-9 dBFS)
    x[0, 3 * rate:] = 0.001 * np.sin(np.arange(rate) * 2 * np.pi * 220 / rate)  # 3-4 s quiet (-63 dBFS)
    audio = {"waveform": torch.from_numpy(x)[None], "sample_rate": rate}
    out = core.encode_audio(stub_models(), audio, 25.0, silence_threshold_db=-45.0)
    silent = out.silent.numpy()
    assert silent.dtype == bool and silent.shape == (100,)
    assert silent[5:20].all() and not silent[30:45].any() and silent[55:70].all() and silent[80:95].all()
    level = out.settings["level_db"].numpy()
    assert abs(level[37] - 20 * np.log10(0.5 / np.sqrt(2))) < 0.1
    assert abs(level[88] - 20 * np.log10(0.001 / np.sqrt(2))) < 0.1
    quieter = core.encode_audio(stub_models(), audio, 25.0, silence_threshold_db=-80.0).silent.numpy()
    assert not quieter[80:95].any() and quieter[5:20].all()  # digital silence is below any threshold


def _levels_from_whole_cumsum(mono, rows):
    """The straightforward way: one float64 cumulative sum over the whole track, indexed at window edges."""
    energy = np.concatenate([[0.0], np.cumsum(mono.astype(np.float64) ** 2)])
    n, r = mono.shape[0], rows.numpy()
    valid = r >= 0
    lo = np.clip(np.where(valid, r, np.iinfo(np.int64).max).min(axis=1) * 320, 0, n)
    hi = np.clip((np.where(valid, r, -1).max(axis=1) + 1) * 320, 0, n)
    count = np.maximum(hi - lo, 0)
    total = np.where(count > 0, energy[np.maximum(hi, lo)] - energy[lo], 0.0)
    return 10.0 * np.log10(np.maximum(np.where(count > 0, total / np.maximum(count, 1), 0.0), 1e-20))


@pytest.mark.parametrize("chunk", [320 * 3, 320 * 4096])
@pytest.mark.parametrize("fps", [1.0, 25.0, 29.97])
def test_silence_levels_from_chunked_energy_are_exact(monkeypatch, chunk, fps):
    """The running energy summed chunk by chunk gives the levels of one whole-track sum bit for bit, with a track
    that does not end on a 20 ms edge and frames past its end."""
    monkeypatch.setattr(silence, "ENERGY_CHUNK", chunk)
    mono = (np.random.default_rng(5).standard_normal(16000 * 7 + 123) * 0.3).astype(np.float32)
    length = mono.shape[0] // 320
    for rows in (core.reference_window_rows(int(7 * fps) + 2, fps, 2, 2, length),
                 core.original_window_rows(int(7 * fps), fps, 2, 2, length)):
        _, level = core.silence_flags(mono, rows, -45.0)
        assert np.array_equal(level.numpy(), _levels_from_whole_cumsum(mono, rows).astype(np.float32))


# ---------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("bad, field", [
    ({"waveform": torch.zeros(1, 1, 0), "sample_rate": 16000}, "audio"),
    ({"waveform": torch.zeros(1, 1, 100), "sample_rate": 16000}, "shorter than one video frame"),
    ({"waveform": torch.full((1, 1, 16000), float("nan")), "sample_rate": 16000}, "NaN"),
    ({"waveform": torch.tensor([[[0.0] * 8000 + [float("inf")] * 8000]]), "sample_rate": 16000}, "NaN/inf"),
    ({"waveform": torch.zeros(2, 1, 16000), "sample_rate": 16000}, "batch"),
    ({"waveform": torch.zeros(1, 1, 16000), "sample_rate": 0}, "sample rate"),
    ({"waveform": torch.zeros(1, 1, 16000), "sample_rate": 10 ** 8}, "sample rate"),
    ({"waveform": torch.zeros(1, 1, 16000)}, "sample_rate"),
    ("speech.wav", "AUDIO"),
])
def test_bad_audio_is_a_clear_error(bad, field):
    with pytest.raises(InputError) as err:
        core.encode_audio(stub_models(), bad, 25.0)
    assert field in str(err.value) and "audio" in str(err.value)


@pytest.mark.parametrize("kwargs, name", [
    ({"fps": 0}, "fps"), ({"fps": -25}, "fps"), ({"fps": float("nan")}, "fps"),
    ({"fps": 25, "feature_mode": "v2"}, "feature_mode"), ({"fps": 25, "audio_padding_left": -1}, "audio_padding_left"),
    ({"fps": 25, "silence_threshold_db": float("nan")}, "silence_threshold_db"),
])
def test_bad_settings_name_the_input(kwargs, name):
    audio = as_audio(seeded_signal(1.0, 16000, 1), 16000)
    with pytest.raises(InputError) as err:
        core.encode_audio(stub_models(), audio, **kwargs)
    assert name in str(err.value)


# ---------------------------------------------------------------------------------------------------- node


def test_node_interface_and_run(pack):
    cls = pack.NODE_CLASS_MAPPINGS["WhisperAudioEncode"]
    spec = cls.INPUT_TYPES()["required"]
    assert list(spec) == ["musetalk_models", "audio", "fps", "audio_padding_left", "audio_padding_right",
                          "feature_mode", "silence_threshold_db"]
    assert spec["fps"][1]["default"] == 25.0 and spec["fps"][1]["min"] == 0.01 and spec["fps"][1]["max"] == 240
    assert spec["feature_mode"][0] == ["reference", "v1.0-original"]
    assert spec["silence_threshold_db"][1]["default"] == -45.0
    assert all("tooltip" in opts[1] for opts in spec.values())
    assert cls.RETURN_TYPES == ("MUSETALK_AUDIO", "INT", "AUDIO")
    assert cls.RETURN_NAMES == ("audio_features", "frame_count", "audio")

    stereo = as_audio(seeded_signal(2.0, 44100, 2, seed=5), 44100)
    audio = VHSAudio(stereo)
    result, count, passthrough = getattr(cls(), cls.FUNCTION)(stub_models(), audio, 29.97, 2, 2, "reference", -45.0)
    assert isinstance(result, MuseTalkAudio) and passthrough is audio
    assert count == result.num_frames == math.floor(2.0 * 29.97) and result.fps == 29.97
    assert result.features.shape == (count, 50, 384) and result.silent.shape == (count,)
    assert result.settings["source_channels"] == 2 and result.settings["source_sample_rate"] == 44100


def test_stereo_is_channel_mean_and_resampled_like_librosa():
    """Mono = mean of channels; 44.1 kHz -> 16 kHz with soxr HQ and librosa's output length."""
    import librosa

    sig = seeded_signal(1.3, 44100, 2, seed=9)
    mono, rate, channels = core.audio_to_mono16k(as_audio(sig, 44100))
    expect = librosa.resample(np.mean(sig.astype(np.float32) / 32768.0, axis=0), orig_sr=44100, target_sr=16000,
                              res_type="soxr_hq")
    assert (rate, channels) == (44100, 2) and mono.shape == expect.shape
    np.testing.assert_allclose(mono, expect, atol=1e-7)


def test_precision_follows_models_dtype(tiny_whisper_dir):
    models = load_models([tiny_whisper_dir], networks=["whisper"], device="cpu", precision="bf16")
    audio = as_audio(seeded_signal(2.0, 16000, 1, seed=2), 16000)
    out = core.encode_audio(models, audio, 25.0)
    ref = core.encode_audio(load_models([tiny_whisper_dir], networks=["whisper"], device="cpu", precision="fp32"),
                            audio, 25.0)
    assert out.features.dtype == torch.bfloat16 and ref.features.dtype == torch.float32
    assert (out.features.float() - ref.features).abs().max() < 0.25 * ref.features.abs().max()
