"""Real-time avatars (musetalk_core.realtime.avatar): the material equals the core's for the same frames and
options, the folder loads back equal bit for bit, damaged folders give InputErrors naming the file, the command
line and the SaveMuseTalkAvatar node write the same avatar."""

from __future__ import annotations

import json
import shutil
from fractions import Fraction
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from media import marked_faceless, write_video
from musetalk_core import cli
from musetalk_core.errors import InputError
from musetalk_core.faces import locate as face_locate
from musetalk_core.generators.musetalk.generator import MuseTalkGenerator
from musetalk_core.io import video_read
from musetalk_core.io.sources import TensorSource, VideoFileSource
from musetalk_core.options import LipsyncOptions
from musetalk_core.pipeline import video_faces
from musetalk_core.realtime import avatar as avatar_mod
from musetalk_core.realtime.avatar import (AVATAR_FORMAT, default_avatars_dir, list_avatars, load_avatar,
                                           prepare_avatar, save_avatar, set_avatars_dir)
from musetalk_core.weights.loading import load_models
from nodes.video_types import FileVideo
from test_faces import synthetic_video

N = 7
NO_FACE = (3,)  # marked by a black corner: the wrapped detector reports no face there (no crop, no mask)
OPTIONS = LipsyncOptions(face_batch_size=2, vae_batch_size=3, box_smoothing=0.4, blur_factor=0.1,
                         upper_boundary_ratio=0.45)
CLI_FLAGS = ["--face-batch-size", "2", "--vae-batch-size", "3", "--box-smoothing", "0.4", "--blur-factor", "0.1",
             "--upper-boundary-ratio", "0.45"]
FACE_ARGS = dict(bbox_shift=0, extra_margin=10, parsing_mode="auto", left_cheek_width=90, right_cheek_width=90,
                 face_selection="highest_score", landmark_region="full_frame", box_smoothing=0.4, detector_scale=1.0,
                 batch_size=2)


@pytest.fixture(scope="module", autouse=True)
def faceless_frames():
    """The real tiny detector, with marked frames reported as face-less (whatever chunk they arrive in)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(face_locate, "locate_faces", marked_faceless(face_locate.locate_faces))
        yield


@pytest.fixture(scope="module")
def models_dir(tiny_models_factory):
    return tiny_models_factory("v15")


@pytest.fixture(scope="module")
def models(models_dir):
    return load_models([models_dir], "v15", precision="fp32", device="cpu")


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    frames = synthetic_video(N)
    for i in NO_FACE:
        frames[i, :8, :8] = 0
    path = write_video(tmp_path_factory.mktemp("avatar_video") / "anna.mp4", frames, Fraction(25))
    return path, video_read.read_video(path, with_audio=False).frames.numpy()


class Recorded(VideoFileSource):
    reads: list = []

    def read(self, indices):
        self.reads.append(list(indices))
        return super().read(indices)


@pytest.fixture(scope="module")
def prepared(models, video, tmp_path_factory):
    """prepare_avatar on the video file, frames.u8 written two frames at a time."""
    root = tmp_path_factory.mktemp("avatars")
    path, decoded = video
    source = Recorded(path)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(avatar_mod, "FRAME_CHUNK_PIXELS", 2 * decoded.shape[1] * decoded.shape[2])
        avatar = prepare_avatar(models, source, source.fps, OPTIONS, root, "anna")
    source.close()
    return avatar, list(Recorded.reads)


@pytest.fixture(scope="module")
def core(models, video):
    """What a lip-sync run computes for that video: the pipeline's faces stage and MuseTalk's latents."""
    source = VideoFileSource(video[0])
    wanted = np.ones(N, dtype=bool)
    faces = video_faces(models, source, OPTIONS, wanted, None, True)
    latents = MuseTalkGenerator(models, OPTIONS).prepare(source, faces, wanted, None, lambda *a: None)
    source.close()
    return faces, latents


def assert_same_material(a, b, faces_settings=True):
    """Every field of two avatars' faces and latents, bit for bit."""
    fa, fb = a.faces, b.faces
    assert tuple(fa.frame_size) == tuple(fb.frame_size)
    for key in ("has_face", "boxes", "landmarks", "crop_boxes", "crops"):
        assert torch.equal(getattr(fa, key), getattr(fb, key)), key
    assert len(fa.masks) == len(fb.masks) == fa.num_frames
    for ma, mb in zip(fa.masks, fb.masks):
        assert (ma is None) == (mb is None) and (ma is None or torch.equal(ma, mb))
    assert fa.bbox_range == fb.bbox_range
    if faces_settings:
        assert dict(fa.settings) == dict(fb.settings)
    la, lb = a.latents, b.latents
    assert torch.equal(la.latents, lb.latents) and la.latents.dtype == lb.latents.dtype
    assert torch.equal(la.frame_indices, lb.frame_indices)
    assert (la.num_frames, la.version, la.latent_mode, la.seed) == (lb.num_frames, lb.version, lb.latent_mode,
                                                                     lb.seed)


