"""Tiny MuseTalk UNet (musetalk.json + unet.pth / pytorch_model.bin) and sd-vae folder, in the upstream formats.

The UNet config keeps every structural choice of the published musetalk.json (block types, 8 in / 4 out channels,
cross-attention 384, 8 heads, flip_sin_to_cos...) and shrinks only widths and depth.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from musetalk_core.models.unet import PUBLISHED_UNET_CONFIG  # re-exported for the tests

TINY_UNET_CONFIG = dict(PUBLISHED_UNET_CONFIG, block_out_channels=[32, 32, 64, 64], layers_per_block=1)

# sd-vae-ft-mse's config.json shape with small widths (4 blocks keep the x8 downsampling: 256 -> 32).
TINY_VAE_CONFIG = {
    "_class_name": "AutoencoderKL", "_diffusers_version": "0.4.2", "act_fn": "silu",
    "block_out_channels": [32, 32, 32, 32],
    "down_block_types": ["DownEncoderBlock2D"] * 4, "in_channels": 3, "latent_channels": 4,
    "layers_per_block": 1, "norm_num_groups": 32, "out_channels": 3, "sample_size": 256,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}

UNET_FILES = {"v15": ("musetalkV15", "unet.pth"), "v1": ("musetalk", "pytorch_model.bin")}


def seeded_unet(config=None, seed: int = 0) -> torch.nn.Module:
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    cfg = {k: v for k, v in (config or TINY_UNET_CONFIG).items() if not k.startswith("_")}
    unet = UNet2DConditionModel(**cfg)
    _randomise(unet, seed)
    return unet


def seeded_vae(config=None, seed: int = 1) -> torch.nn.Module:
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    cfg = {k: v for k, v in (config or TINY_VAE_CONFIG).items() if not k.startswith("_")}
    vae = AutoencoderKL(**cfg)
    _randomise(vae, seed)
    return vae


def _randomise(module: torch.nn.Module, seed: int) -> None:
    """Default inits leave some layers at zero (conv_out...): give every parameter seeded noise so outputs vary.
    The draws are the same bits on every CPU (tests/tiny/rng.py)."""
    from tiny.rng import Draw

    draw = Draw(seed)
    with torch.no_grad():
        for name, p in sorted(module.named_parameters()):
            if p.ndim > 1:
                p.copy_(draw.noise(p.shape, (1.0 / p[0].numel()) ** 0.5))
            elif "norm" in name and name.endswith("weight"):
                p.copy_(draw.noise(p.shape, 0.1, mean=1.0))
            else:
                p.copy_(draw.noise(p.shape, 0.05))


def legacy_vae_state(state: dict) -> dict:
    """The 2022 .bin naming: mid-block attention to_q/to_k/to_v/to_out.0 -> query/key/value/proj_attn."""
    back = {"to_q": "query", "to_k": "key", "to_v": "value"}
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if "attentions" in parts:
            if parts[-2] in back:
                parts[-2] = back[parts[-2]]
            elif parts[-3:-1] == ["to_out", "0"]:
                parts[-3:-1] = ["proj_attn"]
        out[".".join(parts)] = value
    return out


def write(models_dir: Path, version: str, name: str = "unet", vae_format: str = "safetensors", **_):
    models_dir = Path(models_dir)
    if name == "unet":
        folder, filename = UNET_FILES[version]
        (models_dir / folder).mkdir(parents=True, exist_ok=True)
        (models_dir / folder / "musetalk.json").write_text(json.dumps(TINY_UNET_CONFIG, indent=2))
        torch.save(seeded_unet().state_dict(), models_dir / folder / filename)
    elif name == "vae":
        (models_dir / "sd-vae").mkdir(parents=True, exist_ok=True)
        (models_dir / "sd-vae" / "config.json").write_text(json.dumps(TINY_VAE_CONFIG, indent=2))
        state = seeded_vae().state_dict()
        if vae_format == "bin":
            torch.save(legacy_vae_state(state), models_dir / "sd-vae" / "diffusion_pytorch_model.bin")
        else:
            from safetensors.torch import save_file

            save_file({k: v.contiguous() for k, v in state.items()},
                      str(models_dir / "sd-vae" / "diffusion_pytorch_model.safetensors"))
