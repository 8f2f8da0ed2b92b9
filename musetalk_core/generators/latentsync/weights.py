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

from ...models.checkpoints import load_strict, on_meta, read_state_dict
from .config import UNet3DConfig
from .layers import sinusoid_table
from .unet3d import UNet3DConditionModel

_CONSTANT_SUFFIX = "pos_encoder.pe"
WHAT = "LatentSync UNet3D (latentsync_unet.pt)"


def complete_constants(expected: dict, state: dict) -> dict:
    """``state`` plus computed position tables where the file has none (``expected``: key -> shape)."""
    state = dict(state)
    for key, shape in expected.items():
        if key.endswith(_CONSTANT_SUFFIX) and key not in state:
            state[key] = sinusoid_table(shape[2], shape[1])
    return state


def load_unet3d(path: Path, config: UNet3DConfig, dtype: Optional[torch.dtype] = None,
                device: Optional[torch.device] = None) -> UNet3DConditionModel:
    """Build the UNet3D for ``config`` and load ``path`` (.pt / .safetensors) into it with strict key matching.

    The network is built on the meta device and takes the file's tensors as they are (no random init of ~1.3 G
    parameters that would be overwritten anyway).
    """
    path = Path(path)
    state = read_state_dict(path, unwrap=("state_dict",))
    model = on_meta(lambda: UNet3DConditionModel(config))
    expected = {k: v.shape for k, v in model.state_dict().items()}
    state = complete_constants(expected, state)
    load_strict(model, state, path, WHAT, hint=" (1.5 and 1.6 share one layout)", assign=True)
    model.eval().requires_grad_(False)
    return model.to(device=device, dtype=dtype or torch.float32)
