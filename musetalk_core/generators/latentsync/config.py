"""LatentSync's UNet3D and scheduler settings, as bytedance/LatentSync ships them.

Source: bytedance/LatentSync at commit a229c3948406bc2cf6eaf4873e662e70c6a04746 (configs/unet/stage2.yaml for 1.5,
configs/unet/stage2_512.yaml for 1.6, configs/scheduler_config.json). The ``model:`` sections of the two stage2 files
are identical; the versions differ only in the face resolution (256 / 512) and in the weights. Only the keys that
shape the network or its inputs are kept here; training keys are irrelevant to inference.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional, Tuple

from ...errors import InputError

REFERENCE_COMMIT = "a229c3948406bc2cf6eaf4873e662e70c6a04746"


@dataclass(frozen=True)
class MotionModuleConfig:
    """VanillaTemporalModule settings (motion_module_kwargs); one block of two temporal self-attentions."""

    num_attention_heads: int = 8
    num_transformer_block: int = 1
    attention_block_types: Tuple[str, ...] = ("Temporal_Self", "Temporal_Self")
    temporal_position_encoding: bool = True
    temporal_position_encoding_max_len: int = 24
    temporal_attention_dim_div: int = 1
    # GroupNorm groups of the temporal transformer: fixed at 32 upstream, not taken from norm_num_groups.
    norm_num_groups: int = 32


@dataclass(frozen=True)
class UNet3DConfig:
    """The ``model:`` section of a LatentSync UNet config (only what inference reads)."""

    in_channels: int = 13  # 4 noisy latents + 1 mask + 4 masked-face latents + 4 reference latents
    out_channels: int = 4
    block_out_channels: Tuple[int, ...] = (320, 640, 1280, 1280)
    down_block_types: Tuple[str, ...] = ("CrossAttnDownBlock3D",) * 3 + ("DownBlock3D",)
    up_block_types: Tuple[str, ...] = ("UpBlock3D",) + ("CrossAttnUpBlock3D",) * 3
    layers_per_block: int = 2
    attention_head_dim: int = 8  # upstream passes this as the NUMBER of heads of the spatial transformers
    cross_attention_dim: int = 384  # Whisper tiny's width
    norm_num_groups: int = 32
    norm_eps: float = 1e-5
    flip_sin_to_cos: bool = True
    freq_shift: int = 0
    downsample_padding: int = 1
    mid_block_scale_factor: float = 1.0
    add_audio_layer: bool = True
    use_motion_module: bool = True
    motion_module_resolutions: Tuple[int, ...] = (1, 2, 4, 8)
    motion_module_mid_block: bool = False
    motion_module_decoder_only: bool = False
    motion_module: MotionModuleConfig = field(default_factory=MotionModuleConfig)

    def __post_init__(self):
        n = len(self.block_out_channels)
        if len(self.down_block_types) != n or len(self.up_block_types) != n:
            raise InputError(f"UNet3D config: {n} block_out_channels but {len(self.down_block_types)} down and "
                             f"{len(self.up_block_types)} up block types; they must be equal.")
        for name in self.down_block_types:
            if name not in ("CrossAttnDownBlock3D", "DownBlock3D"):
                raise InputError(f"UNet3D config: unknown down block type '{name}'.")
        for name in self.up_block_types:
            if name not in ("CrossAttnUpBlock3D", "UpBlock3D"):
                raise InputError(f"UNet3D config: unknown up block type '{name}'.")


@dataclass(frozen=True)
class LatentSyncVersion:
    """One published LatentSync release: its UNet config, face resolution and the Hugging Face repo of its files."""

    name: str
    resolution: int
    repo: str
    unet: UNet3DConfig = field(default_factory=UNet3DConfig)
    num_frames: int = 16  # frames per denoising window (data.num_frames)
    audio_feat_length: Tuple[int, int] = (2, 2)  # Whisper frames left/right of each video frame (x2 per frame)
    video_fps: int = 25
    audio_sample_rate: int = 16000
    inference_steps: int = 20  # scripts/inference.py default
    guidance_scale: float = 1.5  # inference.sh / gradio_app default (the script's argparse default is 1.0)
    seed: int = 1247


VERSIONS = {
    "latentsync15": LatentSyncVersion("latentsync15", 256, "ByteDance/LatentSync-1.5"),
    "latentsync16": LatentSyncVersion("latentsync16", 512, "ByteDance/LatentSync-1.6"),
}

# configs/scheduler_config.json (DDIMScheduler); inference uses eta = 0 (deterministic DDIM).
SCHEDULER_CONFIG = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "trained_betas": None,
}

# The sd-vae-ft-mse VAE as scripts/inference.py configures it.
VAE_SCALING_FACTOR = 0.18215
VAE_SHIFT_FACTOR = 0.0


def get_version(name: str) -> LatentSyncVersion:
    try:
        return VERSIONS[name]
    except KeyError:
        raise InputError(f"Unknown LatentSync version '{name}': use one of {', '.join(VERSIONS)}.") from None


def tiny_config(**overrides) -> UNet3DConfig:
    """The published structure with tiny widths and one layer per block: for tests and golden recordings."""
    base = UNet3DConfig(block_out_channels=(32, 32, 64, 64), layers_per_block=1, attention_head_dim=2,
                        norm_num_groups=8, cross_attention_dim=384)
    return replace(base, **overrides)


def config_from_dict(model: dict) -> UNet3DConfig:
    """A UNet3DConfig from an upstream ``model:`` mapping (e.g. yaml-loaded); unknown inference keys are rejected."""
    model = dict(model)
    mm = dict(model.pop("motion_module_kwargs", {}) or {})
    mm.pop("zero_initialize", None)  # init only
    if model.pop("motion_module_type", "Vanilla") not in ("Vanilla", None):
        raise InputError("UNet3D config: only motion_module_type 'Vanilla' exists upstream.")
    for key, expected in (("mid_block_type", "UNetMidBlock3DCrossAttn"), ("act_fn", "silu"),
                          ("resnet_time_scale_shift", "default"), ("center_input_sample", False)):
        if key in model and model.pop(key) != expected:
            raise InputError(f"UNet3D config: {key} other than {expected!r} is not supported.")
    model.pop("sample_size", None)
    for key in ("block_out_channels", "down_block_types", "up_block_types", "motion_module_resolutions"):
        if key in model:
            model[key] = tuple(model[key])
    if "attention_block_types" in mm:
        mm["attention_block_types"] = tuple(mm["attention_block_types"])
    try:
        return UNet3DConfig(motion_module=MotionModuleConfig(**mm), **model)
    except TypeError as exc:
        raise InputError(f"UNet3D config: {exc}.") from None


def read_config_file(path) -> Tuple[UNet3DConfig, Optional[int]]:
    """An upstream UNet config file (configs/unet/stage1.yaml, stage1_512.yaml, stage2.yaml, stage2_512.yaml,
    stage2_efficient.yaml, or a .json of the same mapping) -> (its ``model:`` section as a UNet3DConfig, its
    ``data.resolution`` or None). Numbers like ``1e-5`` are floats, as OmegaConf reads them (plain YAML 1.1 would
    give a string)."""
    import json
    import re

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"UNet config file {path}: cannot be read ({exc.strerror or exc}).") from None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml  # PyYAML: a dependency of transformers and huggingface_hub

            class Loader(yaml.SafeLoader):
                pass

            Loader.add_implicit_resolver(  # YAML 1.2 floats (1e-5, 1.e3), as OmegaConf's loader
                "tag:yaml.org,2002:float",
                re.compile(r"^[-+]?(?:(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[0-9][0-9_]*[eE][-+]?[0-9]+"
                           r"|\.[0-9_]+(?:[eE][-+]?[0-9]+)?|\.inf|\.Inf|\.INF|\.nan|\.NaN|\.NAN)$"),
                list("-+0123456789."))
            data = yaml.load(text, Loader=Loader)
    except Exception as exc:  # yaml.YAMLError / json.JSONDecodeError: a clear message naming the file
        raise InputError(f"UNet config file {path}: not valid {'JSON' if path.suffix.lower() == '.json' else 'YAML'}"
                         f" ({exc}).") from None
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise InputError(f"UNet config file {path}: no 'model:' section (expected one of LatentSync's "
                         "configs/unet/*.yaml).")
    resolution = (data.get("data") or {}).get("resolution") if isinstance(data.get("data"), dict) else None
    try:
        return config_from_dict(data["model"]), (int(resolution) if resolution is not None else None)
    except InputError as exc:
        raise InputError(f"UNet config file {path}: {exc}") from None
