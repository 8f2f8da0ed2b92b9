"""Loading ``latentsync_unet.pt`` (ByteDance/LatentSync-1.5 / -1.6) into our UNet3DConditionModel, strictly.

The published file is a pickle of ``{"state_dict": <UNet state dict>, "global_step": int}`` (upstream saves
``{"global_step", "state_dict": unet.state_dict()}`` and loads ``ckpt["state_dict"]``). A ``.safetensors`` twin holds
the bare state dict. Upstream loads with ``strict=False`` and silently drops mis-shaped conv_in / conv_out /
audio-attention weights; here every missing, unexpected or mis-shaped key is an error naming the file, with one
exception: the temporal position tables (``...pos_encoder.pe``) are constants of the config, so a file without
them gets the computed table (upstream's own values when the file has them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from ..checkpoints import load_strict, read_state_dict
from .config import UNet3DConfig
from .unet3d import UNet3DConditionModel

_CONSTANT_SUFFIX = "pos_encoder.pe"


def complete_constants(model: torch.nn.Module, state: dict) -> dict:
    """``state`` plus the model's own position tables where the file has none."""
    state = dict(state)
    for key, value in model.state_dict().items():
        if key.endswith(_CONSTANT_SUFFIX) and key not in state:
            state[key] = value
    return state


def load_unet3d(path: Path, config: UNet3DConfig, dtype: Optional[torch.dtype] = None,
                device: Optional[torch.device] = None) -> UNet3DConditionModel:
    """Build the UNet3D for ``config`` and load ``path`` (.pt / .safetensors) into it with strict key matching."""
    path = Path(path)
    state = read_state_dict(path, unwrap=("state_dict",))
    model = UNet3DConditionModel(config)
    load_strict(model, complete_constants(model, state), path, "LatentSync UNet3D (latentsync_unet.pt)")
    model.eval().requires_grad_(False)
    if device is not None or dtype is not None:
        model.to(device=device, dtype=dtype)
    return model
