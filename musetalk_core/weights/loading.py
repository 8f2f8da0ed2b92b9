"""Loading every network of a MuseTalk run into one MuseTalkModels, once.

Each network has a loader here that reads its files from the models folder (resolved by model_files) and builds the
module through the real loading code of musetalk_core.models. All missing files are reported together before
anything is loaded, so nothing is ever half-loaded. Loading twice with the same settings and unchanged files returns
the same MuseTalkModels (the cache keeps the most recent few).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

from . import files as model_files
from ..errors import InputError
from ..types import MuseTalkModels, Placement, VERSIONS

log = logging.getLogger(__name__)

DEVICES = ("auto", "cuda", "cpu", "mps")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
LANDMARK_BACKENDS = ("torch", "mmpose")
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class NetworkSpec:
    """A network: the file roles it needs ({v} = version) and the function that builds it."""

    roles: tuple
    build: Callable  # (paths: dict role->Path, ctx: LoadContext) -> module or object


@dataclass(frozen=True)
class LoadContext:
    version: str
    device: torch.device
    dtype: torch.dtype
    landmark_backend: str


def _unet(paths, ctx):
    from ..models.unet import load_unet

    v = ctx.version
    return load_unet(paths[f"unet_{v}_config"], paths[f"unet_{v}"], ctx.dtype)


def _vae(paths, ctx):
    from ..models.vae import load_vae

    return load_vae(paths["vae_config"], paths["vae"], ctx.dtype)


def _pe(paths, ctx):
    from ..models.positional_encoding import PositionalEncoding

    return PositionalEncoding(384).to(ctx.dtype)


def _whisper(paths, ctx):
    from ..models.whisper_encoder import load_whisper_encoder

    return load_whisper_encoder(paths["whisper_config"], paths["whisper"], ctx.dtype)


def _s3fd(paths, ctx):
    from ..models.s3fd import load_s3fd

    return load_s3fd(paths["s3fd"])


def _landmarks(paths, ctx):
    if ctx.landmark_backend == "mmpose":
        from ..models.dwpose_mmpose import load_mmpose_dwpose

        return load_mmpose_dwpose(paths["dwpose"], ctx.device)
    from ..models.dwpose import load_dwpose

    return load_dwpose(paths["dwpose"])


def _face_parser(paths, ctx):
    from ..models.bisenet import load_bisenet

    return load_bisenet(paths["face_parser"])


def _taesd(paths, ctx):
    from ..models.taesd import load_taesd_decoder

    return load_taesd_decoder(paths["taesd_decoder"], ctx.dtype)


NETWORKS: "OrderedDict[str, NetworkSpec]" = OrderedDict(
    unet=NetworkSpec(("unet_{v}_config", "unet_{v}"), _unet),
    vae=NetworkSpec(("vae_config", "vae"), _vae),
    pe=NetworkSpec((), _pe),
    whisper=NetworkSpec(("whisper_config", "whisper_preprocessor", "whisper"), _whisper),
    s3fd=NetworkSpec(("s3fd",), _s3fd),
    landmarks=NetworkSpec(("dwpose",), _landmarks),
    face_parser=NetworkSpec(("face_parser",), _face_parser),
    taesd=NetworkSpec(("taesd_decoder",), _taesd),
)
# Loaded only when asked for (by name, or by ensure_network when a run chooses decoder "taesd").
OPTIONAL_NETWORKS = ("taesd",)


def resolve_device(device) -> torch.device:
    """A device name from DEVICES (or a torch.device, e.g. the one ComfyUI chose) -> torch.device."""
    if isinstance(device, torch.device):
        return device
    if device not in DEVICES:
        raise InputError(f"Unknown device '{device}': choose one of {', '.join(DEVICES)}.")
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("device 'cuda' was chosen but this PyTorch sees no CUDA GPU. "
                         "Choose 'auto' or 'cpu', or install a CUDA build of PyTorch.")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InputError("device 'mps' was chosen but Apple Metal is not available here. Choose 'auto' or 'cpu'.")
    return torch.device(device)


def precision_of(dtype: torch.dtype) -> Optional[str]:
    """The precision name of a dtype ('bf16' for torch.bfloat16), None for one no precision gives."""
    return next((name for name, d in _DTYPES.items() if d == dtype), None)


def resolve_dtype(precision: str, device: torch.device) -> torch.dtype:
    """auto: fp16 on CUDA/MPS (as the reference's real-time mode), fp32 on CPU (the reference's default)."""
    if precision not in PRECISIONS:
        raise InputError(f"Unknown precision '{precision}': choose one of {', '.join(PRECISIONS)}.")
    if precision == "auto":
        return torch.float16 if device.type in ("cuda", "mps") else torch.float32
    if precision == "fp16" and device.type == "cpu":
        raise InputError("precision 'fp16' is not supported on the CPU (many ops are missing there). "
                         "Use 'fp32', or 'bf16' on CPUs with AMX/AVX512-BF16.")
    return _DTYPES[precision]


def roles_for(names: Sequence[str], version: str) -> list:
    roles = []
    for name in names:
        for role in NETWORKS[name].roles:
            role = role.format(v=version)
            if role not in roles:
                roles.append(role)
    return roles


def _fingerprint(paths: dict) -> tuple:
    stats = []
    for role, path in sorted(paths.items()):
        st = Path(path).stat()
        stats.append((role, str(Path(path).resolve()), st.st_size, st.st_mtime_ns))
    return tuple(stats)


_CACHE: "OrderedDict[tuple, MuseTalkModels]" = OrderedDict()
_CACHE_SIZE = 2


def load_models(search_dirs: Sequence[Path], version: str = "v15", precision: str = "auto", device="auto",
                landmark_backend: str = "torch", networks: Optional[Sequence[str]] = None,
                placement: Optional[Placement] = None) -> MuseTalkModels:
    """Check all files, then build every requested network on the CPU and place it on the device."""
    if version not in VERSIONS:
        raise InputError(f"Unknown MuseTalk version '{version}': use 'v15' or 'v1'.")
    if landmark_backend not in LANDMARK_BACKENDS:
        raise InputError(f"Unknown landmark backend '{landmark_backend}': use 'torch' or 'mmpose'.")
    names = [n for n in NETWORKS if n not in OPTIONAL_NETWORKS] if networks is None else list(networks)
    unknown = [n for n in names if n not in NETWORKS]
    if unknown:
        raise InputError(f"Unknown network(s) {unknown}; known: {list(NETWORKS)}.")
    torch_device = resolve_device(device)
    dtype = resolve_dtype(precision, torch_device)
    dirs = [Path(d) for d in search_dirs]
    paths = model_files.require(dirs, version, roles_for(names, version))

    key = (version, str(torch_device), str(dtype), landmark_backend, tuple(names), _fingerprint(paths),
           type(placement).__name__)
    cached = _CACHE.get(key)
    if cached is not None:
        _CACHE.move_to_end(key)
        return cached

    ctx = LoadContext(version, torch_device, dtype, landmark_backend)
    loaded = OrderedDict()
    for name in names:
        log.info("MuseTalk: loading %s", name)
        loaded[name] = NETWORKS[name].build(paths, ctx)
    models = MuseTalkModels(
        version=version, device=torch_device, dtype=dtype, models_dir=dirs[0], networks=loaded,
        extras={"paths": paths, "landmark_backend": landmark_backend, "search_dirs": dirs},
        placement=placement or Placement(),
    )
    _CACHE[key] = models
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return models


def ensure_network(models: MuseTalkModels, name: str):
    """The network ``name`` of ``models``, loaded now from the models' folders if it was not loaded with them.

    For opt-in networks (the TAESD decoder) chosen by a later node: the models stay the same object, so the nodes
    upstream (faces, latents) are not recomputed. A missing file raises ModelFilesMissing with its download command."""
    if name in models.networks:
        return models.networks[name]
    if name not in NETWORKS:
        raise InputError(f"Unknown network '{name}'; known: {list(NETWORKS)}.")
    dirs = list(models.extras.get("search_dirs") or [models.models_dir])
    download_set = name if name in OPTIONAL_NETWORKS else models.version
    paths = model_files.require(dirs, download_set, roles_for([name], models.version))
    ctx = LoadContext(models.version, models.device, models.dtype, models.extras.get("landmark_backend", "torch"))
    log.info("MuseTalk: loading %s", name)
    module = NETWORKS[name].build(paths, ctx)
    models.networks[name] = module
    return module


def clear_cache() -> None:
    _CACHE.clear()
