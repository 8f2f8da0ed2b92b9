"""LatentSync UNet3D, its checkpoint loading and its DDIM sampler against goldens recorded from bytedance/LatentSync.

tests/golden/latentsync/README.md gives the command that recorded latentsync.npz (reference commit in the file).
Tolerances are absolute, on outputs of magnitude ~2 (fp32 on the CPU), far above float-kernel noise (observed
<1e-5) and far below any real mistake (a wrong layer moves outputs by >1e-2).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import tiny_latentsync as tl
from musetalk_core.models.checkpoints import on_meta
from musetalk_core.errors import InputError, WeightFileError
from musetalk_core.hooks import RunHooks
from musetalk_core.generators.latentsync import audio as ls_audio
from musetalk_core.generators.latentsync import sampler as ls_sampler
from musetalk_core.generators.latentsync.config import (REFERENCE_COMMIT, VERSIONS, UNet3DConfig, config_from_dict,
                                             get_version, tiny_config)
from musetalk_core.generators.latentsync.unet3d import UNet3DConditionModel
from musetalk_core.generators.latentsync.weights import load_unet3d

GOLDEN = Path(__file__).parent / "golden" / "latentsync" / "latentsync.npz"
UNET_ATOL = 2e-4  # one UNet3D forward
LOOP_ATOL = 5e-4  # after 3 DDIM steps (errors pass through the scheduler's 1/sqrt(alpha) factors)


@pytest.fixture(scope="module")
def golden():
    return dict(np.load(GOLDEN))


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    return tl.write_checkpoint(tmp_path_factory.mktemp("ls") / "latentsync_unet.pt")


@pytest.fixture(scope="module")
def tiny_unet(tiny_ckpt):
    return load_unet3d(tiny_ckpt, tiny_config())


# --- configs ---------------------------------------------------------------------------------------------------

def test_golden_is_from_the_pinned_commit(golden):
    assert str(golden["reference_commit"]) == REFERENCE_COMMIT


def test_published_configs_equal_ours(golden):
    for key in ("published_model_json", "published_512_model_json"):
        assert config_from_dict(json.loads(str(golden[key]))) == UNet3DConfig()
    assert config_from_dict(json.loads(str(golden["tiny_model_json"]))) == tiny_config()


def test_versions():
    assert get_version("latentsync15").resolution == 256 and get_version("latentsync16").resolution == 512
    assert VERSIONS["latentsync15"].unet == VERSIONS["latentsync16"].unet == UNet3DConfig()
    with pytest.raises(InputError, match="latentsync15"):
        get_version("latentsync2")


def _config_yaml(path: Path, model: dict, resolution=256) -> Path:
    """An upstream-style configs/unet/*.yaml: data + model sections, ``norm_eps: 1e-5`` written as upstream does
    (a string to plain YAML 1.1, a float to OmegaConf)."""
    import re

    import yaml

    text = yaml.safe_dump({"data": {"num_frames": 16, "resolution": resolution}, "model": model})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(re.sub(r"norm_eps: .*", "norm_eps: 1e-5", text))
    return path


def test_upstream_config_files_are_read(golden, tmp_path):
    """stage2 / stage1 / stage2_efficient (motion modules off, or in the decoder only) and stage2_512: the model
    section as config_from_dict reads it, the data resolution; JSON works too; errors name the file."""
    from dataclasses import replace

    from musetalk_core.generators.latentsync.config import read_config_file

    published = json.loads(str(golden["published_model_json"]))
    assert read_config_file(_config_yaml(tmp_path / "stage2.yaml", published)) == (UNet3DConfig(), 256)
    stage1 = read_config_file(_config_yaml(tmp_path / "stage1.yaml", dict(published, use_motion_module=False)))
    assert stage1 == (replace(UNet3DConfig(), use_motion_module=False), 256)
    efficient = dict(published, use_motion_module=True, motion_module_decoder_only=True)
    assert read_config_file(_config_yaml(tmp_path / "e.yaml", efficient))[0].motion_module_decoder_only
    assert read_config_file(_config_yaml(tmp_path / "stage2_512.yaml", published, 512)) == (UNet3DConfig(), 512)
    (tmp_path / "c.json").write_text(json.dumps({"model": published}))
    assert read_config_file(tmp_path / "c.json") == (UNet3DConfig(), None)
    (tmp_path / "bad.yaml").write_text("data:\n  resolution: 256\n")
    with pytest.raises(InputError, match="bad.yaml.*model"):
        read_config_file(tmp_path / "bad.yaml")
    with pytest.raises(InputError, match="x.yaml.*unknown down block type"):
        read_config_file(_config_yaml(tmp_path / "x.yaml", dict(published, down_block_types=["Down"] * 4)))


def test_config_rejects_what_upstream_cannot_build():
    with pytest.raises(InputError, match="block"):
        UNet3DConfig(block_out_channels=(32, 64))
    with pytest.raises(InputError, match="mid_block_type"):
        config_from_dict({"mid_block_type": "UNetMidBlock2D"})


def test_real_size_structure():
    """The published config on the meta device: 13 -> 4 channels, audio cross-attention 384 wide, 20 motion modules."""
    model = on_meta(lambda: UNet3DConditionModel(UNet3DConfig()))
    state = model.state_dict()
    assert state["conv_in.weight"].shape == (320, 13, 3, 3) and state["conv_out.weight"].shape == (4, 320, 3, 3)
    k = "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight"
    assert state[k].shape == (320, 384)
    modules = {n.rsplit(".temporal_transformer", 1)[0] for n in state if ".temporal_transformer." in n}
    assert len(modules) == 4 * 2 + 4 * 3  # every down and up layer, none in the mid block
    assert not any(n.startswith("mid_block.motion_modules") for n in state)
    assert state["up_blocks.3.motion_modules.2.temporal_transformer.transformer_blocks.0.attention_blocks.1"
                 ".pos_encoder.pe"].shape == (1, 24, 320)
    params = sum(v.numel() for n, v in state.items() if not n.endswith(".pe"))
    assert 1.2e9 < params < 1.35e9  # ~1.27 G parameters: ~5.1 GB in fp32


# --- loading ---------------------------------------------------------------------------------------------------

def test_loads_published_wrapper_and_safetensors_twin(tmp_path, tiny_unet):
    st = tl.write_checkpoint(tmp_path / "latentsync_unet.safetensors", fmt="safetensors")
    twin = load_unet3d(st, tiny_config())
    for (k, a), (_, b) in zip(sorted(tiny_unet.state_dict().items()), sorted(twin.state_dict().items())):
        assert torch.equal(a, b), k


def test_file_without_position_tables_loads(tmp_path):
    state = {k: v for k, v in tl.seeded_state().items() if not k.endswith("pos_encoder.pe")}
    path = tmp_path / "no_pe.pt"
    torch.save({"state_dict": state}, path)
    model = load_unet3d(path, tiny_config())
    key = "down_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.0.pos_encoder.pe"
    assert torch.equal(model.state_dict()[key], tl.seeded_state()[key])


@pytest.mark.parametrize("change, words", [
    (lambda s: s.pop("conv_in.weight"), "missing keys"),
    (lambda s: s.__setitem__("extra.weight", torch.zeros(1)), "unexpected keys"),
    (lambda s: s.__setitem__("conv_in.weight", torch.zeros(32, 9, 3, 3)), "another shape"),
])
def test_mismatched_checkpoint_names_the_file(tmp_path, change, words):
    state = tl.seeded_state()
    change(state)
    path = tmp_path / "latentsync_unet.pt"
    torch.save({"global_step": 3, "state_dict": state}, path)
    with pytest.raises(WeightFileError, match=words) as info:
        load_unet3d(path, tiny_config())
    assert str(path) in str(info.value)


def test_wrong_config_for_the_file_is_reported(tiny_ckpt):
    with pytest.raises(WeightFileError, match="LatentSync UNet3D"):
        load_unet3d(tiny_ckpt, replace(tiny_config(), cross_attention_dim=768))


def test_corrupt_file_is_reported(tmp_path):
    path = tmp_path / "latentsync_unet.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightFileError, match="download it again"):
        load_unet3d(path, tiny_config())


# --- faithfulness ----------------------------------------------------------------------------------------------

def test_unet_forward_matches_reference(golden, tiny_unet):
    """A short window (5 frames), latents not a multiple of 8 (forced upsample sizes), (b, f, s, d) audio. The
    16-frame guided batch (golden ``unet_a``) is covered by the sampler test's first step."""
    g = tl.golden_inputs()
    with torch.no_grad():
        b = tiny_unet(g["b_sample"], g["b_t"], g["b_audio"]).numpy()
    np.testing.assert_allclose(b, golden["unet_b"], rtol=0, atol=UNET_ATOL)


def test_audio_windows_match_reference(golden):
    """LatentSync's windows are those of WhisperAudioEncode's v1.0-original mode (same rows, same token order)."""
    from musetalk_core.audio.windows import original_window_rows

    features = tl.sampler_features()
    n_windows = ls_audio.reference_window_count(len(features))
    assert n_windows == len(golden["audio_chunk_index"])
    rows = original_window_rows(n_windows, 25, 2, 2, len(features))
    np.testing.assert_array_equal(rows.numpy(), golden["audio_chunk_index"])
    windows = ls_audio.audio_windows(features, n_windows)
    assert windows.shape == (n_windows, 50, 384)
    np.testing.assert_allclose(windows.sum((1, 2)).numpy(), golden["audio_chunks_sum"], rtol=1e-5, atol=1e-3)


def _golden_condition(golden):
    cat = lambda name: torch.from_numpy(np.concatenate([golden[f"w0_{name}"], golden[f"w1_{name}"]], axis=2))
    features = tl.sampler_features()
    audio = ls_audio.audio_windows(features, ls_audio.reference_window_count(len(features)))
    return cat("mask"), cat("masked"), cat("ref"), audio


# The reference draws its noise with torch.randn, so we do too (same seed, same order). torch.randn's last bits
# depend on the CPU kernel torch picks (ATEN_CPU_CAPABILITY=default vs avx2: up to 1.3e-6 on values of about 1), so
# the noise is compared within 1e-5, not bit for bit.
RANDN_ATOL = 1e-5


def test_initial_latents_match_reference_seed(golden):
    s = tl.SAMPLER
    latents = ls_sampler.initial_latents(len(golden["source_index"]), s["size"] // 8, s["size"] // 8, s["seed"])
    np.testing.assert_allclose(latents.numpy(), golden["init_latents"], rtol=0, atol=RANDN_ATOL)


def test_mask_reaches_latent_size_as_reference(golden):
    size = tl.SAMPLER["size"] // 8
    mask = torch.from_numpy(golden["mask_image"][:1]).float()[None].repeat(16, 1, 1, 1)
    small = ls_sampler.latent_mask(mask, size, size)
    np.testing.assert_array_equal(small.numpy(), golden["w0_mask"])


def test_sampler_matches_reference_step_by_step(golden, tiny_unet):
    s = tl.SAMPLER
    mask, masked, ref, audio = _golden_condition(golden)
    seen, progress = [], []
    out = ls_sampler.sample(tiny_unet, mask, masked, ref, audio, steps=s["steps"], guidance_scale=s["guidance"],
                            seed=s["seed"], hooks=RunHooks(advance=progress.append),
                            on_step=lambda w, j, t, raw, lat: seen.append((w, j, t, raw.numpy(), lat.numpy())))
    assert [t for *_, t, _, _ in [(w, j, t, r, l) for w, j, t, r, l in seen]] == list(golden["timesteps"])
    for w, j, t, raw, lat in seen:
        np.testing.assert_allclose(raw, golden[f"w{w}_s{j}_unet"], rtol=0, atol=LOOP_ATOL, err_msg=f"w{w} s{j}")
        np.testing.assert_allclose(lat, golden[f"w{w}_s{j}_latents"], rtol=0, atol=LOOP_ATOL, err_msg=f"w{w} s{j}")
    final = np.concatenate([golden["w0_s2_latents"], golden["w1_s2_latents"]], axis=2)
    np.testing.assert_allclose(out.numpy(), final, rtol=0, atol=LOOP_ATOL)
    assert sum(progress) == 2 * s["steps"]  # one unit per denoising step of each window


def test_sampler_without_guidance_runs_one_pass(tiny_unet):
    calls = []
    unet = lambda x, t, a: calls.append(x.shape[0]) or tiny_unet(x, t, a)
    unet.dtype = torch.float32  # type: ignore[attr-defined]
    cond = torch.zeros(1, 4, 3, 12, 12)
    out = ls_sampler.sample(unet, cond[:, :1], cond, cond, torch.zeros(3, 50, 384), steps=2, guidance_scale=1.0,
                            window=2)
    assert out.shape == (1, 4, 3, 12, 12) and calls == [1, 1, 1, 1]  # 2 windows x 2 steps, batch 1


def test_sampler_interrupt_stops_between_steps(tiny_unet):
    class Stop(Exception):
        pass

    steps = []

    def check():
        if len(steps) == 2:
            raise Stop

    cond = torch.zeros(1, 4, 2, 12, 12)
    with pytest.raises(Stop):
        ls_sampler.sample(tiny_unet, cond[:, :1], cond, cond, torch.zeros(2, 50, 384), steps=5,
                          hooks=RunHooks(advance=steps.append, check_interrupt=check))
    assert len(steps) == 2


def _dpm_inputs():
    g = torch.Generator().manual_seed(0)
    cond = torch.randn(1, 4, 4, 12, 12, generator=g)
    mask = (torch.rand(1, 1, 4, 12, 12, generator=g) > 0.5).float()
    return mask, cond, cond.flip(2), torch.randn(4, 50, 384, generator=g)


def test_dpm_solver_is_the_same_schedule_and_a_closer_solution_in_fewer_steps(tiny_unet):
    """scheduler 'dpm_solver++' (opt-in, LatentSync #290): diffusers' DPM-Solver++ (2nd order) on upstream's betas.
    Both samplers integrate the same ODE: against a 100-step DDIM solution, 10 DPM-Solver++ steps land closer than
    upstream's 20 DDIM steps (here 0.9 vs 3.6 RMS on latents of mean magnitude 12; a wrong schedule or prediction
    type would converge elsewhere). The default stays DDIM (the goldens above)."""
    dpm, ddim = ls_sampler.make_scheduler("dpm_solver++", 10), ls_sampler.make_scheduler("ddim", 20)
    assert type(dpm).__name__ == "DPMSolverMultistepScheduler" and type(ddim).__name__ == "DDIMScheduler"
    assert dpm.config.algorithm_type == "dpmsolver++" and dpm.config.solver_order == 2
    assert dpm.config.prediction_type == "epsilon" and torch.equal(dpm.betas, ddim.betas)
    assert len(dpm.timesteps) == 10 and int(dpm.timesteps[0]) == 999
    mask, masked, ref, audio = _dpm_inputs()
    run = lambda kind, steps: ls_sampler.sample(tiny_unet, mask, masked, ref, audio, steps=steps,
                                                guidance_scale=1.5, window=4, scheduler=kind)
    solution = run("ddim", 100)
    rms = lambda x: float((x - solution).pow(2).mean().sqrt())
    default, fast = run("ddim", 20), run("dpm_solver++", 10)
    assert rms(fast) < 0.5 * rms(default), (rms(fast), rms(default))
    assert not torch.equal(fast, default)


def test_dpm_solver_starts_every_window_afresh(tiny_unet):
    """DPM-Solver++ is multistep: one scheduler reused over windows fails at the second window (LatentSync #290's
    index error) or carries the first window's outputs into it. A new one per window: each window of a run equals
    that window sampled alone, with steps x windows UNet calls."""
    mask, masked, ref, audio = _dpm_inputs()
    calls = []
    unet = lambda x, t, a: calls.append(int(t)) or tiny_unet(x, t, a)
    unet.dtype = torch.float32  # type: ignore[attr-defined]
    whole = ls_sampler.sample(unet, mask, masked, ref, audio, steps=4, window=2, scheduler="dpm_solver++")
    assert len(calls) == 2 * 4 and calls[:4] == calls[4:]
    alone = ls_sampler.sample(tiny_unet, mask[:, :, 2:], masked[:, :, 2:], ref[:, :, 2:], audio[2:], steps=4,
                              window=2, scheduler="dpm_solver++")
    assert torch.equal(whole[:, :, 2:], alone)
    with pytest.raises(InputError, match="scheduler"):
        ls_sampler.make_scheduler("euler")


def test_sampler_rejects_bad_input(tiny_unet):
    cond = torch.zeros(1, 4, 3, 12, 12)
    with pytest.raises(InputError, match="window"):
        ls_sampler.sample(tiny_unet, cond[:, :1], cond, cond, torch.zeros(3, 50, 384), window=25)
    with pytest.raises(InputError, match="audio windows"):
        ls_sampler.sample(tiny_unet, cond[:, :1], cond, cond, torch.zeros(2, 50, 384))
    with pytest.raises(InputError, match="reference"):
        ls_sampler.sample(tiny_unet, cond[:, :1], cond, cond[:, :, :2], torch.zeros(3, 50, 384))


# --- model files and downloads ---------------------------------------------------------------------------------

@pytest.mark.parametrize("version, repo", [("latentsync15", "ByteDance/LatentSync-1.5"),
                                           ("latentsync16", "ByteDance/LatentSync-1.6")])
def test_download_set_fetches_exactly_the_latentsync_files(tmp_path, version, repo):
    from musetalk_core.weights import download
    from musetalk_core.weights import files as model_files

    calls = []

    def fetch(spec, target):
        calls.append((spec.role, spec.repo, spec.repo_file, target.relative_to(tmp_path).as_posix()))
        target.write_bytes(b"x")

    download.download_models(version, tmp_path, fetchers={"hf": fetch, "url": fetch}, report=lambda _: None)
    assert calls == [
        ("vae_config", "stabilityai/sd-vae-ft-mse", "config.json", "sd-vae/config.json"),
        ("vae", "stabilityai/sd-vae-ft-mse", "diffusion_pytorch_model.safetensors",
         "sd-vae/diffusion_pytorch_model.safetensors"),
        (f"{version}_unet", repo, "latentsync_unet.pt", f"{version}/latentsync_unet.pt"),
        ("latentsync_mask", None, None, "latentsync/mask.png"),
    ]
    assert REFERENCE_COMMIT in model_files.LATENTSYNC_MASK_URL
    assert set(model_files.require([tmp_path], version)) == {c[0] for c in calls}


def test_all_set_stays_musetalk_only():
    from musetalk_core.weights import download

    roles = {f.role for f in download.files_to_fetch("all")}
    assert "whisper_tiny_pt" in roles and not any(r.startswith("latentsync") for r in roles)


def test_missing_latentsync_files_name_the_download_command(tmp_path):
    from musetalk_core.weights import files as model_files
    from musetalk_core.errors import ModelFilesMissing

    (tmp_path / "sd-vae").mkdir()
    with pytest.raises(ModelFilesMissing, match="--download-models latentsync16") as info:
        model_files.require([tmp_path], "latentsync16")
    message = str(info.value)
    assert "latentsync16/latentsync_unet.pt" in message and "ByteDance/LatentSync-1.6/latentsync_unet.pt" in message
    assert "latentsync15" not in message
    assert message.startswith("LatentSync model files are missing") and "MuseTalk model files" not in message


# --- pixels <-> latents ----------------------------------------------------------------------------------------

def test_vae_draws_decode_and_paste_back_match_reference(golden):
    """Same seed, same draw order (initial noise, then per window masked and reference posteriors) as upstream."""
    from musetalk_core.generators.latentsync import pixels as px
    from tiny.unet_vae import seeded_vae

    vae = seeded_vae().eval()
    s = tl.SAMPLER
    faces = px.face_pixels(tl.sampler_faces()[torch.from_numpy(golden["source_index"])])
    mask_image = torch.from_numpy(golden["mask_image"])
    noise = px.LatentSyncNoise(s["seed"])
    size = s["size"] // 8
    np.testing.assert_allclose(noise.initial(len(faces), size, size).numpy(), golden["init_latents"], rtol=0,
                               atol=RANDN_ATOL)
    with torch.no_grad():
        # Window 0's two posterior draws only advance the generator here (encoding 32 faces is slow on a CPU);
        # window 1 is encoded for real, so its latents prove both the VAE step and the draw order.
        for _ in range(2):
            torch.randn((16, 4, size, size), generator=noise.generator)
        masked = px.encode(vae, px.masked_faces(faces[16:], mask_image), noise.generator)
        ref = px.encode(vae, faces[16:], noise.generator)
        np.testing.assert_allclose(masked.numpy(), golden["w1_masked"], rtol=0, atol=UNET_ATOL)
        np.testing.assert_allclose(ref.numpy(), golden["w1_ref"], rtol=0, atol=UNET_ATOL)
        idx = torch.from_numpy(golden["pixel_frames"])[[0, 4]]  # frames 0 and 19 (first and last window)
        final = torch.from_numpy(np.concatenate([golden["w0_s2_latents"], golden["w1_s2_latents"]], axis=2))
        decoded = px.decode(vae, final[:, :, idx])
        restored = px.paste_mouth(decoded, faces[idx], mask_image)
    # float16 storage: 1e-3 relative on values of about 1
    np.testing.assert_allclose(decoded.numpy(), golden["decoded"][[0, 4]].astype(np.float32), rtol=0, atol=5e-3)
    np.testing.assert_allclose(restored.numpy(), golden["restored"][[0, 4]].astype(np.float32), rtol=0, atol=5e-3)


# --- face alignment and restore --------------------------------------------------------------------------------

ALIGN_GOLDEN = Path(__file__).parent / "golden" / "latentsync" / "align.npz"


def _close_uint8(ours: np.ndarray, theirs: np.ndarray) -> None:
    """uint8 results of float maths truncated: allow 1 level on under 1% of values (exact here, observed)."""
    diff = np.abs(ours.astype(np.int16) - theirs.astype(np.int16))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01


def test_alignment_and_restore_match_reference():
    import cv2

    from musetalk_core.generators.latentsync import align

    golden = dict(np.load(ALIGN_GOLDEN))
    inputs, res = tl.align_inputs(), tl.ALIGN["resolution"]
    state = align.SmoothState()  # the translation bias carries over frame to frame, in order
    for k, (frame, points) in enumerate(zip(inputs["frames"], inputs["points"])):
        crop, matrix = align.align_face(frame, points, res, state)
        np.testing.assert_allclose(matrix.numpy(), golden["matrices"][k], rtol=0, atol=1e-4)
        assert crop.shape == (140, 105, 3)  # (100 r, 75 r) with r = 128 / 256 * 2.8
        _close_uint8(crop, golden["crops"][k])
        _close_uint8(cv2.resize(crop, (res, res), interpolation=cv2.INTER_LANCZOS4), golden["resized"][k])
        face = align.resize_face(inputs["face"], crop.shape[:2])
        restored = align.restore_face(frame, face, torch.from_numpy(golden["matrices"][k]), res)
        _close_uint8(restored, golden["restored"][k])
        assert (restored != frame).mean() > 0.3  # the face really went back in


def test_alignment_without_smoothing_is_a_pure_similarity():
    from musetalk_core.generators.latentsync import align

    template, size = align.face_template(256)
    assert size == (210, 280)
    matrix = align.similarity(template * 0.5 + 10, template)  # a scaled, shifted copy maps back exactly
    pts = np.c_[template * 0.5 + 10, np.ones(3)] @ matrix.numpy().T
    np.testing.assert_allclose(pts, template, atol=1e-3)


def test_insightface_points():
    from musetalk_core.generators.latentsync import align

    lmk = np.zeros((106, 2))
    lmk[[43, 48, 49, 51, 50]] = [10, 20]
    lmk[101:106] = [30.4, 20.6]
    lmk[[74, 77, 83, 86]] = [[20, 30], [21, 31], [20, 30], [21, 31]]
    np.testing.assert_array_equal(align.insightface_points(lmk), [[10, 20], [30, 21], [20, 30]])


def test_fixed_mask_loads_as_reference(tmp_path):
    """RGB order, LANCZOS4 resize, float64 in [0, 1], channels first; an unreadable file names itself."""
    import cv2

    from musetalk_core.generators.latentsync.pixels import load_fixed_mask

    mask = np.full((256, 256, 3), 255, np.uint8)
    mask[150:230, 60:200] = 0  # a mouth hole
    mask[:, :, 0] = 254  # a distinguishable blue channel in BGR
    path = tmp_path / "mask.png"
    cv2.imwrite(str(path), mask)
    loaded = load_fixed_mask(path, 96)
    assert loaded.shape == (3, 96, 96) and loaded.dtype == torch.float64
    expected = cv2.resize(mask[:, :, ::-1], (96, 96), interpolation=cv2.INTER_LANCZOS4) / 255.0
    np.testing.assert_array_equal(loaded.numpy(), expected.transpose(2, 0, 1))
    assert loaded[2, 0, 0] == 254 / 255 and loaded[0, 0, 0] == 1.0
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"nope")
    with pytest.raises(WeightFileError, match="broken.png"):
        load_fixed_mask(bad, 96)


# --- loading a version from the models folder ------------------------------------------------------------------

def _latentsync_folder(root: Path, version: str) -> Path:
    import cv2

    from tiny import write_models

    write_models(root, "v15", ["vae"])
    tl.write_checkpoint(root / version / "latentsync_unet.pt")
    (root / "latentsync").mkdir(exist_ok=True)
    mask = np.full((256, 256, 3), 255, np.uint8)
    mask[160:230, 64:192] = 0
    cv2.imwrite(str(root / "latentsync" / "mask.png"), mask)
    return root


def test_load_latentsync_with_a_config_file(tmp_path, golden):
    """``config_file`` (the node's unet_config, the CLI's --unet-config): an upstream config file, relative to the
    models folder, replaces the version's config; a stage1-style tiny config (no motion modules) loads weights
    written for it; a config of the other resolution and a missing file are refused by name."""
    from dataclasses import replace

    from musetalk_core.generators.latentsync.loading import load_latentsync

    root = _latentsync_folder(tmp_path, "latentsync15")
    model = dict(json.loads(str(golden["tiny_model_json"])), use_motion_module=False)
    config = replace(tiny_config(), use_motion_module=False)
    tl.write_checkpoint(root / "latentsync15" / "latentsync_unet.pt", config=config)
    _config_yaml(root / "latentsync" / "configs" / "stage1_tiny.yaml", model)
    models = load_latentsync([root], "latentsync15", precision="fp32", device="cpu",
                             config_file="latentsync/configs/stage1_tiny.yaml")
    assert models.version.unet == config and models.version.resolution == 256
    assert not any("motion_modules" in k for k in models.unet.state_dict())
    _config_yaml(root / "s512.yaml", model, 512)
    with pytest.raises(InputError, match="512 px faces but latentsync15"):
        load_latentsync([root], "latentsync15", precision="fp32", device="cpu", config_file=str(root / "s512.yaml"))
    with pytest.raises(InputError, match="nowhere.yaml.*not found"):
        load_latentsync([root], "latentsync15", precision="fp32", device="cpu", config_file="nowhere.yaml")


def test_load_latentsync_from_the_models_folder(tmp_path, tiny_unet):
    from musetalk_core.generators.latentsync.loading import load_latentsync

    root = _latentsync_folder(tmp_path, "latentsync15")
    models = load_latentsync([root], "latentsync15", precision="fp32", device="cpu", unet_config=tiny_config())
    assert models.version.resolution == 256 and models.dtype == torch.float32
    assert models.mask.shape == (3, 256, 256) and models.mask.min() == 0 and models.mask.max() == 1
    assert not (root / "whisper" / "tiny.pt").exists()  # never demanded: the audio uses the whisper/ HF folder
    for (k, a), (_, b) in zip(sorted(models.unet.state_dict().items()), sorted(tiny_unet.state_dict().items())):
        assert torch.equal(a, b), k
    assert hasattr(models.vae, "encode") and models.vae.config.latent_channels == 4


def test_load_latentsync_lists_every_missing_file_first(tmp_path):
    from musetalk_core.errors import ModelFilesMissing
    from musetalk_core.generators.latentsync.loading import load_latentsync

    root = _latentsync_folder(tmp_path, "latentsync15")
    (root / "latentsync" / "mask.png").unlink()
    with pytest.raises(ModelFilesMissing) as info:
        load_latentsync([root], "latentsync16", device="cpu", unet_config=tiny_config())
    assert {f.role for f in info.value.missing} == {"latentsync16_unet", "latentsync_mask"}
    with pytest.raises(InputError, match="latentsync15"):
        load_latentsync([root], "v15", device="cpu")
