"""Several speakers, each with its own audio (speakers.py, pipeline.speaker_materials), and speaker selection for
one audio: drawn heads found by a stand-in detector, real tiny networks for everything after it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.standins import heads_detector, heads_landmarks
from benchmarks.synthetic import make_multi_clip
from musetalk_core.errors import InputError
from musetalk_core.generators.musetalk import generate
from musetalk_core.io.sources import TensorSource
from musetalk_core.models import dwpose, s3fd
from musetalk_core.options import LipsyncOptions
from musetalk_core.pipeline import lipsync_stream
from musetalk_core.speakers import Speaker
from musetalk_core.weights.loading import load_models

N, FPS, SIZE = 20, 25.0, "144x256"
OPTIONS = LipsyncOptions(face_batch_size=4, vae_batch_size=4, batch_size=4, chunk_size=8)


@pytest.fixture(scope="module")
def clip():
    return make_multi_clip(N, heads=2, size=SIZE, fps=FPS, seed=3)


@pytest.fixture(scope="module")
def models(tiny_models_factory):
    return load_models([tiny_models_factory("v15")], "v15", precision="fp32", device="cpu")


@pytest.fixture(autouse=True)
def drawn_heads(monkeypatch, clip):
    monkeypatch.setattr(s3fd, "detect", heads_detector(clip))
    monkeypatch.setattr(dwpose, "predict_keypoints", heads_landmarks(clip))


@pytest.fixture
def generator_inputs(monkeypatch):
    """The audio windows each UNet batch run was given (per call of iter_generated)."""
    seen = []
    real = generate.iter_generated

    def spy(models, latents, audio_features, plan, *a, **k):
        seen.append(audio_features)
        return real(models, latents, audio_features, plan, *a, **k)

    monkeypatch.setattr(generate, "iter_generated", spy)
    return seen


def run(models, clip, options=OPTIONS, audio=None, speakers=None):
    out = []
    result = lipsync_stream(models, TensorSource(clip.frames), audio, FPS, options, out.append, speakers=speakers)
    return torch.cat(out), result


def inside(box, x, y) -> bool:
    return box[0] <= x <= box[2] and box[1] <= y <= box[3]


def changed_heads(clip, out, frames) -> np.ndarray:
    """(heads, frames) whether pixels inside each head's drawn box changed."""
    src = clip.frames.numpy().astype(int)
    got = out.numpy().astype(int)
    result = np.zeros((clip.num_heads, len(frames)), dtype=bool)
    for j in range(clip.num_heads):
        for k, i in enumerate(frames):
            if not clip.visible[j, i]:
                continue
            x1, y1, x2, y2 = (int(v) for v in clip.boxes[j, i])
            result[j, k] = (got[i, max(y1, 0):y2, max(x1, 0):x2] != src[i, max(y1, 0):y2, max(x1, 0):x2]).any()
    return result


def test_two_speakers_each_from_its_own_audio(models, clip, generator_inputs):
    speakers = [Speaker(clip.audios[0], "track 0"), Speaker(clip.audios[1], "track 1")]
    out, result = run(models, clip, speakers=speakers)
    assert out.shape[0] == result.frame_count == N
    assert [k for k, _, _ in result.speakers] == [0, 1]
    # each speaker's faces are its own head's (the crop box centre lies in that head's drawn box)
    for k, (_, _, faces) in enumerate(result.speakers):
        present = np.flatnonzero(faces.has_face.numpy())
        assert len(present) >= N - 2
        for i in present:
            b = faces.boxes[i].tolist()
            assert inside(clip.boxes[k, i], (b[0] + b[2]) / 2, (b[1] + b[3]) / 2)
    # the UNet heard speaker k's own audio for speaker k's faces
    assert [f is feats for f, (_, feats, _) in zip(generator_inputs, result.speakers)] == [True, True]
    own = [run_windows(models, a) for a in clip.audios]
    for (_, feats, _), windows in zip(result.speakers, own):
        assert torch.equal(feats.features[:], windows)
    assert not torch.equal(own[0], own[1])
    assert not torch.is_inference_mode_enabled()  # interleaved generator batches leave the caller's mode alone
    # both faces were lip-synced in the same frames; the audio is the two tracks mixed
    assert changed_heads(clip, out, range(N)).all(axis=0).sum() >= N - 2
    mixed = (clip.audios[0]["waveform"] + clip.audios[1]["waveform"]).clamp(-1, 1)
    n = result.audio["waveform"].shape[-1]
    assert n == round(N / FPS * 16000)
    assert torch.allclose(result.audio["waveform"][..., :mixed.shape[-1]], mixed[..., :n], atol=1e-6)


