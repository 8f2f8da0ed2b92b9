"""GPU speed paths that can be checked on the CPU: acceleration settings, static padded batches, memory format,
silence skipping, and the TAESD decoder choice (layout, strict loading, latent scale, download set).

The CUDA-graph capture itself needs a GPU: tests/test_cuda.py runs it against the default path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from musetalk_core.generators.musetalk import accel
from musetalk_core.weights import download
from musetalk_core.weights import loading
from musetalk_core.weights import files as model_files
from musetalk_core.generators.musetalk import generate as gen_mod
from musetalk_core.errors import InputError, ModelFilesMissing, WeightFileError
from musetalk_core.generators.musetalk.generate import generate_faces
from musetalk_core.models.taesd import build_taesd_decoder
from musetalk_core.types import MuseTalkAudio
from test_generate import assert_same_faces, make_audio, make_latents
from test_latents import golden  # noqa: F401  (the golden file fixture)

# The published taesd_decoder layout (madebyollin/taesd README: 1,222,531 decoder parameters): index positions
# of an nn.Sequential are the key names; the upsampling convolutions (7, 12, 17) have no bias.
TAESD_PARAMETERS = 1_222_531


@pytest.fixture(scope="module")
def models(tiny_models_factory):
    folder = tiny_models_factory("v15", ["unet", "vae"])
    loading.clear_cache()  # a models object of our own: these tests switch its memory format back and forth
    out = loading.load_models([folder], "v15", precision="fp32", device="cpu", networks=["unet", "vae", "pe"])
    loading.clear_cache()
    return out


@pytest.fixture(scope="module")
def default_run(models, golden):  # noqa: F811
    return generate_faces(models, make_latents(golden), make_audio(golden), batch_size=3)


# ------------------------------------------------------------------------------------------------ settings

def test_acceleration_parse_and_names():
    assert accel.Acceleration.parse("off") == accel.Acceleration() and accel.Acceleration().name == "off"
    a = accel.Acceleration.parse("channels_last+cuda_graphs")
    assert a.channels_last and a.cuda_graphs and not a.compile and a.static_shapes
    assert a.name == "channels_last+cuda_graphs"
    assert not accel.Acceleration.parse("channels_last+cudnn_benchmark").static_shapes
    for choice in accel.ACCELERATIONS:
        assert accel.Acceleration.parse(choice).name == choice
    with pytest.raises(InputError, match="tensorrt"):
        accel.Acceleration.parse("cuda_graphs+tensorrt")


def test_cudnn_benchmark_is_switched_on_for_the_run_only():
    cudnn = torch.backends.cudnn
    before = cudnn.benchmark
    with accel.backend_flags(accel.Acceleration.parse("cudnn_benchmark"), torch.device("cuda")):
        assert cudnn.benchmark
    assert cudnn.benchmark == before
    with accel.backend_flags(accel.Acceleration.parse("cudnn_benchmark"), torch.device("cpu")):
        assert cudnn.benchmark == before


def test_pad_rows_repeats_the_last_row():
    x = torch.arange(6.0).reshape(3, 2)
    padded = accel.pad_rows(x, 5)
    assert padded.tolist() == [[0, 1], [2, 3], [4, 5], [4, 5], [4, 5]]
    assert accel.pad_rows(x, 3) is x
    with pytest.raises(ValueError):
        accel.pad_rows(x, 2)


def test_call_plan_pads_only_for_compile_and_runs_a_short_batch_eagerly_with_graphs():
    plan, parse = accel.call_plan, accel.Acceleration.parse
    graphs = parse("cuda_graphs")
    assert [plan(n, 3, graphs, graphs=True) for n in (3, 3, 1)] == ["graph", "graph", "eager"]
    assert [plan(n, 3, graphs, graphs=False) for n in (3, 1)] == ["eager", "eager"]  # a CPU: nothing changes
    for setting in ("off", "channels_last", "cudnn_benchmark", "channels_last+cudnn_benchmark"):
        assert {plan(n, 4, parse(setting), graphs=True) for n in (1, 4)} == {"eager"}
    assert plan(4, 4, parse("channels_last+cuda_graphs"), graphs=True) == "graph"
    assert plan(2, 4, parse("channels_last+cudnn_benchmark+cuda_graphs"), graphs=True) == "eager"
    for n in (1, 4):  # compile pads (a new shape would compile again); with graphs the padded step is captured
        assert plan(n, 4, parse("compile"), graphs=True) == "padded"
        assert plan(n, 4, parse("cuda_graphs+compile"), graphs=True) == "graph"
        assert plan(n, 4, parse("cuda_graphs+compile"), graphs=False) == "padded"
    for n in (0, 5):
        with pytest.raises(ValueError):
            plan(n, 4, graphs, graphs=True)


class _ReplayingGraph:
    """Stands in for torch.cuda.CUDAGraph on the CPU: replay() runs fn on the captured input buffers into the
    captured output buffer, as a real replay does."""

    def __init__(self, fn, inputs):
        self.fn, self.inputs = fn, inputs
        self.output = fn(*inputs).clone()

    def replay(self):
        self.output.copy_(self.fn(*self.inputs))


class _CpuGraphRunner(accel.StaticRunner):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.use_graph = True  # as on a CUDA device

    def _capture(self, inputs):
        self.static_inputs = [accel.pad_rows(x, self.batch).clone() for x in inputs]
        self.graph = _ReplayingGraph(self.fn, self.static_inputs)
        self.static_output = self.graph.output


def _rows_fn(seen):
    def fn(a, b):
        seen.append((tuple(a.shape), tuple(b.shape)))
        return a * 10 + b.sum(dim=1, keepdim=True)

    return fn


def test_static_runner_with_graphs_replays_full_batches_and_runs_the_last_one_as_given():
    seen = []
    runner = _CpuGraphRunner(_rows_fn(seen), 3, torch.device("cpu"), accel.Acceleration.parse("cuda_graphs"))
    a, b = torch.arange(7.0)[:, None], torch.ones(7, 2)
    outs = [runner(a[i:i + 3], b[i:i + 3]).clone() for i in range(0, 7, 3)]
    assert torch.equal(torch.cat(outs), a * 10 + 2)
    assert seen == [((3, 1), (3, 2))] * 3 + [((1, 1), (1, 2))]  # capture + 2 replays at 3 rows; the last as given
    assert runner.plans == {"graph": 2, "padded": 0, "eager": 1} and runner.graph is not None
    with pytest.raises(ValueError):
        runner(torch.zeros(4, 1), torch.zeros(4, 2))


def test_static_runner_on_the_cpu_pads_for_compile_only(monkeypatch):
    seen = []
    fn = _rows_fn(seen)
    a, b = torch.arange(3.0)[:, None], torch.ones(3, 2)
    graphs = accel.StaticRunner(fn, 4, torch.device("cpu"), accel.Acceleration.parse("cuda_graphs"))
    assert graphs(a, b).tolist() == [[2.0], [12.0], [22.0]]
    assert seen == [((3, 1), (3, 2))] and graphs.plans["eager"] == 1  # no CPU capture: exactly the default call
    monkeypatch.setattr(torch, "compile", lambda f, **_: f)  # the padding logic, without Inductor
    compiled = accel.StaticRunner(fn, 4, torch.device("cpu"), accel.Acceleration.parse("compile"))
    assert compiled(a, b).tolist() == [[2.0], [12.0], [22.0]]
    assert compiled(a[:1], b[:1]).tolist() == [[2.0]]
    assert seen[1:] == [((4, 1), (4, 2))] * 2 and compiled.plans["padded"] == 2  # every call at the static size
    with pytest.raises(ValueError):
        compiled(torch.zeros(5, 1), torch.zeros(5, 2))


def test_runner_cache_keeps_one_runner_and_rebuilds_when_weights_move():
    store, lin = {}, torch.nn.Linear(2, 2)
    built = []

    def build():
        built.append(1)
        return accel.StaticRunner(lambda x: x, 2, torch.device("cpu"), accel.Acceleration.parse("cuda_graphs"))

    r1 = accel.runner_for(store, ("a",), [lin], build)
    assert accel.runner_for(store, ("a",), [lin], build) is r1
    r2 = accel.runner_for(store, ("b",), [lin], build)
    assert r2 is not r1 and len(built) == 2 and store[accel.RUNNER_SLOT][1] is r2
    lin.weight.data = lin.weight.data.clone()  # weights at a new address (e.g. offloaded and brought back)
    assert accel.runner_for(store, ("b",), [lin], build) is not r2 and len(built) == 3


# ------------------------------------------------------------------------------------------------ generate

def _spy_decoder(monkeypatch):
    shapes = []
    original = gen_mod.decode_faces

    def spy(vae, latents, scale):
        shapes.append(tuple(latents.shape))
        return original(vae, latents, scale)

    monkeypatch.setattr(gen_mod, "decode_faces", spy)
    return shapes


def test_cuda_graphs_setting_runs_the_default_batches_and_changes_nothing(models, golden, default_run,  # noqa: F811
                                                                         monkeypatch):
    models.extras.pop(accel.RUNNER_SLOT, None)  # a runner of its own: its call counts are read below
    shapes = _spy_decoder(monkeypatch)
    out = generate_faces(models, make_latents(golden), make_audio(golden), batch_size=3, acceleration="cuda_graphs")
    assert shapes == [(3, 4, 32, 32)] * 2 + [(1, 4, 32, 32)]  # 7 frames: 3 + 3 + 1, the last batch not padded
    runner = models.extras[accel.RUNNER_SLOT][1]
    assert runner.plans == {"graph": 0, "padded": 0, "eager": 3}  # no capture on the CPU
    assert torch.equal(out.faces, default_run.faces)
    assert out.settings["acceleration"] == "cuda_graphs" and out.settings["acceleration_build_s"] >= 0


def test_generate_with_graphs_takes_the_last_batch_eagerly(models, golden, default_run, monkeypatch):  # noqa: F811
    """The generate loop with a CPU stand-in for the captured graph: full batches replayed, the last one run at its
    own size, the faces the default's bit for bit (what a CUDA device must show: tests/test_cuda.py)."""
    monkeypatch.setattr(accel, "StaticRunner", _CpuGraphRunner)
    models.extras.pop(accel.RUNNER_SLOT, None)
    try:
        shapes = _spy_decoder(monkeypatch)
        out = generate_faces(models, make_latents(golden), make_audio(golden), batch_size=3,
                             acceleration="cuda_graphs")
        runner = models.extras[accel.RUNNER_SLOT][1]
        assert isinstance(runner, _CpuGraphRunner) and runner.plans == {"graph": 2, "padded": 0, "eager": 1}
        assert shapes == [(3, 4, 32, 32)] * 3 + [(1, 4, 32, 32)]  # capture, 2 replays at 3 rows, then 1 row
        assert torch.equal(out.faces, default_run.faces)
    finally:
        models.extras.pop(accel.RUNNER_SLOT, None)