def test_avatar_material_is_the_core_material(prepared, core, video):
    avatar, _ = prepared
    faces, latents = core
    assert avatar.num_frames == N and avatar.frame_size == tuple(faces.frame_size) and avatar.fps == 25.0
    assert not avatar.faces.has_face[list(NO_FACE)].any() and int(avatar.faces.has_face.sum()) == N - len(NO_FACE)
    assert all(avatar.faces.masks[i] is None for i in NO_FACE)
    assert np.array_equal(np.asarray(avatar.frames), video[1])  # the decoded frames, bit for bit
    assert isinstance(avatar.frames, np.memmap) and not avatar.frames.flags.writeable
    core_avatar = SimpleNamespace(faces=faces, latents=latents)
    assert_same_material(avatar, core_avatar)
    s = avatar.settings
    assert (s["version"], s["bbox_shift"], s["extra_margin"], s["parsing_mode"], s["box_smoothing"]) == \
        ("v15", 0, 10, "jaw", 0.4)
    assert (s["latent_mode"], s["seed"], s["blur_factor"], s["upper_boundary_ratio"]) == ("sample", 0, 0.1, 0.45)


def test_frames_are_written_chunk_by_chunk(prepared):
    """The last pass over the source writes frames.u8 two frames at a time, never the whole video."""
    _, reads = prepared
    assert reads[-4:] == [[0, 1], [2, 3], [4, 5], [6]]


def test_load_round_trip(prepared):
    avatar, _ = prepared
    loaded = load_avatar(avatar.folder)
    assert (loaded.name, loaded.folder, loaded.fps, loaded.frame_size, loaded.num_frames) == \
        (avatar.name, avatar.folder, avatar.fps, avatar.frame_size, avatar.num_frames)
    assert dict(loaded.settings) == dict(avatar.settings)
    assert np.array_equal(np.asarray(loaded.frames), np.asarray(avatar.frames))
    assert_same_material(loaded, avatar)
    assert loaded.faces.frames_fingerprint == avatar.faces.frames_fingerprint
    source = loaded.source()  # the frames as a FrameSource, with the fingerprint the faces carry
    assert source.fingerprint() == loaded.faces.frames_fingerprint and source.frame_size == loaded.frame_size
    assert torch.equal(source.read([4, 1]), torch.from_numpy(np.asarray(loaded.frames)[[4, 1]]))
    info = json.loads((avatar.folder / "avatar.json").read_text())
    assert info["format"] == AVATAR_FORMAT and info["num_frames"] == N and info["fps_exact"] == "25"
    assert sorted(p.name for p in avatar.folder.iterdir()) == ["avatar.json", "frames.u8", "material.safetensors"]
    assert load_avatar(avatar.folder, device="cpu").latents.latents.device.type == "cpu"


def test_idle_order_bounces():
    avatar = SimpleNamespace(num_frames=4)
    order = avatar_mod.Avatar.idle_order(avatar, 12)
    assert order.tolist() == [0, 1, 2, 3, 3, 2, 1, 0, 0, 1, 2, 3]
    assert avatar_mod.Avatar.idle_order(avatar, 5, start=6).tolist() == [1, 0, 0, 1, 2]
    assert order.dtype == torch.int64
    one = SimpleNamespace(num_frames=1)  # a still image
    assert avatar_mod.Avatar.idle_order(one, 3, start=100).tolist() == [0, 0, 0]


