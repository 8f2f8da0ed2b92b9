"""Per-device pass sizes: the CPU splits VAE batches into the measured best passes, GPUs keep one pass per batch."""

from __future__ import annotations

import numpy as np
import torch

from musetalk_core.generators.musetalk.generate import decode_faces
from musetalk_core.generators.musetalk.latents import encode_faces, encode_moments, preprocess_crops
from musetalk_core.models.vae import scaling_factor
from musetalk_core.passes import CPU_PASS_SIZE, in_passes, pass_size
from test_latents import make_faces, models  # noqa: F401  (fixture)


def test_pass_size_per_device():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert pass_size("vae_encoder", cpu, 16) == CPU_PASS_SIZE["vae_encoder"] == 1
    assert pass_size("vae_decoder", cpu, 16) == CPU_PASS_SIZE["vae_decoder"] == 2
    assert pass_size("vae_decoder", cpu, 1) == 1
    assert pass_size("unet", cpu, 16) == 16
    assert pass_size("vae_encoder", cuda, 16) == pass_size("vae_decoder", cuda, 16) == 16


def test_in_passes_covers_the_batch_in_order():
    x = torch.arange(5.0)
    sizes = []
    out = list(in_passes("vae_decoder", x, lambda part: sizes.append(len(part)) or part * 2))
    assert sizes == [2, 2, 1]
    assert torch.equal(torch.cat(out), x * 2)


class _CountingVAE(torch.nn.Module):
    """Wraps a VAE and records the batch of every encoder and decoder call."""

    def __init__(self, vae):
        super().__init__()
        self.vae, self.encoded, self.decoded = vae, [], []

    def encode(self, x):
        self.encoded.append(x.shape[0])
        return self.vae.encode(x)

    def decode(self, z):
        self.decoded.append(z.shape[0])
        return self.vae.decode(z)


def test_cpu_encoder_runs_one_image_per_pass_and_equals_single_encodes(models):  # noqa: F811
    crops = np.random.default_rng(3).integers(0, 256, (3, 256, 256, 3), dtype=np.uint8)
    out = encode_faces(models, make_faces(crops), latent_mode="mean", batch_size=3)
    vae = models.networks["vae"]
    x = preprocess_crops(torch.from_numpy(crops))  # [masked x3, full x3]
    with torch.no_grad():
        single = torch.cat([vae.encode(x[i:i + 1]).latent_dist.mean for i in range(6)]) * scaling_factor(vae)
    want = torch.cat([single[:3], single[3:]], dim=1)
    assert torch.equal(out.latents, want)  # bit for bit: the reference encodes each image alone
    spy = _CountingVAE(vae)
    with torch.no_grad():
        mean, _ = encode_moments(spy, x)
    assert spy.encoded == [1] * 6 and torch.equal(mean * scaling_factor(vae), single)


def test_cpu_decoder_runs_passes_of_two(models):  # noqa: F811
    spy = _CountingVAE(models.networks["vae"])
    z = torch.randn(5, 4, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        faces = decode_faces(spy, z, 0.18215)
        whole = spy.vae.decode((1.0 / 0.18215) * z[:2]).sample
    assert spy.decoded == [2, 2, 1]
    assert faces.shape == (5, 256, 256, 3) and faces.dtype == torch.uint8
    want = ((whole / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1) * 255).round().to(torch.uint8)
    assert torch.equal(faces[:2], want)