def test_channels_last_is_close_and_off_restores_the_default_exactly(models, golden, default_run):  # noqa: F811
    unet, vae = models.network("unet"), models.network("vae")
    fast = generate_faces(models, make_latents(golden), make_audio(golden), batch_size=3,
                          acceleration="channels_last")
    conv = unet.conv_in.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and conv.stride()[1] == 1
    assert vae.decoder.conv_in.weight.stride()[1] == 1
    assert vae.encoder.conv_in.weight.is_contiguous()  # the encoder (VAEEncodeMasked) is left alone
    assert_same_faces(fast.faces, default_run.faces)
    again = generate_faces(models, make_latents(golden), make_audio(golden), batch_size=3)
    assert unet.conv_in.weight.is_contiguous() and vae.decoder.conv_in.weight.is_contiguous()
    assert torch.equal(again.faces, default_run.faces)  # acceleration off: bit for bit the default again


def _silent_audio(golden, silent):  # noqa: F811
    base = make_audio(golden)
    return MuseTalkAudio(features=base.features, fps=base.fps, silent=torch.tensor(silent), audio=base.audio,
                         version=base.version)


def test_skip_silent_generates_only_the_voiced_frames(models, golden, monkeypatch):  # noqa: F811
    silent = [False, True, True, False, False, True, False]
    audio = _silent_audio(golden, silent)
    full = generate_faces(models, make_latents(golden), audio, batch_size=1)
    shapes = _spy_decoder(monkeypatch)
    skip = generate_faces(models, make_latents(golden), audio, batch_size=1, skip_silent=True)
    assert len(shapes) == 4  # the UNet + decoder ran for the 4 voiced frames only
    assert skip.skipped.tolist() == silent and skip.has_face.all()
    voiced = ~torch.tensor(silent)
    assert torch.equal(skip.faces[voiced], full.faces[voiced])  # batch 1: each frame computed alone, same bits
    assert int(skip.faces[~voiced].max()) == 0
    assert full.skipped is None


