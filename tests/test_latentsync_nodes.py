"""LoadLatentSyncModel -> LatentSyncInpaint -> BlendAndAssemble through NODE_CLASS_MAPPINGS on tiny real-format files:
a clip with a face-less frame in the middle, exact frame count, pass-through, audio T / fps, progress per step."""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import pytest
import torch

import tiny_latentsync as tl
from media import face_frames, tone
from musetalk_core.errors import InputError

FPS = 25.0
SECONDS = 0.4  # 10 output frames for 7 source frames: ping-pong 0..6, 6, 5, 4


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    from tiny import write_models

    root = tmp_path_factory.mktemp("ls_models")
    write_models(root, "v15")
    return tl.write_latentsync_files(root)


@pytest.fixture
def tiny_versions(monkeypatch):
    tl.use_tiny_versions(monkeypatch)


@pytest.fixture(scope="module")
def clip():
    frames = face_frames(7, 128, 112)
    frames[3] = 128  # a flat grey frame: no face (cut-away)
    images = torch.from_numpy(frames).float() / 255.0
    audio = {"waveform": torch.from_numpy(tone(SECONDS, 16000, 1))[None], "sample_rate": 16000}
    return images, audio


@pytest.fixture(scope="module")
def prepared(pack, models_dir, clip):
    """MuseTalk's shared stages (detection, landmarks, Whisper) run once for the tests here."""
    import os

    old = os.environ.get("MUSETALK_MODELS_DIR")
    os.environ["MUSETALK_MODELS_DIR"] = str(models_dir)
    try:
        nodes = pack.NODE_CLASS_MAPPINGS
        images, audio = clip
        (mt,) = nodes["LoadMuseTalkModels"]().load("v15", "fp32", "cpu", "torch")
        faces, _, _ = nodes["FaceDetectAndParse"]().prepare(mt, images=images)
        features, count, _ = nodes["WhisperAudioEncode"]().encode(mt, audio, FPS, 2, 2, "v1.0-original", -45.0)
    finally:
        if old is None:
            os.environ.pop("MUSETALK_MODELS_DIR")
        else:
            os.environ["MUSETALK_MODELS_DIR"] = old
    return faces, features, count


def test_latentsync_nodes_end_to_end_with_a_face_less_frame_image_and_video(pack, models_env, models_dir, tiny_versions, clip,
                                                            prepared, monkeypatch):
    import importlib

    from musetalk_core.hooks import RunHooks

    comfy_bridge = importlib.import_module(pack.__name__ + ".nodes.comfy_bridge")
    nodes = pack.NODE_CLASS_MAPPINGS
    models_env(models_dir)
    images, audio = clip
    faces, features, count = prepared
    assert count == 10 and faces.has_face.tolist() == [True, True, True, False, True, True, True]
    progress = []  # per progress bar: [total, units advanced]

    def recording_hooks(total):
        bar = [total, 0]
        progress.append(bar)
        return RunHooks(advance=lambda n: bar.__setitem__(1, bar[1] + n))

    monkeypatch.setattr(comfy_bridge, "run_hooks", recording_hooks)

    (ls,) = nodes["LoadLatentSyncModel"]().load("latentsync15", "fp32", "cpu")
    generated, shown = nodes["LatentSyncInpaint"]().generate(ls, faces, features, inference_steps=1, images=images)
    # output 3 shows source frame 3 (no face): windows [0, 3) and [4, 10), 1 step each
    assert generated.source_index.tolist() == [0, 1, 2, 3, 4, 5, 6, 6, 5, 4]
    assert generated.has_face.tolist() == [True] * 3 + [False] + [True] * 6
    # alignment: one unit per source frame read (the 6 with a face; the face-less one is never decoded);
    # generation: one per denoising step of each window, all reached
    assert progress == [[6, 6], [2, 2]]
    assert shown.shape == (10, 256, 256, 3) and not generated.faces[3].any() and generated.faces[4].any()
    assert generated.settings["scheduler"] == "ddim"  # upstream's, unless the optional input says otherwise
    # the opt-in sampler reaches the windows: two windows of two DPM-Solver++ steps each, other faces
    fast, _ = nodes["LatentSyncInpaint"]().generate(ls, faces, features, inference_steps=2, images=images,
                                                    scheduler="dpm_solver++")
    assert fast.settings["scheduler"] == "dpm_solver++" and progress[-1] == [4, 4]
    assert not torch.equal(fast.faces, generated.faces) and not fast.faces[3].any()

    out, out_audio, fps, frames, video = nodes["BlendAndAssemble"]().blend(images=images, faces=faces,
                                                                          generated=generated)
    assert frames == 10 and out.shape == (10, 128, 112, 3) and fps == FPS
    assert out_audio["waveform"].shape[-1] == round(10 / FPS * 16000)
    src = (images * 255).round()
    assert torch.equal((out[3] * 255).round(), src[3])  # the face-less frame passes through unchanged
    for i, j in enumerate(generated.source_index.tolist()):
        if i != 3:
            changed = ((out[i] * 255).round() != src[j]).any(-1)
            assert 0.02 < changed.float().mean() < 0.9, i  # the face area, not the whole frame
    assert video.get_frame_count() == 10

    # the VIDEO path (a VIDEO holding the same frames): faces kept on disk, a sample shown, the same faces made;
    # BlendAndAssemble's VIDEO path writes the clip through the same affine restore
    from musetalk_core.io.video_read import probe
    from nodes.video_types import ComponentsVideo

    clip_video = ComponentsVideo(images, audio, Fraction(25))
    from_video, sample = nodes["LatentSyncInpaint"]().generate(ls, faces, features, inference_steps=1,
                                                               video=clip_video)
    assert not isinstance(from_video.faces, torch.Tensor) and sample.shape[0] == 10
    assert torch.equal(from_video.faces[list(range(10))], generated.faces)
    strip, _, _, count, written = nodes["BlendAndAssemble"]().blend(video=clip_video, faces=faces,
                                                                     generated=from_video)
    assert count == 10 and probe(written.get_stream_source())["frames"] == 10
    assert torch.equal((strip[3] * 255).round(), src[3])  # the strip holds all 10 frames; 3 passes through


