"""MuseTalk's UNet: a diffusers UNet2DConditionModel built from musetalk.json, weights loaded strictly, no prefix."""

from __future__ import annotations

import inspect
from pathlib import Path

import torch

from .checkpoints import cast_dtype, load_strict, on_meta, read_json, read_state_dict
from ..errors import WeightFileError

# The published musetalk.json (HF TMElyralab/MuseTalk, identical for v1.0 and v1.5; pipeline spec §1.2). Used to
# check the real-size architecture and to write random-weight files of the real size (tests, benchmarks).
PUBLISHED_UNET_CONFIG = {
    "_class_name": "UNet2DConditionModel", "_diffusers_version": "0.6.0.dev0", "act_fn": "silu",
    "attention_head_dim": 8, "block_out_channels": [320, 640, 1280, 1280], "center_input_sample": False,
    "cross_attention_dim": 384,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1, "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 8, "layers_per_block": 2,
    "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": 32, "out_channels": 4, "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}


def unet_config(config_path: Path) -> dict:
    """The keyword arguments for UNet2DConditionModel: keys starting with '_' dropped as diffusers does."""
    from diffusers import UNet2DConditionModel

    raw = read_json(config_path, "UNet config (musetalk.json)")
    config = {k: v for k, v in raw.items() if not k.startswith("_")}
    accepted = set(inspect.signature(UNet2DConditionModel.__init__).parameters) - {"self"}
    unknown = sorted(set(config) - accepted)
    if unknown:
        raise WeightFileError(config_path, "has settings UNet2DConditionModel does not know: " + ", ".join(unknown)
                              + ". Is this a MuseTalk musetalk.json?")
    for key, want in (("in_channels", 8), ("out_channels", 4)):
        if config.get(key) != want:
            raise WeightFileError(config_path, f"{key} is {config.get(key)}, MuseTalk's UNet has {want}.")
    return config


def build_unet(config_path: Path, meta: bool = False) -> torch.nn.Module:
    from diffusers import UNet2DConditionModel

    config = unet_config(config_path)
    if meta:
        return on_meta(lambda: UNet2DConditionModel(**config))
    return UNet2DConditionModel(**config)


def load_unet(config_path: Path, weights_path: Path, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """Build from the config and copy the bare state dict in strictly (the upstream files have no prefix)."""
    unet = build_unet(config_path)
    state = read_state_dict(weights_path)
    load_strict(unet, state, weights_path, "MuseTalk UNet")
    return cast_dtype(unet, dtype).eval().requires_grad_(False)  # no diffusers dtype warning
