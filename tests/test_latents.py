"""VAEEncodeMasked / encode_faces: reference parity (mean latent), seeded sampling independent of batching."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from musetalk_core.weights import loading
from musetalk_core.errors import InputError
from musetalk_core.generators.musetalk.latents import encode_faces, frame_noise, preprocess_crops
from musetalk_core.types import MuseTalkFaces

GOLDEN = Path(__file__).parent / "golden" / "generator" / "generator.npz"


def make_faces(crops: np.ndarray, has_face=None) -> MuseTalkFaces:
    """Synthetic MUSETALK_FACES around given 256x256 RGB crops (no-face frames hold zeros, as the faces stage does)."""
    n = crops.shape[0]
    has = torch.ones(n, dtype=torch.bool) if has_face is None else torch.tensor(has_face, dtype=torch.bool)
    crops_t = torch.from_numpy(np.ascontiguousarray(crops)).clone()
    crops_t[~has] = 0
    boxes = torch.tensor([[10, 20, 110, 140]] * n, dtype=torch.int64) * has[:, None]
    return MuseTalkFaces(frame_size=(240, 320), has_face=has, boxes=boxes,
                         landmarks=torch.full((n, 68, 2), -1, dtype=torch.int64),
                         crop_boxes=boxes.clone(), masks=tuple(None for _ in range(n)), crops=crops_t,
                         frames_fingerprint="test")


@pytest.fixture(scope="module")
def golden():
    return np.load(GOLDEN)


@pytest.fixture(scope="module")
def models(tiny_models_factory):
    folder = tiny_models_factory("v15", ["unet", "vae"])
    return loading.load_models([folder], "v15", precision="fp32", device="cpu", networks=["unet", "vae", "pe"])


@pytest.fixture(scope="module")
def mean_latents(models, golden):
    return encode_faces(models, make_faces(golden["crops_rgb"]), latent_mode="mean", batch_size=2)


def test_mean_latents_equal_reference(mean_latents, golden):
    out = mean_latents
    assert out.latents.shape == (3, 8, 32, 32) and out.latents.dtype == torch.float32
    assert out.frame_indices.tolist() == [0, 1, 2] and out.num_frames == 3
    assert (out.version, out.latent_mode, out.frames_fingerprint) == ("v15", "mean", "test")
    err = (out.latents - torch.from_numpy(golden["latents"])).abs().max().item()
    assert err < 1e-4, err


def test_masked_half_is_minus_one_and_full_crop_is_kept():
    crops = torch.randint(0, 256, (2, 256, 256, 3), dtype=torch.uint8)
    x = preprocess_crops(crops)
    assert x.shape == (4, 3, 256, 256)
    assert torch.all(x[:2, :, 128:, :] == -1.0)
    assert torch.allclose(x[:2, :, :128, :], x[2:, :, :128, :])
    assert torch.allclose(x[2:], crops.permute(0, 3, 1, 2).float() / 127.5 - 1, atol=1e-6)


def test_no_face_frames_get_no_latent(models, golden, mean_latents):
    crops = golden["crops_rgb"]
    full = mean_latents
    part = encode_faces(models, make_faces(crops, [True, False, True]), latent_mode="mean")
    assert part.frame_indices.tolist() == [0, 2]
    assert part.latent_slot().tolist() == [0, -1, 1]
    assert torch.equal(part.latents, full.latents[[0, 2]])


def test_sample_is_seeded_per_frame_and_batch_independent(models, golden, mean_latents):
    crops = golden["crops_rgb"]
    a = encode_faces(models, make_faces(crops), latent_mode="sample", seed=7, batch_size=1)
    b = encode_faces(models, make_faces(crops), latent_mode="sample", seed=7, batch_size=8)
    assert torch.equal(a.latents, b.latents)
    c = encode_faces(models, make_faces(crops), latent_mode="sample", seed=8, batch_size=8)
    assert not torch.allclose(a.latents, c.latents)
    assert not torch.allclose(a.latents, mean_latents.latents)
    # frame 1 = scaling * (mean + std * noise(seed, 1)) for [masked, full]
    from musetalk_core.generators.musetalk.latents import preprocess_crops as prep
    from musetalk_core.models.vae import scaling_factor

    vae = models.network("vae")
    with torch.no_grad():
        dist = vae.encode(prep(torch.from_numpy(crops[1:2]))).latent_dist
    want = scaling_factor(vae) * (dist.mean + dist.std * frame_noise(7, 1))
    assert torch.allclose(a.latents[1], torch.cat([want[0], want[1]]), atol=1e-5)
    # frame 2's noise depends on (seed, 2) only, not on whether frame 0 has a face
    d = encode_faces(models, make_faces(crops, [False, True, True]), latent_mode="sample", seed=7)
    assert torch.equal(d.latents, a.latents[1:])
    assert a.seed == 7 and a.latent_mode == "sample"


def test_frame_noise_is_reproducible():
    assert torch.equal(frame_noise(3, 5), frame_noise(3, 5))
    assert not torch.equal(frame_noise(3, 5), frame_noise(3, 6))
    assert not torch.equal(frame_noise(3, 5), frame_noise(4, 5))
    frame_noise(0xFFFFFFFFFFFFFFFF, 10 ** 6)  # largest seed accepted


def test_progress_counts_faces(models, golden):
    from musetalk_core.hooks import RunHooks

    steps = []
    encode_faces(models, make_faces(golden["crops_rgb"]), latent_mode="mean", batch_size=2,
                 hooks=RunHooks(advance=steps.append))
    assert steps == [2, 1]


def test_bad_input(models, golden):
    crops = golden["crops_rgb"]
    none = encode_faces(models, make_faces(crops, [False, False, False]))  # a face-less video passes through
    assert none.latents.shape == (0, 8, 32, 32) and none.frame_indices.numel() == 0 and none.num_frames == 3
    with pytest.raises(InputError, match="latent_mode"):
        encode_faces(models, make_faces(crops), latent_mode="mode")
    with pytest.raises(InputError, match="batch_size"):
        encode_faces(models, make_faces(crops), batch_size=0)
    with pytest.raises(InputError, match="faces"):
        encode_faces(models, "not faces")


def test_node(pack, models, golden):
    node = pack.NODE_CLASS_MAPPINGS["VAEEncodeMasked"]
    spec = node.INPUT_TYPES()["required"]
    assert list(spec) == ["musetalk_models", "faces", "latent_mode", "seed", "batch_size"]
    assert spec["latent_mode"][0] == ["sample", "mean"] and spec["latent_mode"][1]["default"] == "sample"
    assert spec["seed"][1]["max"] == 0xFFFFFFFFFFFFFFFF and spec["batch_size"][1]["max"] == 64
    assert all("tooltip" in v[1] for v in spec.values())
    (latents,) = node().encode(models, make_faces(golden["crops_rgb"]), "mean", 0, 8)
    assert (latents.latents - torch.from_numpy(golden["latents"])).abs().max() < 1e-4
