"""A lip-sync run from a prepared avatar (realtime/avatar_lipsync.py, ``lipsync --avatar``): the same frames and
file as the run from its video with its settings, its settings fixed or defaulted as documented, and bad
combinations refused before any network is loaded."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from media import tone, write_wav
from musetalk_core.batch.jobs import BadJob, read_jobs
from musetalk_core.errors import InputError
from musetalk_core.io import video_read
from musetalk_core.io.sources import VideoFileSource
from musetalk_core.pipeline import lipsync_stream
from musetalk_core.realtime.avatar_lipsync import (RUN_NETWORKS, avatar_material, avatar_options, find_avatar,
                                                   load_avatar_networks)
# the avatar of test_avatar: 7 frames, frame 3 face-less, non-default faces and blend settings
from test_avatar import CLI_FLAGS, N, OPTIONS, faceless_frames, models, models_dir, prepared, run, video  # noqa: F401


@pytest.fixture(scope="module")
def avatar(prepared):
    return prepared[0]


def frames_of(models, source, audio, options, generator=None, prepared_video=None):
    out = []
    result = lipsync_stream(models, source, audio, 25.0, options, out.append, generator=generator,
                            prepared_video=prepared_video)
    return np.concatenate([np.asarray(chunk) for chunk in out]), result


@pytest.mark.parametrize("seconds", [0.16, 0.68])  # T = 4 (< N: some frames unused), T = 17 (bounces back)
def test_core_from_avatar_equals_core_from_video(models, avatar, video, seconds):
    from musetalk_core.generators.musetalk.generator import MuseTalkGenerator

    audio = {"waveform": torch.from_numpy(tone(seconds))[None], "sample_rate": 16000}
    options = avatar_options(avatar, {})
    # the avatar's settings (its latents' precision), default batch sizes
    assert options == OPTIONS.updated(face_batch_size=8, vae_batch_size=8, precision="fp32")
    source = VideoFileSource(video[0])
    try:
        expected, _ = frames_of(models, source, audio, OPTIONS)
    finally:
        source.close()
    faces, latents = avatar_material(avatar, models)
    got, result = frames_of(models, avatar.source(), audio, options, MuseTalkGenerator(models, options),
                            (faces, latents))
    assert got.shape == expected.shape == (round(seconds * 25),) + video[1].shape[1:]
    assert np.array_equal(got, expected)
    assert result.frame_count == got.shape[0]
    # output frames 0 and 3 show source frames 0 and 3: lip-synced where a face is, as it is where none is
    assert not np.array_equal(got[0], video[1][0]) and np.array_equal(got[3], video[1][3])


def test_command_line_avatar_equals_video(avatar, video, models_dir, tmp_path, capsys):
    """The same file: lipsync --video with the avatar's flags, and lipsync --avatar with none of them."""
    wav = write_wav(tmp_path / "speech.wav", tone(0.52))
    common = ["--audio", str(wav), "--models-dir", str(models_dir), "--no-progress", "--crf", "0"]
    code, _, err = run(["lipsync", "--video", str(video[0]), "-o", str(tmp_path / "v.mkv"), *common, *CLI_FLAGS],
                       capsys)
    assert code == 0, err
    code, out, err = run(["lipsync", "--avatar", "anna", "--avatars-dir", str(avatar.folder.parent),
                          "-o", str(tmp_path / "a.mkv"), *common], capsys)
    assert code == 0, err
    assert "Wrote" in out and "13 frames at 25.000 fps" in out
    a = video_read.read_video(tmp_path / "a.mkv")
    v = video_read.read_video(tmp_path / "v.mkv")
    assert a.fps == v.fps == 25 and np.array_equal(a.frames.numpy(), v.frames.numpy())
    assert torch.equal(a.audio["waveform"], v.audio["waveform"])
    # the avatar's folder works as well as its name
    code, _, err = run(["lipsync", "--avatar", str(avatar.folder), "-o", str(tmp_path / "b.mkv"), *common], capsys)
    assert code == 0, err
    assert np.array_equal(video_read.read_video(tmp_path / "b.mkv").frames.numpy(), v.frames.numpy())