def test_short_audio_aligns_only_the_frames_it_uses(pack, models_env, models_dir, tiny_versions, clip, prepared,
                                                   monkeypatch):
    """Audio for 2 frames on a 7-frame video: only source frames 0 and 1 are read and aligned."""
    import importlib

    from musetalk_core.hooks import RunHooks

    comfy_bridge = importlib.import_module(pack.__name__ + ".nodes.comfy_bridge")
    nodes = pack.NODE_CLASS_MAPPINGS
    models_env(models_dir)
    images, audio = clip
    faces, _, _ = prepared
    short = {"waveform": audio["waveform"][..., :int(16000 * 2 / FPS)], "sample_rate": 16000}
    (mt,) = nodes["LoadMuseTalkModels"]().load("v15", "fp32", "cpu", "torch")
    features, count, _ = nodes["WhisperAudioEncode"]().encode(mt, short, FPS, 2, 2, "v1.0-original", -45.0)
    totals = []
    monkeypatch.setattr(comfy_bridge, "run_hooks", lambda total: totals.append(total) or RunHooks())
    (ls,) = nodes["LoadLatentSyncModel"]().load("latentsync15", "fp32", "cpu")
    generated, _ = nodes["LatentSyncInpaint"]().generate(ls, faces, features, inference_steps=1, images=images)
    assert count == 2 and generated.source_index.tolist() == [0, 1] and generated.has_face.all()
    assert totals[0] == 2  # the alignment pass read 2 of the 7 frames


def test_inpaint_refuses_reference_audio_features(pack, models_env, models_dir, tiny_versions, clip, prepared):
    nodes = pack.NODE_CLASS_MAPPINGS
    models_env(models_dir)
    faces, features, _ = prepared
    (ls,) = nodes["LoadLatentSyncModel"]().load("latentsync15", "fp32", "cpu")
    with pytest.raises(InputError, match="v1.0-original"):
        nodes["LatentSyncInpaint"]().generate(ls, faces, replace(features, feature_mode="reference"),
                                              images=clip[0])
    with pytest.raises(InputError, match="not the frames"):
        nodes["LatentSyncInpaint"]().generate(ls, faces, features, images=clip[0].flip(0))


def test_insightface_backend_names_the_install_command():
    from musetalk_core.generators.latentsync.landmarks import InsightFaceLandmarks

    try:
        import insightface  # noqa: F401
    except ImportError:
        with pytest.raises(InputError, match="pip install insightface onnxruntime"):
            InsightFaceLandmarks(Path("nowhere"))
    else:
        pytest.skip("insightface is installed here: the missing-package message cannot be shown")