def test_skipped_frames_blend_to_exactly_the_full_run_with_silence_handling(models, golden):  # noqa: F811
    from musetalk_core.blend.blender import blend_frames
    from test_blend import make_faces, synthetic_video, to_image

    silent = [False, True, True, False, False, True, False]
    audio = _silent_audio(golden, silent)
    full = generate_faces(models, make_latents(golden), audio, batch_size=1)
    skip = generate_faces(models, make_latents(golden), audio, batch_size=1, skip_silent=True)
    frames, boxes, crops, masks = synthetic_video(n=3, seed=3)
    faces = make_faces(frames, boxes, crops, masks, fingerprint=False)
    images = to_image(frames)
    want = blend_frames(images, faces, full, silence_handling=True, silence_fade_frames=1)[0]
    got = blend_frames(images, faces, skip, silence_handling=True, silence_fade_frames=1)[0]
    assert torch.equal(got, want)
    with pytest.raises(InputError, match="silence_handling"):
        blend_frames(images, faces, skip, silence_handling=False)


def test_pipeline_skips_silent_frames_only_with_silence_handling(monkeypatch):
    import node_chain
    from musetalk_core.options import LipsyncOptions

    calls = {}

    def fake_generate(*args, **kwargs):
        calls.update(kwargs)
        raise RuntimeError("stop")

    monkeypatch.setattr(gen_mod, "generate_faces", fake_generate)
    monkeypatch.setattr("musetalk_core.audio.windows.encode_audio", lambda *a, **k: make_audio_stub())
    for handling in (False, True):
        opts = LipsyncOptions(silence_handling=handling, decoder="taesd", acceleration="cuda_graphs")
        with pytest.raises(RuntimeError, match="stop"):
            node_chain.drive(None, node_chain.PreparedVideo(None, None, None), {}, 25.0, opts)
        assert calls["skip_silent"] is handling
        assert (calls["decoder"], calls["acceleration"]) == ("taesd", "cuda_graphs")


