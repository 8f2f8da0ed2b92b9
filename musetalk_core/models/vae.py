"""The sd-vae-ft-mse AutoencoderKL, loaded from a diffusers folder without going through from_pretrained.

The 2022 ``diffusion_pytorch_model.bin`` stores the mid-block attention under legacy names
(query/key/value/proj_attn); diffusers renames them when it loads, and so do we.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import torch

from .checkpoints import cast_dtype, load_strict, read_json, read_state_dict
from ..errors import WeightFileError

DEFAULT_SCALING_FACTOR = 0.18215  # diffusers' default; sd-vae-ft-mse's config.json does not set it

_LEGACY_ATTENTION = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}


def modernise_vae_keys(state: dict) -> dict:
    """Rename legacy attention keys (``...attentions.0.query.weight`` -> ``...attentions.0.to_q.weight``).

    Legacy 1x1-conv attention weights (C, C, 1, 1) become the linear (C, C) the current module expects.
    """
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if "attentions" in parts and len(parts) >= 2 and parts[-2] in _LEGACY_ATTENTION:
            parts[-2:-1] = _LEGACY_ATTENTION[parts[-2]].split(".")
            if value.ndim == 4 and parts[-1] == "weight":
                value = value[:, :, 0, 0]
        out[".".join(parts)] = value
    return out


def vae_config(config_path: Path) -> dict:
    from diffusers import AutoencoderKL

    raw = read_json(config_path, "VAE config")
    config = {k: v for k, v in raw.items() if not k.startswith("_")}
    accepted = set(inspect.signature(AutoencoderKL.__init__).parameters) - {"self"}
    config = {k: v for k, v in config.items() if k in accepted}
    if config.get("latent_channels", 4) != 4:
        raise WeightFileError(config_path, "latent_channels must be 4 for MuseTalk (sd-vae-ft-mse).")
    return config


def load_vae(config_path: Path, weights_path: Path, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    from diffusers import AutoencoderKL

    vae = AutoencoderKL(**vae_config(config_path))
    state = modernise_vae_keys(read_state_dict(weights_path))
    load_strict(vae, state, weights_path, "VAE (AutoencoderKL, sd-vae-ft-mse)")
    return cast_dtype(vae, dtype).eval().requires_grad_(False)  # no diffusers dtype warning


def scaling_factor(vae: torch.nn.Module) -> float:
    value = getattr(getattr(vae, "config", None), "scaling_factor", None)
    return float(value) if value is not None else DEFAULT_SCALING_FACTOR