def test_cli_generator_latentsync(models_dir, tiny_versions, tmp_path, capsys):
    """``--generator latentsync15``: the graph's stages through the streaming command line; exact frames and audio."""
    from fractions import Fraction

    from media import write_video, write_wav
    from musetalk_core import cli
    from musetalk_core.io import video_read

    video = write_video(tmp_path / "in.mp4", face_frames(4, 128, 112), Fraction(25))
    audio = write_wav(tmp_path / "speech.wav", tone(0.2, 16000, 1), 16000)  # 5 frames: ping-pong 0..3, 3
    out = tmp_path / "result.mp4"
    code = cli.main(["lipsync", "--video", str(video), "--audio", str(audio), "--output", str(out),
                     "--models-dir", str(models_dir), "--generator", "latentsync15", "--inference-steps", "1",
                     "--device", "cpu", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 0, err
    info = video_read.probe(out)
    assert info["frames"] == 5 and info["fps"] == 25
    assert info["audio_seconds"] == pytest.approx(5 / 25, abs=2e-3)
    args = cli.build_parser().parse_args(["lipsync", "--video", "v", "--audio", "a", "-o", "o.mp4",
                                          "--generator", "latentsync16"])
    options = cli.options_from_args(args)
    assert options.seed == 1247 and options.feature_mode == "v1.0-original" and options.inference_steps == 20
    code = cli.main(["lipsync", "--video", str(video), "--audio", str(audio), "--output", str(tmp_path / "x.mp4"),
                     "--models-dir", str(models_dir), "--generator", "latentsync15", "--feature-mode", "reference",
                     "--device", "cpu", "--no-progress"])
    assert code == 2 and "v1.0-original" in capsys.readouterr().err and not (tmp_path / "x.mp4").exists()
    # --unet-config reaches the loader (LoadLatentSyncModel's unet_config; tests/test_latentsync.py loads one)
    code = cli.main(["lipsync", "--video", str(video), "--audio", str(audio), "--output", str(tmp_path / "y.mp4"),
                     "--models-dir", str(models_dir), "--generator", "latentsync15", "--unet-config",
                     "configs/missing_stage1.yaml", "--device", "cpu", "--no-progress"])
    assert code == 2 and "missing_stage1.yaml' not found" in capsys.readouterr().err


def test_load_node_takes_a_config_file_last(pack):
    """unet_config is the last widget (saved UI workflows keep their positions) and optional (API prompts without
    it stay valid); empty means the version's own config."""
    node = pack.NODE_CLASS_MAPPINGS["LoadLatentSyncModel"]
    types = node.INPUT_TYPES()
    assert list(types["required"]) == ["version", "precision", "device"]
    assert list(types["optional"]) == ["unet_config"] and types["optional"]["unet_config"][1]["default"] == ""


def test_insightface_backend_applies_upstreams_face_filters(monkeypatch, tmp_path):
    """With the optional package present (a stand-in module here: insightface is not installed), the backend keeps
    upstream's FaceDetector choice: the largest face with w >= 50, h >= 80, 0.2 <= w/h <= 1.5, score >= 0.5, and
    its 106 landmarks rounded; models are required on disk first (FaceAnalysis would download them)."""
    import sys
    import types

    import numpy as np

    from musetalk_core.errors import ModelFilesMissing
    from musetalk_core.generators.latentsync.landmarks import InsightFaceLandmarks

    class Face:
        def __init__(self, box, score, value):
            self.bbox, self.det_score = np.array(box, float), score
            self.landmark_2d_106 = np.full((106, 2), value)

    faces = [Face((0, 0, 200, 100), 0.9, 1.0),     # w/h 2.0: too wide
             Face((0, 0, 60, 90), 0.9, 2.4),       # kept, small
             Face((0, 0, 120, 160), 0.4, 3.0),     # score too low
             Face((0, 0, 100, 150), 0.8, 4.6),     # kept, the largest
             Face((0, 0, 40, 100), 0.9, 5.0)]      # w < 50

    class FaceAnalysis:
        def __init__(self, allowed_modules, root, providers):
            assert allowed_modules == ["detection", "landmark_2d_106"]
            self.root = root

        def prepare(self, ctx_id, det_size):
            assert det_size == (512, 512)

        def get(self, frame):
            return faces

    app = types.ModuleType("insightface.app")
    app.FaceAnalysis = FaceAnalysis
    monkeypatch.setitem(sys.modules, "insightface", types.ModuleType("insightface"))
    monkeypatch.setitem(sys.modules, "insightface.app", app)
    with pytest.raises(ModelFilesMissing, match="buffalo_l"):
        InsightFaceLandmarks(tmp_path)
    (tmp_path / "models" / "buffalo_l").mkdir(parents=True)
    (tmp_path / "models" / "buffalo_l" / "2d106det.onnx").write_bytes(b"")
    detector = InsightFaceLandmarks(tmp_path)
    np.testing.assert_array_equal(detector(np.zeros((200, 200, 3), np.uint8)), np.full((106, 2), 5))
    faces[:] = faces[:1]
    assert detector(np.zeros((200, 200, 3), np.uint8)) is None


def test_insightface_runs_on_the_chosen_gpu():
    """'cuda:1' gives onnxruntime's CUDA provider device_id 1 (insightface's ctx_id alone would pick GPU 0)."""
    from musetalk_core.generators.latentsync.landmarks import onnx_providers

    assert onnx_providers("cuda:1") == ([("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"], 1)
    assert onnx_providers("cuda") == ([("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"], 0)
    assert onnx_providers("cpu") == (["CPUExecutionProvider"], -1)
    assert onnx_providers("mps") == (["CPUExecutionProvider"], -1)


def test_missing_latentsync_files_refuse_the_prompt_before_anything_runs(pack, models_env, models_dir,
                                                                         tiny_models_factory):
    """Load LatentSync Model's VALIDATE_INPUTS (ComfyUI: before any node runs): every LatentSync file, named as
    LatentSync's (not MuseTalk's)."""
    load = pack.NODE_CLASS_MAPPINGS["LoadLatentSyncModel"]
    models_env(tiny_models_factory("v15"))  # MuseTalk's files only
    problem = load.VALIDATE_INPUTS("latentsync15")
    assert "LatentSync model files are missing (2)" in problem and "MuseTalk model files" not in problem
    assert "latentsync15/latentsync_unet.pt" in problem and "--download-models latentsync15" in problem
    models_env(models_dir)
    assert load.VALIDATE_INPUTS("latentsync15") is True and load.VALIDATE_INPUTS(None) is True
    assert "LatentSync model files are missing (1)" in load.VALIDATE_INPUTS("latentsync16")  # its 512 px UNet
    assert "version: 'latentsync20' is not one of" in load.VALIDATE_INPUTS("latentsync20")


def test_insightface_alignment_is_checked_before_anything_runs(pack):
    inpaint = pack.NODE_CLASS_MAPPINGS["LatentSyncInpaint"]
    assert inpaint.VALIDATE_INPUTS("dwpose") is True
    try:
        import insightface  # noqa: F401
    except ImportError:
        assert "pip install insightface onnxruntime" in inpaint.VALIDATE_INPUTS("insightface")
    else:
        assert "buffalo_l" in inpaint.VALIDATE_INPUTS("insightface")


def test_audio_node_refuses_features_its_latentsync_node_cannot_use(pack, models_env, models_dir, clip):
    """WhisperAudioEncode runs before face detection; LatentSyncInpaint after it. So the encoder refuses features a
    LatentSyncInpaint it feeds would refuse (the same check), and lets them through for a MuseTalk UNet."""
    nodes = pack.NODE_CLASS_MAPPINGS
    models_env(models_dir)
    (mt,) = nodes["LoadMuseTalkModels"]().load("v15", "fp32", "cpu", "torch")
    encode = nodes["WhisperAudioEncode"]().encode
    graph = {"6": {"class_type": "WhisperAudioEncode", "inputs": {}},
             "8": {"class_type": "LatentSyncInpaint", "inputs": {"audio_features": ["6", 0]}},
             "9": {"class_type": "MuseTalkUNetInpaint", "inputs": {"audio_features": ["7", 0]}}}
    with pytest.raises(InputError, match="LatentSync needs WhisperAudioEncode's feature_mode 'v1.0-original'"):
        encode(mt, clip[1], FPS, 2, 2, "reference", -45.0, prompt=graph, unique_id="6")
    with pytest.raises(InputError, match="audio_padding_left/right are 1/2"):
        encode(mt, clip[1], FPS, 1, 2, "v1.0-original", -45.0, prompt=graph, unique_id="6")
    assert encode(mt, clip[1], FPS, 2, 2, "v1.0-original", -45.0, prompt=graph, unique_id="6")[1] == 10
    assert encode(mt, clip[1], FPS, 2, 2, "reference", -45.0, prompt=graph, unique_id="7")[1] == 10  # MuseTalk UNet