def make_audio_stub():
    return MuseTalkAudio(features=torch.zeros(2, 50, 384), fps=25.0, silent=torch.zeros(2, dtype=torch.bool),
                         audio={})


def test_generate_rejects_unknown_decoder_and_acceleration(models, golden):  # noqa: F811
    with pytest.raises(InputError, match="decoder"):
        generate_faces(models, make_latents(golden), make_audio(golden), decoder="consistency")
    with pytest.raises(InputError, match="acceleration"):
        generate_faces(models, make_latents(golden), make_audio(golden), acceleration="warp")


# ------------------------------------------------------------------------------------------------ TAESD

def _write_taesd(folder, seed=0, extra=None):
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    decoder = build_taesd_decoder()
    state = {k: v.contiguous() for k, v in decoder.state_dict().items()}
    if extra:
        state.update(extra)
    path = folder / "taesd" / "taesd_decoder.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path))
    return decoder


def test_taesd_decoder_has_the_published_layout():
    decoder = build_taesd_decoder()
    keys = set(decoder.state_dict())
    assert sum(p.numel() for p in decoder.parameters()) == TAESD_PARAMETERS
    assert {"1.weight", "1.bias", "3.conv.0.weight", "3.conv.4.bias", "7.weight", "18.conv.2.weight",
            "19.weight", "19.bias"} <= keys
    assert not {"7.bias", "12.bias", "17.bias"} & keys and not any(".skip." in k for k in keys)
    assert max(int(k.split(".")[0]) for k in keys) == 19
    assert tuple(decoder(torch.zeros(1, 4, 32, 32)).shape) == (1, 3, 256, 256)


