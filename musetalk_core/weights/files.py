"""The models folder: which file lives where, where it comes from, and the one message listing what is missing.

Layout (upstream's, inside ComfyUI's ``models/musetalk``):
  musetalkV15/{musetalk.json, unet.pth}          v1.5 UNet
  musetalk/{musetalk.json, pytorch_model.bin}    v1.0 UNet
  sd-vae/{config.json, diffusion_pytorch_model.safetensors|.bin}
  whisper/{config.json, preprocessor_config.json, model.safetensors|pytorch_model.bin}
  whisper/tiny.pt                                optional: OpenAI checkpoint (v1.0 legacy audio, download "all")
  dwpose/dw-ll_ucoco_384.pth
  face-parse-bisent/79999_iter.pth
  s3fd/s3fd-619a316812.pth
  latentsync15/latentsync_unet.pt                LatentSync 1.5 UNet3D (256 x 256), download set latentsync15
  latentsync16/latentsync_unet.pt                LatentSync 1.6 UNet3D (512 x 512), download set latentsync16
  latentsync/mask.png                            LatentSync's fixed mouth mask (GitHub, pinned commit)
  taesd/taesd_decoder.safetensors                optional: TAESD decoder (decoder "taesd"; download "taesd")
Every pickle may be replaced by a ``.safetensors`` twin with the same stem.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

from ..errors import InputError, ModelFilesMissing

ENV_MODELS_DIR = "MUSETALK_MODELS_DIR"  # read by musetalk_core.environment


@dataclass(frozen=True)
class ModelFile:
    """One file of the layout. ``choices`` are accepted spellings in order of preference (first existing wins)."""

    role: str
    choices: tuple
    repo: Optional[str]  # Hugging Face repo, or None when ``url`` is the source
    repo_file: Optional[str]  # path inside the repo of the first choice that is downloadable
    url: Optional[str] = None
    size: str = ""
    licence: str = ""
    versions: tuple = ("v15", "v1")  # which model versions need it
    optional: bool = False

    @property
    def path(self) -> str:
        return self.choices[0]


def _twins(path: str) -> tuple:
    """A pickle path and its safetensors twin (safetensors preferred when both exist)."""
    stem, ext = os.path.splitext(path)
    if ext == ".safetensors":
        return (path,)
    return (stem + ".safetensors", path)


S3FD_URL = "https://www.adrianbulat.com/downloads/python-fan/s3fd-619a316812.pth"
WHISPER_TINY_PT_URL = (
    "https://openaipublic.azureedge.net/main/whisper/models/"
    "65147644a518d12f04e32d6f3b26facc3f8dd46e5390956a9424a650c0ce22b9/tiny.pt"
)

LATENTSYNC_MASK_URL = ("https://raw.githubusercontent.com/bytedance/LatentSync/"
                       "a229c3948406bc2cf6eaf4873e662e70c6a04746/latentsync/utils/mask.png")
MUSETALK_VERSIONS = ("v15", "v1")
LATENTSYNC_VERSIONS = ("latentsync15", "latentsync16")
ALL_VERSIONS = MUSETALK_VERSIONS + LATENTSYNC_VERSIONS

MODEL_FILES: tuple = (
    ModelFile("unet_v15_config", ("musetalkV15/musetalk.json",), "TMElyralab/MuseTalk", "musetalkV15/musetalk.json",
              size="1 KB", licence="MIT (code) / CreativeML-style (weights, see upstream)", versions=("v15",)),
    ModelFile("unet_v15", _twins("musetalkV15/unet.pth"), "TMElyralab/MuseTalk", "musetalkV15/unet.pth",
              size="3.4 GB", licence="MuseTalk weights licence (upstream)", versions=("v15",)),
    ModelFile("unet_v1_config", ("musetalk/musetalk.json",), "TMElyralab/MuseTalk", "musetalk/musetalk.json",
              size="1 KB", licence="MIT (code) / CreativeML-style (weights, see upstream)", versions=("v1",)),
    ModelFile("unet_v1", _twins("musetalk/pytorch_model.bin"), "TMElyralab/MuseTalk", "musetalk/pytorch_model.bin",
              size="3.4 GB", licence="MuseTalk weights licence (upstream)", versions=("v1",)),
    ModelFile("vae_config", ("sd-vae/config.json",), "stabilityai/sd-vae-ft-mse", "config.json",
              size="1 KB", licence="MIT", versions=("v15", "v1") + LATENTSYNC_VERSIONS),
    ModelFile("vae", ("sd-vae/diffusion_pytorch_model.safetensors", "sd-vae/diffusion_pytorch_model.bin"),
              "stabilityai/sd-vae-ft-mse", "diffusion_pytorch_model.safetensors", size="335 MB", licence="MIT",
              versions=("v15", "v1") + LATENTSYNC_VERSIONS),
    ModelFile("whisper_config", ("whisper/config.json",), "openai/whisper-tiny", "config.json",
              size="2 KB", licence="Apache-2.0"),
    ModelFile("whisper_preprocessor", ("whisper/preprocessor_config.json",), "openai/whisper-tiny",
              "preprocessor_config.json", size="185 KB", licence="Apache-2.0"),
    ModelFile("whisper", ("whisper/model.safetensors", "whisper/pytorch_model.bin"), "openai/whisper-tiny",
              "model.safetensors", size="151 MB", licence="Apache-2.0"),
    ModelFile("whisper_tiny_pt", ("whisper/tiny.pt",), None, None, url=WHISPER_TINY_PT_URL, size="75 MB",
              licence="MIT", optional=True),
    ModelFile("dwpose", _twins("dwpose/dw-ll_ucoco_384.pth"), "yzd-v/DWPose", "dw-ll_ucoco_384.pth",
              size="388 MB", licence="Apache-2.0"),
    ModelFile("face_parser", _twins("face-parse-bisent/79999_iter.pth"), "ManyOtherFunctions/face-parse-bisent",
              "79999_iter.pth", size="53 MB", licence="MIT"),
    ModelFile("s3fd", _twins("s3fd/s3fd-619a316812.pth"), None, None, url=S3FD_URL, size="86 MB", licence="BSD-3-Clause"),
    # LatentSync (issue 17). Sizes: ~1.27 G parameters in fp32 by the published config (not measured on the files).
    ModelFile("latentsync15_unet", _twins("latentsync15/latentsync_unet.pt"), "ByteDance/LatentSync-1.5",
              "latentsync_unet.pt", size="~5 GB", licence="LatentSync weights licence (see the model card)",
              versions=("latentsync15",)),
    ModelFile("latentsync16_unet", _twins("latentsync16/latentsync_unet.pt"), "ByteDance/LatentSync-1.6",
              "latentsync_unet.pt", size="~5 GB", licence="LatentSync weights licence (see the model card)",
              versions=("latentsync16",)),
    # No whisper/tiny.pt for LatentSync: its audio features (v1.0-original) are computed from the whisper/ HF folder
    # that Load MuseTalk Models reads (same weights as OpenAI's tiny.pt), so nothing would read it.
    # The fixed mouth mask lives in the GitHub repo only (not on Hugging Face): fetched at the pinned commit.
    ModelFile("latentsync_mask", ("latentsync/mask.png",), None, None, url=LATENTSYNC_MASK_URL, size="2 KB",
              licence="Apache-2.0 (bytedance/LatentSync)", versions=LATENTSYNC_VERSIONS),
    # opt-in fast decoder: needed by no version, fetched with the "taesd" (or "all") download set
    ModelFile("taesd_decoder", _twins("taesd/taesd_decoder.pth"), "madebyollin/taesd", "taesd_decoder.safetensors",
              size="5 MB", licence="MIT", versions=(), optional=True),
)

FILES_BY_ROLE = {f.role: f for f in MODEL_FILES}


def files_for(version: str, include_optional: bool = False) -> list:
    if version not in ALL_VERSIONS:
        raise InputError(f"Unknown model version '{version}': use one of {', '.join(ALL_VERSIONS)}.")
    return [f for f in MODEL_FILES if version in f.versions and (include_optional or not f.optional)]


def resolve(models_dir: Path, role: str) -> Optional[Path]:
    """The existing file for ``role`` (safetensors twin first), or None."""
    for choice in FILES_BY_ROLE[role].choices:
        candidate = Path(models_dir) / choice
        if candidate.is_file():
            return candidate
    return None


def resolve_in(search_dirs: Sequence[Path], role: str) -> Optional[Path]:
    for directory in search_dirs:
        found = resolve(directory, role)
        if found is not None:
            return found
    return None


def download_command(version: str) -> str:
    return f"python install.py --download-models {version}"


def missing_files(search_dirs: Sequence[Path], roles: Iterable[str]) -> list:
    return [FILES_BY_ROLE[r] for r in roles if resolve_in(search_dirs, r) is None]


def missing_message(missing: Sequence[ModelFile], search_dirs: Sequence[Path], version: str) -> str:
    where = Path(search_dirs[0]) if search_dirs else Path("models/musetalk")
    family = "LatentSync" if version.startswith("latentsync") else "MuseTalk"
    lines = [f"{family} model files are missing ({len(missing)}). Looked in: "
             + ", ".join(str(d) for d in search_dirs) + "."]
    for f in missing:
        source = f"{f.repo}/{f.repo_file}" if f.repo else f.url
        alt = f" (or {', '.join(f.choices[1:])})" if len(f.choices) > 1 else ""
        lines.append(f"  - {where / f.path}{alt}  [{f.size}]  from {source}")
    lines.append(f"Fetch them with:  {download_command(version)}  (add --models-dir {where} outside ComfyUI),")
    lines.append("or place the files by hand at the paths above.")
    return "\n".join(lines)


def require(search_dirs: Sequence[Path], version: str, roles: Optional[Iterable[str]] = None) -> dict:
    """Role -> path for every file a version needs; raises one ModelFilesMissing listing all absent files."""
    dirs = [Path(d) for d in search_dirs]
    if not any(d.is_dir() for d in dirs):
        missing = files_for(version) if roles is None else [FILES_BY_ROLE[r] for r in roles]
        raise ModelFilesMissing(
            "The MuseTalk models folder does not exist: " + ", ".join(str(d) for d in dirs) + ".\n"
            + missing_message(missing, dirs, version), missing)
    wanted = [f.role for f in files_for(version)] if roles is None else list(roles)
    missing = missing_files(dirs, wanted)
    if missing:
        raise ModelFilesMissing(missing_message(missing, dirs, version), missing)
    return {role: resolve_in(dirs, role) for role in wanted}


def default_models_dirs(explicit: Optional[str] = None) -> list:
    """Outside ComfyUI: --models-dir, else $MUSETALK_MODELS_DIR, else ./models/musetalk."""
    if explicit:
        return [Path(explicit).expanduser()]
    from ..environment import models_dirs  # the one module that reads environment variables

    return models_dirs() or [Path("models") / "musetalk"]