def run_windows(models, audio):
    from musetalk_core.audio.windows import encode_audio

    return encode_audio(models, audio, FPS).features[:]


def test_one_speaker_by_point_leaves_the_other_face_alone(models, clip):
    x1, y1, x2, y2 = clip.boxes[1, 4]
    out, result = run(models, clip, OPTIONS.updated(speaker_selection=f"point {(x1 + x2) / 2} {(y1 + y2) / 2} 4"),
                      audio=clip.audios[1])
    assert result.speakers[0][0] == 1
    changed = changed_heads(clip, out, range(N))
    assert not changed[0].any() and changed[1].sum() >= N - 2


def test_auto_picks_the_face_that_speaks_the_audio(models, clip):
    for head in (0, 1):
        _, result = run(models, clip, OPTIONS.updated(speaker_selection="auto", frame_mapping="cut_off"),
                        audio=clip.audios[head])
        assert result.speakers[0][0] == head


def test_default_one_speaker_is_untouched_by_tracking(models, clip, monkeypatch):
    from musetalk_core.faces import tracks

    monkeypatch.setattr(tracks, "detect_tracks", lambda *a, **k: pytest.fail("tracked"))
    out, result = run(models, clip, audio=clip.audios[0])
    assert result.tracks is None and result.speakers[0][0] is None


def test_bad_speaker_choices(models, clip):
    with pytest.raises(InputError, match="2 face track"):
        run(models, clip, OPTIONS.updated(speaker_selection="track 2"), audio=clip.audios[0])
    with pytest.raises(InputError, match="both chose face track 1"):
        run(models, clip, speakers=[Speaker(clip.audios[0], "track 1"), Speaker(clip.audios[1], "track 1")])
    with pytest.raises(InputError, match="not a speaker selection"):
        run(models, clip, OPTIONS.updated(speaker_selection="left one"), audio=clip.audios[0])


def test_command_line_and_split_batch_job_with_two_speakers(tiny_models_factory, clip, tmp_path, monkeypatch,
                                                             capsys):
    """--speaker AUDIO@SELECTION twice, and the same speakers on a batch job line split into segments: the same
    frames (both lossless), every frame of the video, both voices mixed into the output."""
    import dataclasses
    import json
    from fractions import Fraction

    from media import write_video, write_wav
    from musetalk_core import cli
    from musetalk_core.io import video_read

    video = write_video(tmp_path / "two.mp4", clip.frames.numpy(), Fraction(25))
    decoded = dataclasses.replace(clip, frames=video_read.read_video(video, with_audio=False).frames)
    monkeypatch.setattr(s3fd, "detect", heads_detector(decoded))  # the stand-ins know the decoded frames
    monkeypatch.setattr(dwpose, "predict_keypoints", heads_landmarks(decoded))
    for k, name in enumerate(("a.wav", "b.wav")):
        write_wav(tmp_path / name, clip.audios[k]["waveform"][0].numpy(), 16000)
    models = str(tiny_models_factory("v15"))
    flags = ["--crf", "0", "--chunk-size", "4", "--batch-size", "4", "--frame-mapping", "silence"]
    reference = tmp_path / "cli.mp4"
    code = cli.main(["lipsync", "--video", str(video), "--speaker", f"{tmp_path / 'a.wav'}@track 0", "--speaker",
                     f"{tmp_path / 'b.wav'}@track 1", "--output", str(reference), "--models-dir", models,
                     "--no-progress", *flags])
    assert code == 0, capsys.readouterr().err
    line = {"video": "two.mp4", "output": "out.mp4", "crf": 0, "chunk_size": 4, "batch_size": 4,
            "frame_mapping": "silence", "split_seconds": 0.32,
            "speakers": [{"audio": "a.wav", "select": "track 0"}, {"audio": "b.wav", "select": "track 1"}]}
    (tmp_path / "jobs.jsonl").write_text(json.dumps(line) + "\n")
    code = cli.main(["batch", str(tmp_path / "jobs.jsonl"), "--output-dir", str(tmp_path / "out"),
                     "--models-dir", models, "--no-progress"])
    assert code == 0, capsys.readouterr().err
    record = json.loads((tmp_path / "out" / "summary.jsonl").read_text().splitlines()[0])
    assert record["error"] is None and record["frames"] == N and record["segments"] == 3
    ours, ours_audio = (lambda d: (d.frames, d.audio))(video_read.read_video(tmp_path / "out" / "out.mp4"))
    ref = video_read.read_video(reference, with_audio=False).frames
    assert ours.shape[0] == N and torch.equal(ours, ref)
    changed = changed_heads(dataclasses.replace(decoded, frames=decoded.frames), ours, range(N))
    assert changed.all(axis=0).sum() >= N - 2  # both heads lip-synced
    assert video_read.probe(tmp_path / "out" / "out.mp4")["audio_seconds"] == pytest.approx(N / FPS, abs=2e-3)
    assert ours_audio["waveform"].abs().max() > 0.05


