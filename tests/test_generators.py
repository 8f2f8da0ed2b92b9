"""Both generators through the one pipeline core (musetalk_core.pipeline): LatentSync's core output equals its graph
(LatentSyncInpaint + BlendAndAssemble) bit for bit, a segment [a, b) equals those frames of the whole run (the
random draws of the windows before it are replayed), no face parsing for LatentSync, and LatentSync batch jobs."""

from __future__ import annotations

import json
from dataclasses import replace
from fractions import Fraction

import numpy as np
import pytest
import torch

import tiny_latentsync as tl
from media import face_frames, tone, write_video, write_wav
from musetalk_core.options import LipsyncOptions

FPS = 25.0
SECONDS = 0.4  # 10 output frames for 7 source frames: ping-pong 0..6, 6, 5, 4
OPTIONS = LipsyncOptions(generator="latentsync15", precision="fp32", device="cpu", seed=1247,
                         feature_mode="v1.0-original", inference_steps=1, chunk_size=3)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    from tiny import write_models

    root = tmp_path_factory.mktemp("gen_models")
    write_models(root, "v15")
    return tl.write_latentsync_files(root)


@pytest.fixture(scope="module")
def clip():
    frames = face_frames(7, 128, 112)
    frames[3] = 128  # a flat grey frame: no face (cut-away)
    audio = {"waveform": torch.from_numpy(tone(SECONDS, 16000, 1))[None], "sample_rate": 16000}
    return frames, audio


@pytest.fixture(scope="module")
def run(models_dir):
    """(shared networks, LatentSync generator) as the command line loads them (tiny UNet3D)."""
    mp = pytest.MonkeyPatch()
    tl.use_tiny_versions(mp)
    from musetalk_core.pipeline import load_run

    yield load_run([models_dir], OPTIONS)
    mp.undo()


def core_frames(run, frames, audio, options=OPTIONS):
    from musetalk_core.io.sources import TensorSource
    from musetalk_core.pipeline import lipsync_stream

    models, generator = run
    out = []
    result = lipsync_stream(models, TensorSource(torch.from_numpy(frames)), audio, FPS, options, out.append,
                            generator=generator.with_options(options))
    return torch.cat(out), result


def test_latentsync_runs_without_the_face_parser(run):
    models, generator = run
    assert "face_parser" not in models.networks and not generator.face_crops


def test_latentsync_core_equals_its_graph(pack, models_env, models_dir, run, clip, monkeypatch):
    """The command line's path (the core over a frame source) and the graph's nodes on an IMAGE give the same
    frames: the core only decides when things happen, not what they are."""
    from musetalk_core.blend.blender import to_uint8

    tl.use_tiny_versions(monkeypatch)
    models_env(models_dir)
    frames, audio = clip
    core, result = core_frames(run, frames, audio)
    assert core.shape == (10, 128, 112, 3) and result.frame_count == 10
    nodes = pack.NODE_CLASS_MAPPINGS
    images = torch.from_numpy(frames).float() / 255.0
    (mt,) = nodes["LoadMuseTalkModels"]().load("v15", "fp32", "cpu", "torch")
    faces, _, _ = nodes["FaceDetectAndParse"]().prepare(mt, images=images)
    features, _, _ = nodes["WhisperAudioEncode"]().encode(mt, audio, FPS, 2, 2, "v1.0-original", -45.0)
    (ls,) = nodes["LoadLatentSyncModel"]().load("latentsync15", "fp32", "cpu")
    generated, _ = nodes["LatentSyncInpaint"]().generate(ls, faces, features, inference_steps=1, images=images)
    graph = nodes["BlendAndAssemble"]().blend(images=images, faces=faces, generated=generated)[0]
    assert torch.equal(core, to_uint8(graph))
    assert not torch.equal(core[0], torch.from_numpy(frames[0]))  # a mouth was generated
    assert torch.equal(core[3], torch.from_numpy(frames[3]))      # the face-less frame passes through