def test_settings_fixed_and_defaulted(avatar):
    options = avatar_options(avatar, {"box_smoothing": 0.4, "blur_factor": 0.3, "batch_size": 3,
                                      "face_batch_size": 5})  # same value; a run's own; ignored batch size
    assert (options.box_smoothing, options.blur_factor, options.upper_boundary_ratio) == (0.4, 0.3, 0.45)
    assert options.batch_size == 3
    changed = r"bbox_shift 5 \(the avatar's: 0\), box_smoothing 0\.2 \(the avatar's: 0\.4\)"
    with pytest.raises(InputError, match=changed):
        avatar_options(avatar, {"box_smoothing": 0.2, "bbox_shift": 5})
    with pytest.raises(InputError, match="version 'v1'"):
        avatar_options(avatar, {"version": "v1"})
    with pytest.raises(InputError, match="generator 'latentsync15'"):
        avatar_options(avatar, {"generator": "latentsync15"})
    with pytest.raises(InputError, match="holds one face"):
        avatar_options(avatar, {"speaker_selection": "track 0"})


def test_what_the_material_depends_on(avatar):
    """landmark_backend and the parsing mode are the avatar's (parsing 'jaw' is what 'auto' made for v15); the
    precision is its latents', also when avatar.json records none (the SaveMuseTalkAvatar node) or 'auto'."""
    from dataclasses import replace

    assert avatar_options(avatar, {"landmark_backend": "torch", "parsing_mode": "jaw"}).parsing_mode == "jaw"
    with pytest.raises(InputError, match="landmark_backend 'mmpose'"):
        avatar_options(avatar, {"landmark_backend": "mmpose"})
    with pytest.raises(InputError, match="parsing_mode 'raw'"):
        avatar_options(avatar, {"parsing_mode": "raw"})
    unrecorded = replace(avatar, settings={k: v for k, v in avatar.settings.items() if k != "precision"})
    assert avatar.settings["precision"] == "auto"
    assert avatar_options(unrecorded, {}).precision == "fp32" == avatar_options(avatar, {}).precision
    assert avatar_options(avatar, {"precision": "bf16"}).precision == "bf16"  # the run's choice (with a warning)


def test_names_and_folders(avatar, tmp_path, monkeypatch):
    root = avatar.folder.parent
    monkeypatch.chdir(tmp_path)
    (tmp_path / "anna").mkdir()  # a plain folder of the same name where the command runs: the name still wins
    assert find_avatar("anna", root, []) == root / "anna"
    assert find_avatar(str(avatar.folder), None, []) == avatar.folder
    with pytest.raises(InputError, match="at most 100"):
        find_avatar("a" * 300, root, [])
    with pytest.raises(InputError, match="not an avatar folder"):
        find_avatar(str(tmp_path / ("b" * 300) / "c"), root, [])


def test_only_the_networks_a_session_uses_are_loaded(models_dir):
    loaded = load_avatar_networks([models_dir], OPTIONS.updated(precision="fp32", device="cpu"))
    assert set(loaded.networks) == set(RUN_NETWORKS)


@pytest.mark.parametrize("extra, match", [
    (["--avatar", "nobody"], "Avatar 'nobody' was not found"),
    (["--avatar", "some/folder"], "is not an avatar folder (no avatar.json there)"),
    (["--avatar", "anna", "--bbox-shift", "7"], "bbox_shift 7"),
    (["--avatar", "anna", "--fps", "30"], "--fps applies to --image only; an avatar"),
    (["--avatar", "anna", "--generator", "latentsync15"], "is MuseTalk material"),
    (["--video", "x.mp4", "--avatar", "anna"], "not allowed with argument"),
    (["--video", "x.mp4"], "--avatars-dir applies to --avatar only"),
])
def test_bad_combinations_exit_2_before_loading_models(avatar, extra, match, tmp_path, capsys):
    wav = write_wav(tmp_path / "speech.wav", tone(0.2))
    argv = ["lipsync", *extra, "--avatars-dir", str(avatar.folder.parent), "--audio", str(wav),
            "-o", str(tmp_path / "o.mp4"), "--models-dir", str(tmp_path / "no_models"), "--no-progress"]
    code, _, err = run(argv, capsys)
    assert code == 2 and match in err, err
    assert "no_models" not in err  # refused before the models were looked for


def test_several_speakers_refused(avatar, tmp_path, capsys):
    wav = write_wav(tmp_path / "speech.wav", tone(0.2))
    code, _, err = run(["lipsync", "--avatar", "anna", "--avatars-dir", str(avatar.folder.parent), "--speaker",
                        f"{wav}@track 0", "-o", str(tmp_path / "o.mp4"), "--models-dir", str(tmp_path / "none")],
                       capsys)
    assert code == 2 and "one --audio" in err, err