def test_taesd_loads_strictly_on_demand_and_decodes_unscaled_latents(models, golden, tmp_path, monkeypatch):  # noqa: F811
    written = _write_taesd(tmp_path)
    # the same networks, searched in a folder that also holds the TAESD file
    models.extras["search_dirs"] = list(models.extras.get("search_dirs", [])) + [tmp_path]
    try:
        seen = []
        original = gen_mod.decode_faces_taesd

        def spy(decoder, latents):
            seen.append(latents.clone())
            return original(decoder, latents)

        monkeypatch.setattr(gen_mod, "decode_faces_taesd", spy)
        out = generate_faces(models, make_latents(golden), make_audio(golden, frames=2), batch_size=2,
                             decoder="taesd")
        taesd = models.network("taesd")
        for a, b in zip(taesd.state_dict().values(), written.state_dict().values()):
            assert torch.equal(a, b)
        pred = torch.from_numpy(golden["unet_out"])[:2]
        assert (seen[0] - pred).abs().max() < 1e-4  # the UNet's latents as they are: no 1 / 0.18215
        with torch.inference_mode():
            image = taesd(seen[0]).clamp(0, 1).permute(0, 2, 3, 1)
        assert torch.equal(out.faces, (image * 255).round().to(torch.uint8))
        assert out.settings["decoder"] == "taesd"
    finally:
        models.networks.pop("taesd", None)
        models.extras["search_dirs"] = models.extras["search_dirs"][:-1]


def test_taesd_file_is_checked_and_missing_file_names_the_download(tmp_path, models):
    _write_taesd(tmp_path, extra={"20.weight": torch.zeros(1)})
    with pytest.raises(WeightFileError, match="20.weight"):
        loading.load_models([tmp_path], "v15", precision="fp32", device="cpu", networks=["taesd"])
    empty = tmp_path / "empty"
    empty.mkdir()
    saved = models.extras["search_dirs"]
    models.extras["search_dirs"] = [empty]
    try:
        with pytest.raises(ModelFilesMissing, match="--download-models taesd"):
            loading.ensure_network(models, "taesd")
    finally:
        models.extras["search_dirs"] = saved
    assert "taesd" not in [n for n in loading.NETWORKS if n not in loading.OPTIONAL_NETWORKS]


def test_taesd_download_set(tmp_path):
    calls = []

    def write(spec, target):
        calls.append((spec.role, spec.repo, spec.repo_file, target))
        target.write_bytes(b"x")

    written = download.download_models("taesd", tmp_path, fetchers={"hf": write, "url": write},
                                       report=lambda _: None)
    assert calls == [("taesd_decoder", "madebyollin/taesd", "taesd_decoder.safetensors",
                      tmp_path / "taesd" / "taesd_decoder.safetensors")]
    assert written == [tmp_path / "taesd" / "taesd_decoder.safetensors"]
    assert "taesd_decoder" not in [f.role for f in model_files.files_for("v15")]
    assert "taesd_decoder" in [f.role for f in download.files_to_fetch("all")]


# ------------------------------------------------------------------------------------------------ benchmarks

def test_gpu_session_script_parses():
    import subprocess

    from conftest import ROOT

    subprocess.run(["bash", "-n", str(ROOT / "benchmarks" / "gpu_session.sh")], check=True)
    text = (ROOT / "benchmarks" / "gpu_session.sh").read_text()
    assert "fast)" in text and "benchmarks.speed" in text and "cuda_graphs+compile" in text
    assert "graphs)" in text and "speed-graphs-short-batch.json" in text  # the eager last batch, on a GPU


_RECORDING_PYTHON = """
import json, os, sys
with open(os.environ["ARGS_LOG"], "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
"""


