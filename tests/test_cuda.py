"""The CUDA paths against the same goldens as the CPU tests (skipped where torch sees no CUDA GPU).

Tolerances are wider than on the CPU on purpose: cuDNN picks its own convolution algorithms and uses TF32 for fp32
convolutions by default (as it does for the reference on a GPU), fp16/bf16 round every layer. Each test prints what
it measured (`pytest -s tests/test_cuda.py`); BENCHMARKS.md says how to run this file on a lent GPU machine
(benchmarks/gpu_session.sh).

The PSNR bounds are the lowest figure measured in the H100 sessions of 2026-11-26 (cuda-tests.log in
benchmarks/results/gpu-h100-2026-11-26*/) minus a margin of 3 dB (twice the mean squared error), for other cards'
kernels (another GPU may pick other convolution algorithms); the measured range is next to each bound.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

CUDA = torch.device("cuda")
MARGIN_DB = 3.0  # below the lowest measured PSNR: twice the squared error


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    from benchmarks.fidelity import image_error

    return image_error(b, a)["psnr_db"]


@pytest.fixture(scope="module")
def generator_golden():
    from test_generate import GOLDEN

    return np.load(GOLDEN)


@pytest.fixture(scope="module")
def generator_folder(tiny_models_factory):
    return tiny_models_factory("v15", ["unet", "vae"])


def _generate(folder, golden, precision):
    from musetalk_core.weights import loading
    from musetalk_core.generators.musetalk.generate import generate_faces
    from test_generate import make_audio, make_latents

    models = loading.load_models([folder], "v15", precision=precision, device="cuda", networks=["unet", "vae", "pe"])
    assert models.device.type == "cuda"
    with torch.inference_mode():
        out = generate_faces(models, make_latents(golden), make_audio(golden), batch_size=int(golden["ref_batch"]))
    return out.faces.cpu()


def test_generator_fp32_on_cuda_matches_the_reference(generator_folder, generator_golden):
    faces = _generate(generator_folder, generator_golden, "fp32")
    want = torch.from_numpy(generator_golden["faces_rgb"])
    diff = (faces.int() - want.int()).abs()
    print(f"cuda fp32 faces: max {int(diff.max())} levels, {float((diff > 0).double().mean()):.2e} changed, "
          f"PSNR {_psnr(faces, want):.1f} dB")
    assert faces.shape == want.shape
    assert float(diff.double().mean()) < 0.5 and _psnr(faces, want) > 58.8 - MARGIN_DB  # measured 58.8-59.6 dB


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_generator_reduced_precision_on_cuda_stays_close(generator_folder, generator_golden, precision):
    faces = _generate(generator_folder, generator_golden, precision)
    want = torch.from_numpy(generator_golden["faces_rgb"])
    psnr = _psnr(faces, want)
    print(f"cuda {precision} faces: mean {float((faces.int() - want.int()).abs().double().mean()):.3f} levels, "
          f"PSNR {psnr:.1f} dB")
    lowest = {"fp16": 54.5, "bf16": 40.2}[precision]  # measured: fp16 54.5-55.4 dB, bf16 40.2-41.3 dB
    assert psnr > lowest - MARGIN_DB


def test_latents_on_cuda_match_the_reference(generator_folder, generator_golden):
    from musetalk_core.weights import loading
    from musetalk_core.generators.musetalk.latents import encode_faces
    from test_latents import make_faces

    models = loading.load_models([generator_folder], "v15", precision="fp32", device="cuda", networks=["vae"])
    with torch.inference_mode():
        out = encode_faces(models, make_faces(generator_golden["crops_rgb"]), latent_mode="mean", batch_size=3)
    want = torch.from_numpy(generator_golden["latents"])
    err = (out.latents.cpu() - want).abs()
    print(f"cuda fp32 latents: max {float(err.max()):.2e}, relative L2 {float(err.norm() / want.norm()):.2e}")
    assert float(err.norm() / want.norm()) < 3e-3  # measured 1.37e-3-1.43e-3 (TF32 convolutions); 2x margin


def test_s3fd_on_cuda_finds_the_reference_boxes(tiny_models_factory):
    from musetalk_core.weights.loading import load_models
    from musetalk_core.models.s3fd import detect
    from test_detect_s3fd import GOLDEN

    data = np.load(GOLDEN)
    folder = tiny_models_factory("v15", networks=["s3fd", "landmarks"])
    net = load_models([folder], device="cuda", networks=["s3fd"]).network("s3fd")
    frames = [data[f"frame_{i}"] for i in range(len(data["final"]))]
    same = 0
    for frame, final in zip(frames, data["final"]):
        det = detect(net, torch.from_numpy(frame)[None].to(CUDA))[0]
        if final[0] >= 0:
            box = [int(v) for v in torch.clamp(det.boxes[0].cpu(), min=0).tolist()]
            same += box == list(final)
        else:
            same += det.boxes.shape[0] == 0
    print(f"cuda S3FD: {same} of {len(frames)} final boxes identical to the reference")
    assert same == len(frames)


def test_prepare_faces_on_cuda_equals_the_cpu(tmp_path):
    from musetalk_core.faces.prepare import prepare_faces
    from musetalk_core.weights.loading import load_models
    from test_pipeline_boxes import GOLDEN, NETWORKS, write_golden_models

    frames = torch.from_numpy(np.load(GOLDEN / "frames_crops.npz")["frames"])
    folder = write_golden_models(tmp_path)
    results = {}
    # TF32 off: cuDNN's default TF32 convolutions move DWPose's SimCC argmax on these calibrated tiny weights (a
    # CPU emulation of TF32 changed the boxes of 2 of 7 frames); this test is about our CUDA code path, not TF32
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        for device in ("cpu", "cuda"):
            models = load_models([folder], "v15", precision="fp32", device=device, networks=NETWORKS)
            results[device] = prepare_faces(models, frames, extra_margin=10)[0]
    cpu, gpu = results["cpu"], results["cuda"]
    assert torch.equal(cpu.has_face, gpu.has_face.cpu()) and torch.equal(cpu.boxes, gpu.boxes.cpu())
    crop_diff = (cpu.crops.int() - gpu.crops.cpu().int()).abs()
    mask_px = [int((torch.as_tensor(a).int() - torch.as_tensor(b).cpu().int()).abs().gt(2).sum())
               for a, b in zip(cpu.masks, gpu.masks) if a is not None]
    print(f"cuda faces: crops max diff {int(crop_diff.max())}, mask pixels off by > 2 levels per face {mask_px}")
    assert int(crop_diff.max()) == 0  # crops are cut and resized on the CPU from the same boxes
    assert all(n <= 50 for n in mask_px)  # BiSeNet argmax near-ties may flip a few label pixels


# ------------------------------------------------------------------------------------------------ speed settings

def _generate_with(folder, golden, precision, batch_size, **options):
    from musetalk_core.weights import loading
    from musetalk_core.generators.musetalk.generate import generate_faces
    from test_generate import make_audio, make_latents

    models = loading.load_models([folder], "v15", precision=precision, device="cuda", networks=["unet", "vae", "pe"])
    out = generate_faces(models, make_latents(golden), make_audio(golden), batch_size=batch_size, **options)
    return out, models


@pytest.mark.parametrize("acceleration", ["channels_last", "cudnn_benchmark", "cuda_graphs",
                                          "channels_last+cudnn_benchmark+cuda_graphs"])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_acceleration_on_cuda_stays_within_the_default_tolerances(generator_folder, generator_golden, acceleration,
                                                                  precision):
    want = torch.from_numpy(generator_golden["faces_rgb"])
    # batch 3 for 7 frames: two batches replayed from the graph, the last (1 frame) run eagerly (accel.call_plan)
    out, models = _generate_with(generator_folder, generator_golden, precision, 3, acceleration=acceleration)
    faces = out.faces.cpu()
    again = _generate_with(generator_folder, generator_golden, precision, 3, acceleration=acceleration)[0].faces.cpu()
    default = _generate_with(generator_folder, generator_golden, precision, 3)[0].faces.cpu()
    psnr, vs_default = _psnr(faces, want), _psnr(faces, default)
    print(f"cuda {precision} {acceleration}: PSNR {psnr:.1f} dB against the reference, {vs_default:.1f} dB against "
          f"the default; build {out.settings.get('acceleration_build_s', 0)} s")
    assert torch.equal(again, faces)  # replaying the captured graph (or re-running) gives the same faces
    if acceleration == "cuda_graphs":
        # full batches replay the graph, the short last one runs eagerly at its own size (accel.call_plan): the
        # default's faces bit for bit. Not yet run on a GPU: with the last batch padded (before) this measured
        # 67.7-68.5 dB (fp32) and 49.7-51.4 dB (bf16) against the default.
        assert torch.equal(faces, default)
    if precision == "fp32":
        # measured 58.0-59.5 dB against the reference, 57.6 dB-identical against the default
        assert float((faces.int() - want.int()).abs().double().mean()) < 0.5 and psnr > 58.0 - MARGIN_DB
        assert vs_default > 57.6 - MARGIN_DB  # other kernels, same precision: rounding only
    else:
        # measured 40.2-41.3 dB against the reference, 46.1 dB-identical against the default
        assert psnr > 40.2 - MARGIN_DB
        assert vs_default > 46.1 - MARGIN_DB
    assert next(models.network("unet").parameters()).is_cuda


def test_cuda_graph_is_captured_once_and_reused(generator_folder, generator_golden):
    from musetalk_core.generators.musetalk import accel

    out, models = _generate_with(generator_folder, generator_golden, "fp32", 4, acceleration="cuda_graphs")
    runner = models.extras[accel.RUNNER_SLOT][1]
    graph = runner.graph
    assert graph is not None and runner.batch == 4
    again, _ = _generate_with(generator_folder, generator_golden, "fp32", 4, acceleration="cuda_graphs")
    assert models.extras[accel.RUNNER_SLOT][1].graph is graph and torch.equal(again.faces, out.faces)
    other, _ = _generate_with(generator_folder, generator_golden, "fp32", 2, acceleration="cuda_graphs")
    assert models.extras[accel.RUNNER_SLOT][1].batch == 2  # a new batch size replaces the old graph
    assert (other.faces.int() - out.faces.int()).abs().max() <= 2


def test_taesd_on_cuda_matches_the_cpu(generator_folder, generator_golden, tmp_path):
    from musetalk_core.weights import loading
    from musetalk_core.generators.musetalk.generate import generate_faces
    from test_accel import _write_taesd
    from test_generate import make_audio, make_latents

    _write_taesd(tmp_path)
    faces = {}
    for device in ("cpu", "cuda"):
        loading.clear_cache()
        models = loading.load_models([generator_folder, tmp_path], "v15", precision="fp32", device=device,
                                     networks=["unet", "vae", "pe"])
        faces[device] = generate_faces(models, make_latents(generator_golden), make_audio(generator_golden),
                                       batch_size=4, decoder="taesd",
                                       acceleration="cuda_graphs" if device == "cuda" else "off").faces.cpu()
    loading.clear_cache()
    psnr = _psnr(faces["cuda"], faces["cpu"])
    print(f"cuda taesd (cuda graphs) against cpu taesd: PSNR {psnr:.1f} dB")
    assert psnr > 79.8 - MARGIN_DB  # measured 79.8-79.9 dB


# ------------------------------------------------------------------------------------------- batches made ahead

@pytest.mark.parametrize("acceleration", ["off", "cuda_graphs"])
def test_batches_made_ahead_on_cuda_give_the_frames_made_in_turn(tiny_models_factory, monkeypatch, acceleration):
    """pipeline.render on a GPU makes the UNet batches on a worker thread ("auto"); the frames must equal those of
    batches made in turn, also with a CUDA graph captured on the worker (at the first batch, before the blend
    starts). Each run captures its own graph, and the CUDA-graph runs must equal the eager default too."""
    import time

    import musetalk_core.pipeline as pipeline
    from musetalk_core.generators.musetalk import accel
    from musetalk_core.io.sources import TensorSource
    from musetalk_core.options import LipsyncOptions
    from musetalk_core.weights.loading import load_models
    from test_streaming import FPS, RecordingGenerator, marked_video, speech_with_pause

    models = load_models([tiny_models_factory("v15")], "v15", precision="fp32", device="cuda")
    frames = torch.from_numpy(marked_video())
    out = {}
    for ahead, speed in ((False, acceleration), ("auto", acceleration), (False, "off")):
        options = LipsyncOptions(face_batch_size=2, vae_batch_size=3, batch_size=4, chunk_size=5, device="cuda",
                                 acceleration=speed)
        monkeypatch.setattr(pipeline, "GENERATE_AHEAD", ahead)
        models.extras.pop(accel.RUNNER_SLOT, None)  # a graph of this run's own
        chunks = []
        generator = RecordingGenerator(models, options, chunks)
        start = time.perf_counter()
        pipeline.lipsync_stream(models, TensorSource(frames), speech_with_pause(23), FPS, options, chunks.append,
                                generator=generator)
        threads = {name for name, _, _ in generator.made}
        out[(ahead, speed)] = torch.cat(chunks)
        print(f"cuda {speed}, generate_ahead {ahead}: {time.perf_counter() - start:.2f} s, batches made on {threads}")
        assert threads == ({"musetalk-generate"} if ahead == "auto" else {"MainThread"})
    made_ahead = out[("auto", acceleration)]
    assert made_ahead.shape[0] == 23 and torch.equal(made_ahead, out[(False, acceleration)])
    assert torch.equal(made_ahead, out[(False, "off")])  # cuda_graphs: the default's faces bit for bit