def test_batch_line_with_avatar_is_a_bad_job(tmp_path):
    wav = write_wav(tmp_path / "speech.wav", tone(0.2))
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(json.dumps({"avatar": "anna", "audio": wav.name, "output": "o.mp4"}) + "\n")
    (job,) = read_jobs(jobs, tmp_path / "out")
    assert isinstance(job, BadJob) and "'avatar' and 'avatars_dir' are for python -m musetalk_core lipsync" in job.error


# ---------------------------------------------------------------------------------------------------- graph node

def test_load_avatar_node_gives_the_graph_of_its_video(pack, models, avatar, video, monkeypatch):
    """WhisperAudioEncode -> MuseTalkUNetInpaint -> BlendAndAssemble on LoadMuseTalkAvatar's outputs writes the
    video the same graph writes with FaceDetectAndParse and VAEEncodeMasked on the avatar's own video."""
    from nodes.video_types import FileVideo
    from test_avatar import FACE_ARGS

    nodes = pack.NODE_CLASS_MAPPINGS
    monkeypatch.setattr(pack.nodes.comfy_bridge, "avatars_directory", lambda: avatar.folder.parent)
    monkeypatch.setattr(pack.nodes.comfy_bridge, "show_text", lambda text: True)
    audio = {"waveform": torch.from_numpy(tone(0.6))[None], "sample_rate": 16000}

    def graph(faces, latents, clip, fps, blur, ratio):
        features = nodes["WhisperAudioEncode"]().encode(models, audio, fps, 2, 2, "reference", -45.0)[0]
        generated = nodes["MuseTalkUNetInpaint"]().generate(models, latents, features, "bounce", 0, 4)[0]
        out = nodes["BlendAndAssemble"]().blend(faces=faces, generated=generated, blur_factor=blur,
                                                upper_boundary_ratio=ratio, video=clip)
        assert out[3] == 15 and out[4].get_components().images.shape[0] == 15
        # the blended frames themselves (a VIDEO input: a sample of at most 16, here every frame): libx264's
        # threads do not give the same bytes twice, so the written files are not compared pixel for pixel
        return out[0]

    clip = FileVideo(video[0])
    faces, _, _ = nodes["FaceDetectAndParse"]().prepare(models, video=clip, **FACE_ARGS)
    (latents,) = nodes["VAEEncodeMasked"]().encode(models, faces, "sample", 0, 3)
    expected = graph(faces, latents, clip, 25.0, 0.1, 0.45)

    node = nodes["LoadMuseTalkAvatar"]
    assert node.INPUT_TYPES()["required"]["avatar"][0] == ["anna"]
    assert node.VALIDATE_INPUTS("anna") is True and "is not in" in node.VALIDATE_INPUTS("nobody")
    faces, latents, clip, fps, blur, ratio = node().load("anna")
    assert type(clip).__name__ == "AvatarVideo" and (fps, blur, ratio) == (25.0, 0.1, 0.45)
    got = graph(faces, latents, clip, fps, blur, ratio)
    assert got.shape == expected.shape == (15,) + video[1].shape[1:] and torch.equal(got, expected)


def test_avatar_video_for_comfyui_video_nodes(avatar, tmp_path):
    """What ComfyUI's own VIDEO nodes call (SaveVideo: dimensions and save_to a path; API nodes: save_to a buffer;
    GetVideoComponents: every frame)."""
    import io

    from nodes.video_types import AvatarVideo

    clip = AvatarVideo(avatar)
    n, h, w, _ = np.asarray(avatar.frames).shape
    assert clip.get_dimensions() == (w, h) and clip.get_frame_count() == n and clip.get_frame_rate() == 25
    parts = clip.get_components()
    assert parts.images.shape == (n, h, w, 3) and parts.images.dtype == torch.float32
    assert np.array_equal((parts.images * 255).round().to(torch.uint8).numpy(), np.asarray(avatar.frames))
    clip.save_to(tmp_path / "out.mp4")
    written = video_read.read_video(tmp_path / "out.mp4", with_audio=False)
    assert written.frames.shape == (n, h, w, 3) and written.fps == 25
    err = written.frames.numpy().astype(float) - np.asarray(avatar.frames)
    assert 10 * np.log10(255 ** 2 / np.mean(err ** 2)) > 30  # H.264 at crf 18 of these noisy frames
    buffer = io.BytesIO()
    clip.save_to(buffer)
    (tmp_path / "buffer.mp4").write_bytes(buffer.getvalue())
    assert video_read.read_video(tmp_path / "buffer.mp4", with_audio=False).frames.shape == (n, h, w, 3)
    stream = clip.get_stream_source()
    assert video_read.read_video(stream, with_audio=False).frames.shape[0] == n