def test_gpu_session_first_step_commands_parse(tmp_path):
    """The one device call a lent GPU gets (15 minutes in all): every benchmark command of ``first``, with its real
    (CUDA) arguments, parses, in the planned order, and the results archive is packed. Nothing runs: python3 is a
    stand-in that records its arguments, parsed here by each benchmark's own parser."""
    import importlib
    import json
    import os
    import subprocess
    import sys
    import tarfile

    from conftest import ROOT

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (tmp_path / "record.py").write_text(_RECORDING_PYTHON)
    shim = bin_dir / "python3"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "{tmp_path / "record.py"}" "$@"\n')
    shim.chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", OUT=str(tmp_path / "out"),
               ARGS_LOG=str(tmp_path / "args.jsonl"), FIRST_RESULTS=str(tmp_path / "results"))
    env.pop("FIRST_DRY", None)
    subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_session.sh"), "first"], cwd=tmp_path, env=env, check=True,
                   timeout=120)
    calls = [json.loads(line) for line in (tmp_path / "args.jsonl").read_text().splitlines()]
    modules = [argv[1] for argv in calls if argv[:1] == ["-m"]]
    assert modules == ["benchmarks.run", "benchmarks.run", "pytest", "benchmarks.realtime", "benchmarks.realtime",
                       "benchmarks.run", "benchmarks.run"] + ["benchmarks.latentsync"] * 3
    benchmarks = [argv[1:] for argv in calls if argv[:1] == ["-m"] and argv[1].startswith("benchmarks.")]
    for module, *args in benchmarks:
        importlib.import_module(module).build_parser().parse_args(args)  # SystemExit(2) names a wrong argument
        assert "cuda" in args and "--json" in args, (module, args)
    exact, ahead_off = benchmarks[0], benchmarks[4]
    assert "video_file" in exact and "avatar_file" in exact and "--generate-ahead" not in exact  # the default
    assert ahead_off[ahead_off.index("--generate-ahead") + 1] == "off"
    with tarfile.open(tmp_path / "out" / "first-results.tgz") as packed:
        assert "./logs.txt" in packed.getnames()


def test_speed_benchmark_smoke_compares_variants_with_the_default(tmp_path, monkeypatch):
    from benchmarks import speed

    monkeypatch.setenv("MUSETALK_BENCH_CACHE", str(tmp_path / "cache"))
    report = speed.main(["--smoke", "--frames", "1", "--threads", "2", "--variants", "off",
                         "taesd:channels_last+cuda_graphs@1", "--speed-stages", "unet_decode",
                         "--json", str(tmp_path / "s.json")])
    rows = {r["variant"]: r for r in report["variants"]}
    assert list(rows) == ["vae:off@1", "taesd:channels_last+cuda_graphs@1", "vae:off@8"]  # defaults added first
    for row in rows.values():
        assert row["stages"]["unet_decode"]["fps"] > 0, row
    assert "faces_vs_default" in rows["taesd:channels_last+cuda_graphs@1"]  # compared with vae:off@1
    assert speed.parse_variant("taesd:cuda_graphs+channels_last@8", 32) == ("taesd", "channels_last+cuda_graphs", 8)
    assert (tmp_path / "s.json").exists()


def test_unet_node_passes_decoder_and_acceleration_through(models, golden, default_run, monkeypatch):  # noqa: F811
    """The graph exposes the presets: the node's choices parse, and its run equals the library call's."""
    from nodes.unet_inpaint import ACCELERATION_CHOICES, DECODER_CHOICES, MuseTalkUNetInpaint

    assert set(DECODER_CHOICES) == set(gen_mod.DECODERS)
    for preset in ACCELERATION_CHOICES:
        accel.Acceleration.parse(preset)
    required = MuseTalkUNetInpaint.INPUT_TYPES()["required"]
    assert required["decoder"][1]["default"] == "vae" and required["acceleration"][1]["default"] == "off"
    shapes = _spy_decoder(monkeypatch)
    generated, _ = MuseTalkUNetInpaint().generate(models, make_latents(golden), make_audio(golden), "ping_pong", 0,
                                                  3, decoder="vae", acceleration="cuda_graphs")
    assert shapes == [(3, 4, 32, 32)] * 2 + [(1, 4, 32, 32)]  # on a CPU cuda_graphs runs the default's batches
    assert generated.settings["acceleration"] == "cuda_graphs" and generated.settings["decoder"] == "vae"
    assert torch.equal(generated.faces, default_run.faces)
