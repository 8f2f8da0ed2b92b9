"""Loading a LatentSync version's files from the models folder into one LatentSyncModels (the future node output).

Files are resolved through model_files (roles of the ``latentsync15`` / ``latentsync16`` sets); every missing file is
reported together before anything is loaded. Device and precision follow the MuseTalk loader's rules
(``auto``: fp16 on CUDA/MPS, fp32 on the CPU; upstream picks fp16 on GPUs of compute capability > 7, else fp32).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional, Sequence

import torch

from ...weights import files as model_files
from ...weights.loading import resolve_device, resolve_dtype
from ...errors import InputError
from .config import LatentSyncVersion, UNet3DConfig, get_version, read_config_file
from .pixels import load_fixed_mask
from .weights import load_unet3d


@dataclass(frozen=True)
class LatentSyncModels:
    """Everything a LatentSync generation needs, loaded once.

    version: the release (resolution, UNet config, defaults); device / dtype: where the networks run;
    unet: UNet3DConditionModel; vae: diffusers AutoencoderKL (sd-vae-ft-mse, scale 0.18215, shift 0);
    mask: the fixed mouth mask (3, res, res) float64 in [0, 1] (1 = keep). The audio features come from
    WhisperAudioEncode (the whisper/ HF folder of Load MuseTalk Models), not from here.
    """

    version: LatentSyncVersion
    device: torch.device
    dtype: torch.dtype
    unet: torch.nn.Module
    vae: torch.nn.Module
    mask: torch.Tensor


def load_latentsync(search_dirs: Sequence[Path], version: str = "latentsync16", precision: str = "auto",
                    device="auto", unet_config: Optional[UNet3DConfig] = None,
                    config_file=None) -> LatentSyncModels:
    """Load ``version`` from the first folder of ``search_dirs`` holding each file.

    ``config_file``: an upstream UNet config (configs/unet/*.yaml: stage1, stage1_512, stage2, stage2_512,
    stage2_efficient) instead of the version's built-in stage2 config; a relative path is looked up in the models
    folders, then the working directory. Its ``data.resolution``, when given, must be the version's.
    ``unet_config`` replaces the config altogether (tests use the tiny one).
    """
    from ...models.vae import load_vae

    spec = get_version(version)
    if config_file is not None and str(config_file).strip():
        config, resolution = read_config_file(find_config_file(config_file, search_dirs))
        if resolution is not None and resolution != spec.resolution:
            raise InputError(f"UNet config file {config_file} is for {resolution} px faces but {version} generates "
                             f"{spec.resolution} px faces: use a config of this version (latentsync15: stage1.yaml, "
                             "stage2.yaml, stage2_efficient.yaml; latentsync16: stage1_512.yaml, stage2_512.yaml).")
        spec = replace(spec, unet=config)
    dev = resolve_device(device)
    dtype = resolve_dtype(precision, dev)
    paths = model_files.require([Path(d) for d in search_dirs], version)
    unet = load_unet3d(paths[f"{version}_unet"], unet_config or spec.unet, dtype=dtype, device=dev)
    vae = load_vae(paths["vae_config"], paths["vae"], dtype).to(dev)
    mask = load_fixed_mask(paths["latentsync_mask"], spec.resolution)
    return LatentSyncModels(spec, dev, dtype, unet, vae, mask)


def find_config_file(name, search_dirs: Sequence[Path]) -> Path:
    """An absolute path as it is; a relative one in the first models folder holding it, else the working directory."""
    path = Path(str(name).strip()).expanduser()
    if not path.is_absolute():
        for folder in search_dirs:
            if (Path(folder) / path).is_file():
                return Path(folder) / path
    if not path.is_file():
        where = ", ".join(str(Path(d)) for d in search_dirs)
        raise InputError(f"UNet config file '{name}' not found (looked in the models folders {where} and the working "
                         "directory). Copy LatentSync's configs/unet/*.yaml there, or leave it empty for the "
                         "version's own config.")
    return path


def insightface_root(dirs) -> Optional[str]:
    """<models>/latentsync/auxiliary in the first models folder that has one (upstream: checkpoints/auxiliary);
    the first folder's when none has it (the missing-files error then names that place)."""
    roots = [Path(d) / "latentsync" / "auxiliary" for d in dirs]
    found = [r for r in roots if r.is_dir()]
    return str(found[0]) if found else (str(roots[0]) if roots else None)
