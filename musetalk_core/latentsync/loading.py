"""Loading a LatentSync version's files from the models folder into one LatentSyncModels (the future node output).

Files are resolved through model_files (roles of the ``latentsync15`` / ``latentsync16`` sets); every missing file is
reported together before anything is loaded. Device and precision follow the MuseTalk loader's rules
(``auto``: fp16 on CUDA/MPS, fp32 on the CPU; upstream picks fp16 on GPUs of compute capability > 7, else fp32).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch

from .. import model_files
from ..loading import resolve_device, resolve_dtype
from .config import LatentSyncVersion, UNet3DConfig, get_version
from .pixels import load_fixed_mask
from .weights import load_unet3d


@dataclass(frozen=True)
class LatentSyncModels:
    """Everything a LatentSync generation needs, loaded once.

    version: the release (resolution, UNet config, defaults); device / dtype: where the networks run;
    unet: UNet3DConditionModel; vae: diffusers AutoencoderKL (sd-vae-ft-mse, scale 0.18215, shift 0);
    mask: the fixed mouth mask (3, res, res) float64 in [0, 1] (1 = keep); whisper_path: OpenAI tiny.pt for the
    audio stage (v1.0-original features), not loaded here.
    """

    version: LatentSyncVersion
    device: torch.device
    dtype: torch.dtype
    unet: torch.nn.Module
    vae: torch.nn.Module
    mask: torch.Tensor
    whisper_path: Path


def load_latentsync(search_dirs: Sequence[Path], version: str = "latentsync16", precision: str = "auto",
                    device="auto", unet_config: Optional[UNet3DConfig] = None) -> LatentSyncModels:
    """Load ``version`` from the first folder of ``search_dirs`` holding each file.

    ``unet_config`` replaces the published config (tests use the tiny one).
    """
    from ..models.vae import load_vae

    spec = get_version(version)
    dev = resolve_device(device)
    dtype = resolve_dtype(precision, dev)
    paths = model_files.require([Path(d) for d in search_dirs], version)
    unet = load_unet3d(paths[f"{version}_unet"], unet_config or spec.unet, dtype=dtype, device=dev)
    vae = load_vae(paths["vae_config"], paths["vae"], dtype).to(dev)
    mask = load_fixed_mask(paths["latentsync_mask"], spec.resolution)
    return LatentSyncModels(spec, dev, dtype, unet, vae, mask, paths["latentsync_whisper"])
