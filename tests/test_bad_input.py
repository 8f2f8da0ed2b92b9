"""The bad-input catalogue (issue 14): a face-less video, CLI output faults, RGBA / grayscale / 0..255 IMAGEs, and
the dtype warning at model load. Graph (node classes) and command line behave the same."""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from media import face_frames, tone, write_video, write_wav
from musetalk_core import cli
from musetalk_core.io import video_read, video_write
from musetalk_core.frame_mapping import source_indices
from musetalk_core.weights.loading import load_models
from musetalk_core.types import Placement
from nodes.video_types import FileVideo

FPS = Fraction(25)


# ---------------------------------------------------------------------------------------------------------------
# a video without a face
# ---------------------------------------------------------------------------------------------------------------

def _blind_s3fd(path: Path) -> None:
    """The tiny S3FD with every classification head fixed at (background 0, face -1e4): whatever the frame and the
    CPU's kernels, no cell scores above 0.5, so every frame is face-less for this detector."""
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    for key in [k for k in state if "_mbox_conf" in k]:
        state[key] = torch.zeros_like(state[key])
        if key.endswith("bias"):
            state[key][-1] = -1e4
    torch.save(state, str(path))


@pytest.fixture(scope="module")
def faceless_models_dir(tiny_models_factory, tmp_path_factory):
    """The tiny v1.5 models folder, except for a detector that never finds a face (the other files linked)."""
    src = Path(tiny_models_factory("v15"))
    dst = tmp_path_factory.mktemp("faceless_models")
    for entry in src.iterdir():
        if entry.name != "s3fd":
            (dst / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    (dst / "s3fd").mkdir()
    weights = dst / "s3fd" / "s3fd-619a316812.pth"
    weights.write_bytes((src / "s3fd" / "s3fd-619a316812.pth").read_bytes())
    _blind_s3fd(weights)
    return dst


class _Recorder(Placement):
    """Records which networks a stage brings onto the device (models.use goes through the placement)."""

    def __init__(self, names):
        self.names = names
        self.activated = []

    def activate(self, modules, device):
        self.activated += [self.names[id(m)] for m in modules]
        super().activate(modules, device)


@pytest.fixture
def node_texts(pack, monkeypatch):
    """The texts the nodes show on themselves in the graph (ComfyUI's progress text), in the order shown."""
    shown = []
    monkeypatch.setattr(pack.nodes.comfy_bridge, "show_text", lambda text: shown.append(text) or True)
    return shown


def test_faceless_video_through_the_node_chain(pack, faceless_models_dir, caplog, node_texts):
    nodes = pack.NODE_CLASS_MAPPINGS
    models = load_models([faceless_models_dir], "v15", precision="fp32", device="cpu")
    recorder = _Recorder({id(m): name for name, m in models.networks.items()})
    models = dataclasses.replace(models, placement=recorder)
    for name in ("vae", "unet"):  # a network call on face-less material is a bug
        models.network(name).register_forward_pre_hook(lambda *a, n=name: pytest.fail(f"{n} was called"))

    n = 5
    images = torch.from_numpy(face_frames(n, 64, 48)).float() / 255.0
    audio = {"waveform": torch.from_numpy(tone(0.5, 16000, 2))[None], "sample_rate": 16000}  # T = 12 > N
    with caplog.at_level(logging.INFO):
        faces, preview, _ = nodes["FaceDetectAndParse"]().prepare(models, images, 0, 10, "auto", 90, 90,
                                                                  "highest_score", "full_frame", 0.0, 1.0, 8)
        features, t, _ = nodes["WhisperAudioEncode"]().encode(models, audio, 25.0, 2, 2, "reference", -45.0)
        before = list(recorder.activated)
        (latents,) = nodes["VAEEncodeMasked"]().encode(models, faces, "sample", 0, 8)
        generated, gen_images = nodes["MuseTalkUNetInpaint"]().generate(models, latents, features, "ping_pong", 0, 8)
        out, out_audio, fps, count = nodes["BlendAndAssemble"]().blend(images, faces, generated, 0.05, 0.5, False,
                                                                       3, 16)[:4]
    assert recorder.activated == before  # neither the VAE nor the UNet was even moved to the device
    assert not faces.has_face.any() and torch.equal(preview, images)
    assert latents.latents.shape[0] == 0 and latents.num_frames == n
    assert t == count == 12 and gen_images.shape == (12, 256, 256, 3) and not generated.has_face.any()
    # every output frame is its source frame (ping-pong mapping) bit for bit, the audio exactly T / fps
    mapping = source_indices(12, n, "ping_pong", 0)
    assert torch.equal(generated.source_index, mapping)
    assert torch.equal(out, images[mapping])
    assert fps == 25.0 and out_audio["waveform"].shape == (1, 2, 12 * 16000 // 25)
    assert torch.equal(out_audio["waveform"], audio["waveform"][..., :12 * 16000 // 25])
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("no face was found in any of the 5 frames" in w and "passed through unchanged" in w
               and "turned away" in w for w in warnings), warnings
    assert any("BlendAndAssemble" in w and "unchanged" in w for w in warnings), warnings
    # ... and in the graph, on the nodes themselves (the log is the server's, which users rarely read)
    detect, encode, generate, blend = node_texts
    assert detect.startswith("No face found in any of the 5 frames: the video passes through unchanged.")
    assert "no face was found in any of the 5 frames" in detect and "turned away" in detect
    assert "⚠" in detect and "passed through unchanged" in detect
    assert encode.startswith("12 frames at 25 fps from 0.50 s of audio (reference features); 0 silent")
    assert generate.startswith("Generated 0 of 12 output frames; the 12 whose source frame has no face pass")
    assert blend.startswith("12 frames at 25 fps (0.48 s).") and "no usable face" in blend


def test_unusable_face_boxes_are_shown_on_the_node(pack, tiny_models_factory, monkeypatch, node_texts):
    """A box that lies outside the frame: the frame passes through, and the node says so in the graph."""
    from musetalk_core.faces import locate
    from test_faces import BOXES, fake_locations, synthetic_video

    models = load_models([tiny_models_factory("v15", ["face_parser"])], "v15", precision="fp32", device="cpu",
                         networks=["face_parser"])
    monkeypatch.setattr(locate, "locate_faces",
                        lambda models, frames, **kw: fake_locations(2, [(120, 10, 150, 60), BOXES[0]]))
    images = torch.from_numpy(synthetic_video(2)).float() / 255.0
    faces, _, bbox_range = pack.NODE_CLASS_MAPPINGS["FaceDetectAndParse"]().prepare(models, images)
    assert faces.has_face.tolist() == [False, True]
    (text,) = node_texts
    assert text.startswith("Face found in 1 of 2 frames; the 1 without one (first: frame 0) pass through unchanged.")
    assert bbox_range in text and "face box outside the frame or too small to crop" in text


def test_silent_audio_is_shown_on_the_encoder_and_the_blend(pack, faceless_models_dir, node_texts):
    """Every frame below the silence threshold: with silence handling on, no mouth changes. Both nodes say so; a
    clip with speech says nothing of the kind."""
    nodes = pack.NODE_CLASS_MAPPINGS
    models = load_models([faceless_models_dir], "v15", precision="fp32", device="cpu")
    images = torch.from_numpy(face_frames(3, 64, 48)).float() / 255.0
    silence = {"waveform": torch.zeros(1, 1, 3200), "sample_rate": 16000}  # 0.2 s: 5 frames
    faces = nodes["FaceDetectAndParse"]().prepare(models, images)[0]
    features = nodes["WhisperAudioEncode"]().encode(models, silence, 25.0, 2, 2, "reference", -45.0)[0]
    (latents,) = nodes["VAEEncodeMasked"]().encode(models, faces, "sample", 0, 8)
    generated = nodes["MuseTalkUNetInpaint"]().generate(models, latents, features, "ping_pong", 0, 8)[0]
    nodes["BlendAndAssemble"]().blend(images, faces, generated, 0.05, 0.5, True, 3, 16)
    encode, blend = node_texts[1], node_texts[3]
    assert encode.startswith("5 frames at 25 fps from 0.20 s of audio (reference features); 5 silent (below -45")
    assert "every one of the 5 frames is below the silence threshold (-45 dBFS; the loudest is -200.0" in encode
    assert "silence handling is on and every frame is silent" in blend
    node_texts.clear()
    speech = {"waveform": torch.from_numpy(tone(0.2, 16000, 1))[None], "sample_rate": 16000}
    nodes["WhisperAudioEncode"]().encode(models, speech, 25.0, 2, 2, "reference", -45.0)
    assert node_texts[0].startswith("5 frames at 25 fps") and "⚠" not in node_texts[0]


def test_node_text_reaches_comfyuis_server_or_the_log(pack, monkeypatch, caplog):
    """comfy_bridge.show_text: ComfyUI's PromptServer.send_progress_text for the running node and the prompt's
    client; without a ComfyUI server, the log."""
    import sys
    import types

    bridge = pack.nodes.comfy_bridge
    with caplog.at_level(logging.INFO):
        assert bridge.show_text("no server here") is False
    assert "no server here" in caplog.text
    sent = []
    server = types.SimpleNamespace(last_node_id="5", client_id="client-1",
                                   send_progress_text=lambda text, node_id, sid=None: sent.append((text, node_id, sid)))
    fake = types.ModuleType("server")
    fake.PromptServer = types.SimpleNamespace(instance=server)
    monkeypatch.setitem(sys.modules, "server", fake)
    report = bridge.NodeReport()
    with report:
        logging.getLogger("musetalk_core.faces.material").warning("frames 3 and 4 had no usable box")
        logging.getLogger("elsewhere").warning("not ours")
    assert bridge.show_text(report.text("Face found in 3 of 5 frames.")) is True
    assert sent == [("Face found in 3 of 5 frames.\n\n⚠ frames 3 and 4 had no usable box", "5", "client-1")]


def test_faceless_video_through_the_cli(faceless_models_dir, tmp_path, capsys):
    frames = face_frames(4, 64, 48)
    video = write_video(tmp_path / "cutaway.mp4", frames, FPS)
    audio = write_wav(tmp_path / "speech.wav", tone(0.34, 16000, 1), 16000)  # 8 frames at 25 fps
    out = tmp_path / "out.mp4"
    code = cli.main(["lipsync", "--video", str(video), "--audio", str(audio), "--output", str(out),
                     "--models-dir", str(faceless_models_dir), "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "no face was found in any of the 4 frames" in captured.err
    assert "passed through unchanged" in captured.out
    info = video_read.probe(out)
    assert info["frames"] == 8 and info["fps"] == FPS
    assert info["audio_seconds"] == pytest.approx(8 / 25, abs=2e-3)
    # the frames are the source frames in ping-pong order (through two lossy encodes: compare loosely)
    src = video_read.read_video(video, with_audio=False).frames.float()
    got = video_read.read_video(out, with_audio=False).frames.float()
    distance = (got[:, None] - src[None]).abs().mean(dim=(2, 3, 4))  # (8 output, 4 source)
    assert torch.equal(distance.argmin(dim=1), source_indices(8, 4, "ping_pong", 0))
    assert float(distance.min(dim=1).values.max()) < 4.0  # H.264 at crf 18 over a noisy picture, nothing else


# ---------------------------------------------------------------------------------------------------------------
# output faults: a clear message naming the output, exit code 2, nothing half-written, the usual file mode
# ---------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_media(tmp_path_factory):
    folder = tmp_path_factory.mktemp("out_media")
    return {"video": write_video(folder / "in.mp4", face_frames(4, 128, 112), FPS),
            "audio": write_wav(folder / "speech.wav", tone(0.3, 16000, 1), 16000)}


def _lipsync_argv(media, models_dir, out, *extra):
    # the face-less models: the fastest full run (no UNet / VAE), which is all an output test needs
    return ["lipsync", "--video", str(media["video"]), "--audio", str(media["audio"]), "--output", str(out),
            "--models-dir", str(models_dir), "--no-progress", *extra]


def test_output_disk_full(small_media, faceless_models_dir, tmp_path):
    """A real full disk: a 16 KiB tmpfs mounted in a private mount namespace (needs unshare and mount rights)."""
    import shutil
    import subprocess
    import sys

    from conftest import ROOT

    if shutil.which("unshare") is None:
        pytest.skip("no unshare(1)")
    full = tmp_path / "small_disk"
    full.mkdir()
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size=16k none '{full}'"],
                           capture_output=True)
    if probe.returncode != 0:
        pytest.skip("cannot mount a tmpfs in a private mount namespace here: " + probe.stderr.decode()[:200])
    out = full / "result.mp4"
    argv = _lipsync_argv(small_media, faceless_models_dir, out, "--crf", "0")  # lossless: far more than 16 KiB
    script = (f"mount -t tmpfs -o size=16k none '{full}' && "
              f"{sys.executable} -m musetalk_core {' '.join(repr(a) for a in argv)}; rc=$?; ls -A '{full}'; exit $rc")
    proc = subprocess.run(["unshare", "-m", "sh", "-c", script], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert f"Output file '{out}' could not be written: No space left on device" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout.strip() == ""  # `ls -A` of the full disk: no temporary file left behind


def test_interrupt_mid_run_leaves_nothing_and_the_next_run_works(small_media, faceless_models_dir, tmp_path,
                                                                   capsys, monkeypatch):
    """Ctrl-C while frames are being blended and encoded: exit 130, no output file (not even a partial one), the
    temporary folder of spilled material removed; the same command then succeeds."""
    import tempfile

    from musetalk_core import cli
    from musetalk_core.blend.blender import Blender

    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))  # where the spill folder goes (SpillFolder(None))
    spilled = lambda: [p for p in os.listdir(temp) if p.startswith("musetalk-")]  # noqa: E731 (torch adds caches)
    out = tmp_path / "out" / "result.mp4"
    out.parent.mkdir()
    argv = _lipsync_argv(small_media, faceless_models_dir, out, "--chunk-size", "2")
    real = Blender.blend_uint8
    calls = []

    def interrupted(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the second chunk: the first one is already with the encoder
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Blender, "blend_uint8", interrupted)
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert code == 130 and "interrupted" in err and len(calls) == 2
    assert os.listdir(out.parent) == [] and spilled() == []
    monkeypatch.setattr(Blender, "blend_uint8", real)
    code = cli.main(argv)
    assert code == 0, capsys.readouterr().err
    assert video_read.probe(out)["frames"] == 7  # floor(0.3 s x 25 fps)
    assert os.listdir(out.parent) == ["result.mp4"] and spilled() == []


def test_sigterm_mid_run_leaves_nothing(small_media, faceless_models_dir, tmp_path):
    """kill (SIGTERM: a scheduler's time limit, a container stop) while the output is being written: exit 130, no
    output and no temporary file, the spilled material removed, as with Ctrl-C."""
    import signal
    import subprocess
    import sys
    import time

    from conftest import ROOT

    out = tmp_path / "out" / "result.mp4"
    out.parent.mkdir()
    temp = tmp_path / "temp"
    temp.mkdir()
    # each blended chunk takes a while, so the signal lands mid-write
    script = ("import sys, time\nsys.path.insert(0, sys.argv[1])\nfrom musetalk_core.blend.blender import Blender\n"
              "real = Blender.blend_uint8\n"
              "Blender.blend_uint8 = lambda self, *a: (time.sleep(0.5), real(self, *a))[1]\n"
              "from musetalk_core.cli import main\nsys.exit(main(sys.argv[2:]))\n")
    argv = _lipsync_argv(small_media, faceless_models_dir, out, "--chunk-size", "1")
    proc = subprocess.Popen([sys.executable, "-c", script, str(ROOT), *argv], stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TMPDIR": str(temp)})
    deadline = time.monotonic() + 120
    while not list(out.parent.glob(".result.*.tmp.mp4")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in err, err
    assert os.listdir(out.parent) == []
    assert [p for p in os.listdir(temp) if p.startswith("musetalk-")] == []


def test_write_video_refused_mid_write_leaves_nothing(tmp_path):
    """The OS refusing more bytes part-way (here a file-size limit: EFBIG, the same path as a full disk)."""
    import resource
    import signal

    from musetalk_core.errors import OutputError

    frames = torch.from_numpy(face_frames(8, 128, 112))
    out = tmp_path / "clip.mp4"
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of the default kill
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))
    try:
        with pytest.raises(OutputError, match=r"Output file '.*clip\.mp4' could not be written: File too large"):
            video_write.write_video(out, frames, FPS, crf=0)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("case", ["proc", "name_too_long"])
def test_output_path_refused_by_the_os(case, small_media, faceless_models_dir, tmp_path, capsys):
    if case == "proc":  # access() says writable to root; creating a file there still fails
        out = Path("/proc") / "musetalk-result.mp4"
        writable = os.access("/proc", os.W_OK)
        expect = f"Output file '{out}' could not be written" if writable else "Output folder '/proc' is not writable"
    else:
        out = tmp_path / ("x" * 300 + ".mp4")
        expect = "File name too long"
    code = cli.main(_lipsync_argv(small_media, faceless_models_dir, out))
    err = capsys.readouterr().err
    assert code == 2, err
    assert expect in err and "Traceback" not in err
    assert not out.exists() if case == "proc" else list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_output_gets_the_usual_file_mode(umask, tmp_path):
    old = os.umask(umask)
    try:
        path = video_write.write_video(tmp_path / "clip.mp4", torch.from_numpy(face_frames(2, 32, 32)), FPS)
    finally:
        os.umask(old)
    assert (path.stat().st_mode & 0o777) == 0o666 & ~umask  # 0644 / 0640, like any file the user creates
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]


# ---------------------------------------------------------------------------------------------------------------
# IMAGE inputs: RGBA / grayscale read the same way by every node; a float IMAGE outside 0..1 is refused
# ---------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_models(tiny_models_factory):
    return load_models([tiny_models_factory("v15")], "v15", precision="fp32", device="cpu")


def _chain(nodes, models, images, audio):
    faces, _, _ = nodes["FaceDetectAndParse"]().prepare(models, images, 0, 10, "auto", 90, 90, "highest_score",
                                                        "full_frame", 0.0, 1.0, 8)
    features, _, _ = nodes["WhisperAudioEncode"]().encode(models, audio, 25.0, 2, 2, "reference", -45.0)
    (latents,) = nodes["VAEEncodeMasked"]().encode(models, faces, "mean", 0, 8)
    generated, _ = nodes["MuseTalkUNetInpaint"]().generate(models, latents, features, "ping_pong", 0, 8)
    out = nodes["BlendAndAssemble"]().blend(images, faces, generated, 0.05, 0.5, False, 3, 16)[0]
    return faces, generated, out


def test_rgba_and_grayscale_through_the_node_chain(pack, tiny_models):
    """An RGBA / grayscale IMAGE runs the whole chain and each node reads it as the same RGB frames."""
    from musetalk_core.io.frames import frames_fingerprint

    nodes = pack.NODE_CLASS_MAPPINGS
    blend = nodes["BlendAndAssemble"]()
    rgb = torch.from_numpy(face_frames(2, 64, 48)).float() / 255.0
    audio = {"waveform": torch.from_numpy(tone(0.12, 16000))[None], "sample_rate": 16000}  # 3 frames

    alpha = torch.linspace(0, 1, 48).expand(2, 64, 48)[..., None]  # any alpha: lip-sync ignores transparency
    faces, generated, out = _chain(nodes, tiny_models, torch.cat([rgb, alpha], -1), audio)
    assert faces.has_face.any() and generated.has_face.any()  # really composited: the pixels below matter
    assert faces.frames_fingerprint == frames_fingerprint(rgb)
    assert out.shape == (3, 64, 48, 3)
    assert torch.equal(out, blend.blend(rgb, faces, generated, 0.05, 0.5, False, 3, 16)[0])

    gray = rgb.mean(-1, keepdim=True)
    faces, generated, out = _chain(nodes, tiny_models, gray, audio)
    assert out.shape == (3, 64, 48, 3)
    as_rgb = gray.expand(-1, -1, -1, 3).contiguous()
    assert torch.equal(out, blend.blend(as_rgb, faces, generated, 0.05, 0.5, False, 3, 16)[0])


def test_rgb_frames_is_the_one_reader():
    from musetalk_core.io.frames import frames_fingerprint, image_to_uint8, rgb_frames

    rgb = torch.rand(2, 8, 6, 3)
    assert rgb_frames(rgb) is rgb  # no copy for the normal case
    rgba = torch.cat([rgb, torch.rand(2, 8, 6, 1)], -1)
    assert torch.equal(rgb_frames(rgba), rgb) and torch.equal(image_to_uint8(rgba), image_to_uint8(rgb))
    assert frames_fingerprint(rgb_frames(rgba)) == frames_fingerprint(image_to_uint8(rgba))
    gray = rgb[..., :1]
    assert torch.equal(rgb_frames(gray), gray.expand(-1, -1, -1, 3))
    # slight resampling overshoot is clipped as before, not refused
    assert image_to_uint8(torch.full((1, 2, 2, 3), 1.04)).eq(255).all()
    assert image_to_uint8(torch.full((1, 2, 2, 3), -0.03)).eq(0).all()


@pytest.mark.parametrize("values, match", [
    (lambda x: x * 255.0, r"from 0 to 255,.*0\.\.255 values: divide by 255"),
    (lambda x: x * 2.0 - 1.0, r"-1\.\.1 values"),
    (lambda x: torch.where(x > 0.5, torch.tensor(float("nan")), x), "NaN or infinite"),
])
def test_float_image_outside_0_1_is_refused_by_every_node(pack, tiny_models, values, match):
    from musetalk_core.errors import InputError
    from musetalk_core.io.frames import frames_fingerprint
    from musetalk_core.types import MuseTalkFaces, MuseTalkGenerated

    nodes = pack.NODE_CLASS_MAPPINGS
    x = torch.linspace(0, 1, 2 * 32 * 32 * 3).reshape(2, 32, 32, 3)
    bad = values(x)
    with pytest.raises(InputError, match=r"'images'.*" + match if "NaN" not in match else match):
        nodes["FaceDetectAndParse"]().prepare(tiny_models, bad, 0, 10, "auto", 90, 90, "highest_score",
                                              "full_frame", 0.0, 1.0, 8)
    faces = MuseTalkFaces(frame_size=(32, 32), has_face=torch.zeros(2, dtype=torch.bool),
                          boxes=torch.zeros(2, 4, dtype=torch.int64), landmarks=torch.zeros(2, 68, 2, dtype=torch.int64),
                          crop_boxes=torch.zeros(2, 4, dtype=torch.int64), masks=(None, None),
                          crops=torch.zeros(2, 256, 256, 3, dtype=torch.uint8), frames_fingerprint=frames_fingerprint(x))
    generated = MuseTalkGenerated(faces=torch.zeros(2, 256, 256, 3, dtype=torch.uint8),
                                  source_index=torch.arange(2), has_face=torch.zeros(2, dtype=torch.bool), fps=25.0,
                                  frames_fingerprint=faces.frames_fingerprint)
    assert nodes["BlendAndAssemble"]().blend(x, faces, generated, 0.05, 0.5, False, 3, 16)[3] == 2  # valid: runs
    with pytest.raises(InputError, match=match):
        nodes["BlendAndAssemble"]().blend(bad, faces, generated, 0.05, 0.5, False, 3, 16)
    with pytest.raises(InputError, match="'replacement_faces'.*" + match if "NaN" not in match else match):
        nodes["BlendAndAssemble"]().blend(x, faces, generated, 0.05, 0.5, False, 3, 16,
                                          replacement_faces=values(torch.linspace(0, 1, 2 * 256 * 256 * 3).reshape(2, 256, 256, 3)))


# ---------------------------------------------------------------------------------------------------------------
# model load: no "There are modules in ... that should be kept in float32: []" from diffusers
# ---------------------------------------------------------------------------------------------------------------

class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_model_load_logs_no_dtype_warning(precision, tiny_models_factory):
    folder = tiny_models_factory("v15")
    collect = _Collect()
    diffusers_log = logging.getLogger("diffusers")  # diffusers logs there (its own handler, no propagation)
    diffusers_log.addHandler(collect)
    try:
        models = load_models([folder], "v15", precision=precision, device="cpu", networks=["unet", "vae"])
        at_load = list(collect.messages)
        vae = models.network("vae")
        type(vae).to(vae, dtype=models.dtype)  # the cast the loaders avoid: shows the capture would see it
    finally:
        diffusers_log.removeHandler(collect)
    assert not [m for m in at_load if "kept in float32" in m], at_load
    import inspect

    from diffusers.models.modeling_utils import ModelMixin

    if "kept in float32" in inspect.getsource(ModelMixin.to):  # this diffusers still warns on a direct cast
        assert any("kept in float32" in m for m in collect.messages[len(at_load):])
    want = {"fp32": torch.float32, "bf16": torch.bfloat16}[precision]
    for name in ("unet", "vae"):
        assert {p.dtype for p in models.network(name).parameters()} == {want}


# ---------------------------------------------------------------------------------------------------------------
# VIDEO inputs that are not usable: refused by the nodes that read them, saying what is wrong and what to do
# ---------------------------------------------------------------------------------------------------------------

def _unusable_video(case: str, folder: Path) -> Path:
    from media import write_audio_only

    if case == "truncated":
        whole = write_video(folder / "whole.mkv", face_frames(30, 48, 32), FPS).read_bytes()
        path = folder / "cut.mkv"
        path.write_bytes(whole[: int(len(whole) * 0.6)])
    elif case == "text_file":
        path = folder / "notes.mp4"
        path.write_text("these are notes, not a video\n" * 20)
    elif case == "zero_frames":
        import av

        path = folder / "empty.avi"  # AVI keeps a declared video stream with zero frames
        with av.open(str(path), "w") as c:
            s = c.add_stream("mpeg4", rate=25)
            s.width = s.height = 32
            s.pix_fmt = "yuv420p"
            c.start_encoding()
    else:  # audio_only
        path = write_audio_only(folder / "speech.m4a", tone(0.3))
    return path


UNUSABLE = {"truncated": ("damaged or truncated", "Re-encode or re-download"),
            "text_file": ("could not be opened as a video", "re-export or re-download it as MP4"),
            "zero_frames": ("no frames in it", "Re-export the video"),
            "audio_only": ("audio-only", "Connect the video itself")}


@pytest.mark.parametrize("case", sorted(UNUSABLE))
def test_unusable_video_input_is_refused_with_the_fix(case, pack, tiny_models, tmp_path):
    nodes = pack.NODE_CLASS_MAPPINGS
    video = FileVideo(_unusable_video(case, tmp_path))
    what, fix = UNUSABLE[case]
    with pytest.raises(Exception) as face_error:
        nodes["FaceDetectAndParse"]().prepare(tiny_models, video=video)
    with pytest.raises(Exception) as blend_error:
        nodes["BlendAndAssemble"]().blend(video=video, faces=None, generated=None)
    for error in (face_error, blend_error):
        assert error.type.__name__ in ("InputError", "NoFramesError"), error.value
        assert what in str(error.value) and fix in str(error.value), str(error.value)
