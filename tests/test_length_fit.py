"""Length-fit modes (frame_mapping.py, the one place): the output length and the source frame of every output
frame in each mode, and the whole run (core and graph) giving exactly that many frames and T / fps of audio."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from musetalk_core.audio.clip import SAMPLE_RATE
from musetalk_core.blend.audio_cut import audio_length
from musetalk_core.frame_mapping import output_length, source_indices
from musetalk_core.io.sources import TensorSource
from musetalk_core.options import LipsyncOptions
from musetalk_core.pipeline import lipsync_stream
from musetalk_core.weights.loading import load_models
from node_chain import lipsync
from musetalk_core.blend.blender import to_uint8
from test_faces import synthetic_video

FPS = 25.0
N = 6


def speech(frames: int) -> dict:
    n = int(frames / FPS * SAMPLE_RATE) + 40
    t = np.arange(n) / SAMPLE_RATE
    wave = 0.4 * np.sin(2 * np.pi * 220 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    return {"waveform": torch.from_numpy(wave.astype(np.float32))[None, None], "sample_rate": SAMPLE_RATE}


@pytest.mark.parametrize("mode, audio, t", [
    ("bounce", 4, 4), ("bounce", 9, 9), ("ping_pong", 9, 9), ("loop", 9, 9), ("once_hold", 9, 9),
    ("cut_off", 4, 4), ("cut_off", 9, 6), ("silence", 4, 6), ("silence", 9, 6), ("remap", 4, 4), ("remap", 9, 9)])
def test_output_length(mode, audio, t):
    assert output_length(audio, N, mode) == t


def test_source_frames_of_each_mode():
    assert source_indices(9, 4, "bounce").tolist() == [0, 1, 2, 3, 3, 2, 1, 0, 0]
    assert source_indices(9, 4, "ping_pong").tolist() == source_indices(9, 4, "bounce").tolist()
    assert source_indices(6, 4, "loop").tolist() == [0, 1, 2, 3, 0, 1]
    assert source_indices(3, 4, "cut_off").tolist() == [0, 1, 2]
    assert source_indices(4, 4, "silence").tolist() == [0, 1, 2, 3]
    # remap: the nearest source frame at the same relative time, exact in integers
    assert source_indices(10, 5, "remap").tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert source_indices(3, 7, "remap").tolist() == [1, 3, 5]
    assert source_indices(7, 7, "remap").tolist() == list(range(7))
    assert source_indices(4, 8, "remap", offset=1).tolist() == [3, 5, 7, 7]  # shifted, then held at the end


@pytest.fixture(scope="module")
def models(tiny_models_factory):
    return load_models([tiny_models_factory("v15")], "v15", precision="fp32", device="cpu")


def run_core(models, frames, audio, options):
    out = []
    result = lipsync_stream(models, TensorSource(torch.from_numpy(frames)), audio, FPS, options, out.append)
    return torch.cat(out), result


OPTIONS = LipsyncOptions(face_batch_size=3, vae_batch_size=3, batch_size=4, chunk_size=4)


@pytest.mark.parametrize("mode, audio_frames", [("cut_off", 9), ("silence", 4), ("remap", 4)])
def test_every_mode_gives_exact_frames_and_audio(models, mode, audio_frames):
    frames = synthetic_video(N)
    audio = speech(audio_frames)
    options = OPTIONS.updated(frame_mapping=mode)
    out, result = run_core(models, frames, audio, options)
    t = output_length(audio_frames, N, mode)
    assert out.shape[0] == result.frame_count == t
    assert result.audio["waveform"].shape[-1] == audio_length(t, FPS, SAMPLE_RATE)
    features = result.audio_features
    assert features.num_frames == t and features.settings["audio_frames"] == audio_frames
    if mode == "silence" and audio_frames < N:
        # the frames past the audio's end hear silence (the audio was padded, not the windows zeroed) ...
        assert features.silent[audio_frames:].all() and not features.silent[:audio_frames].any()
        assert features.features[audio_frames:].abs().sum() > 0
        # ... and the output audio is the given one, then silence
        wave = result.audio["waveform"][0, 0]
        given = audio["waveform"][0, 0]
        assert torch.equal(wave[:given.numel()], given) and not wave[given.numel():].any()
    if mode != "silence":
        return
    # the graph's nodes give the same frames (MuseTalkUNetInpaint fits the windows the same way)
    graph = lipsync(models, torch.from_numpy(frames), audio, FPS, options)
    assert torch.equal(to_uint8(graph.images), out)
    assert torch.equal(graph.audio["waveform"], result.audio["waveform"])


def test_cut_off_windows_are_the_whole_audios(models):
    """A shorter output takes the first T windows of the whole audio (not of the audio cut short)."""
    frames = synthetic_video(N)
    audio = speech(9)
    _, whole = run_core(models, frames, audio, OPTIONS)
    _, cut = run_core(models, frames, audio, OPTIONS.updated(frame_mapping="cut_off"))
    assert torch.equal(cut.audio_features.features[:], whole.audio_features.features[:N])
