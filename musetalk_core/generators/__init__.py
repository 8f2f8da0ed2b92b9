"""Generators: what turns per-video material + audio windows into generated faces (the interface: base.py).

    musetalk/     latents of masked 256-px crops, one UNet step, VAE or TAESD decode, box paste-back
    latentsync/   three-point aligned crops, 16-frame DDIM windows of a UNet3D, inverse-affine paste-back

``GENERATORS`` names them as options, the CLI and batch job lines do (``generator``); ``load_generator`` builds one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

GENERATORS = ("musetalk", "latentsync15", "latentsync16")
# the shared stages' networks a LatentSync run needs: Whisper, face detector, landmarks (no parser, no MuseTalk UNet)
LATENTSYNC_SHARED = ("whisper", "s3fd", "landmarks")


def _check_name(name: str) -> None:
    from ..errors import InputError

    if name not in GENERATORS:
        raise InputError(f"generator '{name}' is not known: choose one of {', '.join(GENERATORS)}.")


def load_shared_networks(models_dirs: Sequence[Path], options):
    """MUSETALK_MODELS with the networks of the shared stages (audio, faces) and, for MuseTalk, its own."""
    from ..weights.loading import load_models

    _check_name(options.generator)
    dirs = [Path(d) for d in models_dirs]
    if options.generator == "musetalk":
        return load_models(dirs, version=options.version, precision=options.precision, device=options.device,
                           landmark_backend=options.landmark_backend)
    return load_models(dirs, version="v15", precision=options.precision, device=options.device,
                       landmark_backend=options.landmark_backend, networks=LATENTSYNC_SHARED)


def load_generator(models_dirs: Sequence[Path], models, options, unet_config: Optional[Path] = None):
    """The generator ``options.generator`` names, its own networks loaded from ``models_dirs``; MuseTalk's are in
    ``models``. ``unet_config``: an upstream LatentSync UNet config file instead of the version's own."""
    _check_name(options.generator)
    if options.generator == "musetalk":
        from .musetalk.generator import MuseTalkGenerator

        return MuseTalkGenerator(models, options)
    from .latentsync.generator import LatentSyncGenerator
    from .latentsync.loading import insightface_root, load_latentsync

    ls_models = load_latentsync(list(models_dirs), options.generator, precision=options.precision,
                                device=options.device, config_file=unet_config)
    return LatentSyncGenerator(ls_models, options, options.insightface_root or insightface_root(models_dirs))