@pytest.fixture
def copy(prepared, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(prepared[0].folder, folder)
    return folder


@pytest.mark.parametrize("damage, match", [
    ("no_folder", "does not exist"),
    ("no_json", "avatar.json' is missing"),
    ("no_frames", "frames.u8' is missing"),
    ("no_material", "material.safetensors' is missing"),
    ("truncated_frames", "frames.u8' is truncated"),
    ("newer_format", "avatar.json' is avatar format 2, written by a newer version"),
    ("no_format", "avatar.json' has no valid avatar format"),
    ("corrupt_json", "avatar.json' could not be read as JSON"),
    ("corrupt_material", "material.safetensors' could not be read"),
    ("other_material", "material.safetensors' does not fit avatar.json"),
])
def test_damaged_avatar_names_the_file(copy, damage, match):
    info_path = copy / "avatar.json"
    info = json.loads(info_path.read_text())
    if damage == "no_folder":
        shutil.rmtree(copy)
    elif damage.startswith("no_") and damage != "no_format":
        name = {"no_json": "avatar.json", "no_frames": "frames.u8", "no_material": "material.safetensors"}[damage]
        (copy / name).unlink()
    elif damage == "truncated_frames":
        data = (copy / "frames.u8").read_bytes()
        (copy / "frames.u8").write_bytes(data[:-100])
    elif damage in ("newer_format", "no_format"):
        info["format"] = AVATAR_FORMAT + 1 if damage == "newer_format" else "one"
        info_path.write_text(json.dumps(info))
    elif damage == "corrupt_json":
        info_path.write_text(info_path.read_text()[:40])
    elif damage == "corrupt_material":
        (copy / "material.safetensors").write_bytes(b"\x00" * 64)
    elif damage == "other_material":  # a material of 6 frames beside frames of 7: a mixed-up copy
        from safetensors.torch import load_file, save_file

        t = load_file(str(copy / "material.safetensors"))
        t["has_face"] = t["has_face"][:6]
        save_file(t, str(copy / "material.safetensors"))
    with pytest.raises(InputError, match=match) as err:
        load_avatar(copy)
    assert str(copy) in str(err.value)
    assert "prepare it again" in str(err.value) or "update the pack" in str(err.value)


def test_other_musetalk_version_is_refused(copy):
    avatar = load_avatar(copy)
    avatar_mod.check_models(avatar, SimpleNamespace(version="v15"))
    with pytest.raises(InputError, match=r"prepared for MuseTalk v15, but the loaded models are v1.*--version"):
        load_avatar(copy, models=SimpleNamespace(version="v1"))


@pytest.mark.parametrize("name", ["a/b", "../up", "a\\b", "..", ".hidden", "", "  ", "c:d", "x" * 101])
def test_bad_names_are_refused_before_any_work(prepared, tmp_path, name):
    avatar = prepared[0]
    with pytest.raises(InputError, match="name"):
        save_avatar(avatar.faces, avatar.latents, avatar.source(), 25, {}, tmp_path / "root", name)
    assert not (tmp_path / "root").exists() and not (tmp_path / "up").exists()


def test_existing_name_and_failed_writes(prepared, tmp_path, monkeypatch):
    avatar = prepared[0]
    root = tmp_path / "root"
    first = save_avatar(avatar.faces, avatar.latents, avatar.source(), 25, {"blur_factor": 0.2}, root, "bob")
    assert_same_material(first, avatar)
    assert first.settings["blur_factor"] == 0.2 and list_avatars(root) == ["bob"]
    with pytest.raises(InputError, match="already exists"):
        save_avatar(avatar.faces, avatar.latents, avatar.source(), 30, {}, root, "bob")

    def disk_full(path, tensors):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(avatar_mod.files, "write_material", disk_full)
    with pytest.raises(OSError):
        save_avatar(avatar.faces, avatar.latents, avatar.source(), 30, {}, root, "bob", overwrite=True)
    monkeypatch.undo()
    assert sorted(p.name for p in root.iterdir()) == ["bob"]  # no temporary folder left behind
    assert load_avatar(root / "bob").fps == 25.0  # the previous avatar untouched
    again = save_avatar(avatar.faces, avatar.latents, avatar.source(), 30, {}, root, "bob", overwrite=True)
    assert again.fps == 30.0 and sorted(p.name for p in root.iterdir()) == ["bob"]


def test_save_refuses_material_of_other_frames(prepared, video):
    avatar = prepared[0]
    other = torch.from_numpy(video[1][:5].copy())
    with pytest.raises(InputError, match="'faces' describe 7 frames"):
        save_avatar(avatar.faces, avatar.latents, other, 25, {}, avatar.folder.parent, "x")
    shuffled = torch.from_numpy(video[1][::-1].copy())
    with pytest.raises(InputError, match="not the frames the faces were computed from"):
        save_avatar(avatar.faces, avatar.latents, shuffled, 25, {}, avatar.folder.parent, "x")
    with pytest.raises(InputError, match="frame rate"):
        save_avatar(avatar.faces, avatar.latents, avatar.source(), 0, {}, avatar.folder.parent, "x")


def test_list_and_default_folders(prepared, tmp_path):
    root = prepared[0].folder.parent
    (root / ".bob.tmp-1234").mkdir()  # a preparation under way
    (root / "not_an_avatar").mkdir()
    assert list_avatars(root) == ["anna"]
    assert list_avatars(tmp_path / "nowhere") == []
    assert default_avatars_dir([tmp_path / "m1", tmp_path / "m2"]) == tmp_path / "m1" / "avatars"
    set_avatars_dir(tmp_path / "elsewhere")
    try:
        assert default_avatars_dir([tmp_path / "m1"]) == tmp_path / "elsewhere"
    finally:
        set_avatars_dir(None)


def test_latentsync_is_refused(models, tmp_path):
    frames = torch.zeros((1, 8, 8, 3), dtype=torch.uint8)
    with pytest.raises(InputError, match="too slow for real-time"):
        prepare_avatar(models, TensorSource(frames), 25, OPTIONS.updated(generator="latentsync15"), tmp_path, "a")


# ---------------------------------------------------------------------------------------------------- command line

def run(argv, capsys):
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_command_line_writes_the_same_avatar(prepared, video, models_dir, tmp_path, capsys):
    root = tmp_path / "avatars"
    code, out, err = run(["avatar", "--video", str(video[0]), "--name", "anna", "--avatars-dir", str(root),
                          "--models-dir", str(models_dir), "--no-progress", *CLI_FLAGS], capsys)
    assert code == 0, err
    assert f"Wrote avatar 'anna' to {root / 'anna'}" in out
    made = load_avatar(root / "anna")
    assert_same_material(made, prepared[0])
    assert dict(made.settings) == dict(prepared[0].settings)
    assert np.array_equal(np.asarray(made.frames), np.asarray(prepared[0].frames))


def test_command_line_image(video, models_dir, tmp_path, capsys):
    from PIL import Image

    image = tmp_path / "still.png"
    Image.fromarray(video[1][0]).save(image)
    root = tmp_path / "avatars"
    code, out, err = run(["avatar", "--image", str(image), "--fps", "30", "--name", "still", "--avatars-dir",
                          str(root), "--models-dir", str(models_dir), "--no-progress", "--face-batch-size", "2"],
                         capsys)
    assert code == 0, err
    made = load_avatar(root / "still")
    assert made.num_frames == 1 and made.fps == 30.0 and bool(made.faces.has_face[0])
    assert np.array_equal(np.asarray(made.frames)[0], video[1][0])


@pytest.mark.parametrize("case, match", [
    ("exists", "already exists"), ("bad_name", "path separators"), ("fps_with_video", "--fps applies to --image"),
    ("missing_video", "does not exist"), ("bad_option", "bbox-shift|bbox_shift"),
])
def test_command_line_bad_input_exits_2_before_loading_models(case, match, prepared, video, tmp_path, capsys):
    root = prepared[0].folder.parent
    argv = ["avatar", "--video", str(video[0]), "--name", "anna", "--avatars-dir", str(root),
            "--models-dir", str(tmp_path / "no_models"), "--no-progress"]
    if case == "bad_name":
        argv[argv.index("anna")] = "a/b"
    elif case == "fps_with_video":
        argv += ["--fps", "30"]
    elif case == "missing_video":
        argv[argv.index("--video") + 1] = str(tmp_path / "nope.mp4")
        argv[argv.index("anna")] = "new"
    elif case == "bad_option":
        argv += ["--bbox-shift", "999"]
    code, _, err = run(argv, capsys)
    assert code == 2 and (match in err or (case == "bad_option" and "999" in err)), err
    assert "no_models" not in err  # refused before the models were looked for
    assert list_avatars(root) == ["anna"]


# ---------------------------------------------------------------------------------------------------- graph node

def test_node_saves_the_same_avatar(pack, models, prepared, video, tmp_path, monkeypatch):
    """FaceDetectAndParse and VAEEncodeMasked on the VIDEO (material spilled to disk), then SaveMuseTalkAvatar into
    <models folder>/avatars: the avatar prepare_avatar makes."""
    monkeypatch.setenv("MUSETALK_MODELS_DIR", str(tmp_path / "models"))
    nodes = pack.NODE_CLASS_MAPPINGS
    shown = []
    monkeypatch.setattr(pack.nodes.comfy_bridge, "show_text", lambda text: shown.append(text) or True)
    clip = FileVideo(video[0])
    faces, _, _ = nodes["FaceDetectAndParse"]().prepare(models, video=clip, **FACE_ARGS)
    (latents,) = nodes["VAEEncodeMasked"]().encode(models, faces, "sample", 0, 3)
    node = nodes["SaveMuseTalkAvatar"]
    assert node.OUTPUT_NODE is True and node.RETURN_TYPES == ("STRING",)
    (folder,) = node().save(faces, latents, "anna", 12.0, 0.1, 0.45, video=clip)
    assert folder == str(tmp_path / "models" / "avatars" / "anna")
    made = load_avatar(folder)
    assert_same_material(made, prepared[0])
    assert made.fps == 25.0  # the VIDEO's own rate, not the widget's
    assert (made.settings["blur_factor"], made.settings["upper_boundary_ratio"]) == (0.1, 0.45)
    assert np.array_equal(np.asarray(made.frames), np.asarray(prepared[0].frames))
    assert "Avatar 'anna': 7 frames" in shown[-1]
    with pytest.raises(InputError, match="connect either 'images'"):
        node().save(faces, latents, "anna", 25.0, 0.1, 0.45)
    other = torch.from_numpy(video[1][:4].copy()).float() / 255
    with pytest.raises(InputError, match="'faces' describe 7 frames"):
        node().save(faces, latents, "anna", 25.0, 0.1, 0.45, images=other)