def test_speaker_file_and_bad_speaker_arguments(tmp_path):
    from musetalk_core.lipsync_args import speakers_file, split_speaker

    (tmp_path / "s.json").write_text('[{"audio": "a.wav", "select": "point 10 20 3"}, {"audio": "b.wav"}]')
    assert speakers_file(tmp_path / "s.json") == [(tmp_path / "a.wav", "point 10 20 3"), (tmp_path / "b.wav",
                                                                                         "default")]
    assert split_speaker("x/a.wav@track 1", 0) == (Path("x/a.wav"), "track 1")
    assert split_speaker("x/a.wav", 0) == (Path("x/a.wav"), "default")
    with pytest.raises(InputError, match="not a speaker selection"):
        split_speaker("a.wav@leftmost", 0)
    (tmp_path / "bad.json").write_text('[{"audio": "a.wav", "face": 1}]')
    with pytest.raises(InputError, match="unknown key"):
        speakers_file(tmp_path / "bad.json")


def test_graph_with_add_speaker_equals_the_core(models, clip):
    """Two speaker chains of the nodes (FaceDetectAndParse speaker_selection, WhisperAudioEncode, VAEEncodeMasked,
    MuseTalkUNetInpaint), AddSpeaker into BlendAndAssemble's more_speakers: the core's frames bit for bit."""
    from musetalk_core.blend.blender import to_uint8
    from nodes import NODE_CLASS_MAPPINGS as nodes

    chains = []
    for k in range(2):
        faces = nodes["FaceDetectAndParse"]().prepare(models, images=clip.images, batch_size=4,
                                                      speaker_selection=f"track {k}")[0]
        features = nodes["WhisperAudioEncode"]().encode(models, clip.audios[k], FPS, 2, 2, "reference", -45.0)[0]
        latents = nodes["VAEEncodeMasked"]().encode(models, faces, "sample", 0, 4)[0]
        generated = nodes["MuseTalkUNetInpaint"]().generate(models, latents, features, "bounce", 0, 4)[0]
        chains.append((faces, generated))
    more = nodes["AddSpeaker"]().add(*chains[1])[0]
    images, audio, fps, count = nodes["BlendAndAssemble"]().blend(images=clip.images, faces=chains[0][0],
                                                                   generated=chains[0][1], chunk_size=8,
                                                                   more_speakers=more)[:4]
    core, result = run(models, clip, speakers=[Speaker(a, f"track {k}") for k, a in enumerate(clip.audios)])
    assert count == N and torch.equal(to_uint8(images).cpu(), core)
    assert torch.equal(audio["waveform"], result.audio["waveform"])