@pytest.mark.parametrize("window_length", [16, 2])
def test_a_latentsync_segment_equals_those_frames_of_the_whole_run(run, clip, window_length):
    """render [a, b) after the windows before a: their random draws are made and dropped, so the windows
    overlapping the segment have the whole run's noise (window_length 2: several skipped windows)."""
    from musetalk_core.io.sources import TensorSource
    from musetalk_core.io.spill import SpillFolder
    from musetalk_core.pipeline import encode_features, frames_used, material_for, render, video_material

    models, generator = run
    options = replace(OPTIONS, window_length=window_length, chunk_size=3)
    generator = generator.with_options(options)
    frames, audio = clip
    source = TensorSource(torch.from_numpy(frames))
    spill = SpillFolder(None)
    try:
        features = encode_features(models, audio, FPS, options, spill, generator=generator)
        mapping, wanted = frames_used(features.num_frames, source.num_frames, options)
        faces, prepared = video_material(models, generator, source, options, wanted, spill)
        material = material_for(generator, features, mapping, faces, prepared)
        whole, parts = [], []
        render(generator, material, source, options, whole.append)
        for a, b in ((0, 6), (6, 9), (9, 10)):
            render(generator, material, source, options, parts.append, first=a, last=b)
    finally:
        spill.close()
    assert torch.equal(torch.cat(parts), torch.cat(whole))
    core, _ = core_frames(run, frames, audio, options)
    assert torch.equal(torch.cat(whole), core)


def test_latentsync_windows_made_ahead_give_the_same_frames(run, clip, monkeypatch):
    """LatentSync's windows made on render's worker thread (forced: "auto" makes them ahead on a CUDA GPU only)
    draw the same noise in the same order: the frames equal those made in turn."""
    import threading

    import musetalk_core.pipeline as pipeline
    from musetalk_core.generators.latentsync.generator import LatentSyncGenerator

    made_on = []
    batches = LatentSyncGenerator.batches

    def recorded(self, *args):
        for batch in batches(self, *args):
            made_on.append(threading.current_thread().name)
            yield batch

    monkeypatch.setattr(LatentSyncGenerator, "batches", recorded)
    frames, audio = clip
    options = replace(OPTIONS, window_length=4)
    out = {}
    for ahead in (False, True):
        monkeypatch.setattr(pipeline, "GENERATE_AHEAD", ahead)
        made_on.clear()
        out[ahead], _ = core_frames(run, frames, audio, options)
        assert set(made_on) == {"musetalk-generate" if ahead else threading.current_thread().name}
    assert out[True].shape[0] == 10 and torch.equal(out[True], out[False])
    assert run[1].device.type == "cpu"  # what "auto" reads


def test_latentsync_batch_job_split_in_segments_equals_the_lipsync_command(models_dir, tmp_path, monkeypatch,
                                                                         capsys):
    """A LatentSync job line runs in a batch, split into segments (lossless, so frames compare exactly)."""
    from musetalk_core import cli
    from musetalk_core.io import video_read

    tl.use_tiny_versions(monkeypatch)
    video = write_video(tmp_path / "in.mp4", face_frames(6, 64, 48), Fraction(25))
    audio = write_wav(tmp_path / "speech.wav", tone(0.44, 16000, 1), 16000)  # 11 output frames
    line = {"video": "in.mp4", "audio": "speech.wav", "output": "out.mp4", "generator": "latentsync15",
            "inference_steps": 1, "window_length": 4, "chunk_size": 4, "crf": 0, "split_seconds": 0.16}
    (tmp_path / "jobs.jsonl").write_text(json.dumps(line) + "\n")
    out = tmp_path / "out"
    code = cli.main(["batch", str(tmp_path / "jobs.jsonl"), "--output-dir", str(out), "--models-dir",
                     str(models_dir), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    record = json.loads((out / "summary.jsonl").read_text().splitlines()[0])
    assert record["error"] is None and record["frames"] == 11 and record["segments"] == 3
    reference = tmp_path / "cli.mp4"
    code = cli.main(["lipsync", "--video", str(video), "--audio", str(audio), "--output", str(reference),
                     "--models-dir", str(models_dir), "--generator", "latentsync15", "--inference-steps", "1",
                     "--window-length", "4", "--chunk-size", "4", "--crf", "0", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    batch_frames = video_read.read_video(out / "out.mp4", with_audio=False).frames
    cli_frames = video_read.read_video(reference, with_audio=False).frames
    assert batch_frames.shape[0] == 11 and torch.equal(batch_frames, cli_frames)
    source = video_read.read_video(video, with_audio=False).frames
    assert not torch.equal(batch_frames[0], source[0])  # generated, not passed through
    assert np.isfinite(batch_frames.float().numpy()).all()