def test_graph_refuses_speakers_of_other_lengths(models, clip):
    from nodes import NODE_CLASS_MAPPINGS as nodes

    faces = nodes["FaceDetectAndParse"]().prepare(models, images=clip.images, batch_size=4,
                                                  speaker_selection="track 0")[0]
    latents = nodes["VAEEncodeMasked"]().encode(models, faces, "sample", 0, 4)[0]
    short = {"waveform": clip.audios[1]["waveform"][..., :8000], "sample_rate": 16000}
    gens = [nodes["MuseTalkUNetInpaint"]().generate(
        models, latents, nodes["WhisperAudioEncode"]().encode(models, a, FPS, 2, 2, "reference", -45.0)[0],
        "bounce", 0, 4)[0] for a in (clip.audios[0], short)]
    with pytest.raises(InputError, match="silence' or 'cut_off"):
        nodes["BlendAndAssemble"]().blend(images=clip.images, faces=faces, generated=gens[0],
                                          more_speakers=nodes["AddSpeaker"]().add(faces, gens[1])[0])
    with pytest.raises(InputError, match="speaker_audio"):
        nodes["FaceDetectAndParse"]().prepare(models, images=clip.images, speaker_selection="auto")


@pytest.fixture(scope="module")
def latentsync_run(tmp_path_factory):
    """(shared networks, LatentSync generator) on the tiny UNet3D, as the command line loads them."""
    import tiny_latentsync as tl
    from tiny import write_models
    from musetalk_core.pipeline import load_run

    root = tmp_path_factory.mktemp("speaker_ls_models")
    write_models(root, "v15")
    folder = tl.write_latentsync_files(root)
    mp = pytest.MonkeyPatch()
    tl.use_tiny_versions(mp)
    yield load_run([folder], LATENTSYNC)
    mp.undo()


LATENTSYNC = LipsyncOptions(generator="latentsync15", precision="fp32", device="cpu", seed=1247,
                            feature_mode="v1.0-original", inference_steps=1, window_length=4, chunk_size=8,
                            face_batch_size=4)


def test_latentsync_speakers_each_equal_their_own_run(latentsync_run, clip):
    """With LatentSync each speaker's face region is what a run with that speaker alone makes: the speakers do not
    disturb each other (own audio, own noise draws, own paste)."""
    models, generator = latentsync_run

    def frames(audio=None, speakers=None, options=LATENTSYNC):
        out = []
        lipsync_stream(models, TensorSource(clip.frames), audio, FPS, options, out.append,
                       generator=generator.with_options(options), speakers=speakers)
        return torch.cat(out)

    both = frames(speakers=[Speaker(clip.audios[0], "track 0"), Speaker(clip.audios[1], "track 1")])
    for k in (0, 1):
        alone = frames(clip.audios[k], options=LATENTSYNC.updated(speaker_selection=f"track {k}"))
        for i in range(N):
            if not clip.visible[k, i]:
                continue
            x1, y1, x2, y2 = (int(v) for v in clip.boxes[k, i])
            region = (slice(i, i + 1), slice(max(y1, 0), y2), slice(max(x1, 0), x2))
            assert torch.equal(both[region], alone[region]), (k, i)
        assert changed_heads(clip, alone, range(N))[k].sum() >= N - 2


def test_a_silent_speaker_keeps_its_mouth_at_rest_with_silence_handling(models, clip):
    quiet = clip.audios[1]["waveform"].clone()
    quiet[..., :int(0.5 * N / FPS * 16000)] = 0.0  # speaker 2 says nothing in the first half
    speakers = [Speaker(clip.audios[0], "track 0"), Speaker({"waveform": quiet, "sample_rate": 16000}, "track 1")]
    out, result = run(models, clip, OPTIONS.updated(silence_handling=True, silence_fade_frames=1),
                      speakers=speakers)
    silent = result.speakers[1][1].silent.numpy()
    assert silent[:N // 2 - 3].all() and not silent[N // 2 + 3:].any()
    changed = changed_heads(clip, out, range(N))
    rest = np.flatnonzero(silent)
    rest = rest[(rest > 0) & (rest < rest.max())]  # not the cross-fade frames at its edge
    talking = [i for i in rest if not result.speakers[0][1].silent[i - 1:i + 2].any()]
    assert not changed[1][rest].any() and talking and changed[0][talking].all()  # the other one still talks
    assert changed[1][N // 2 + 3:].all()
