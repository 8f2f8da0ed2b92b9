"""Every network at its real size with random weights, written as real-format files and loaded the real way.

``models_folder(scale, version)`` fills a models folder exactly as a user's is laid out (same file names, same key
names) and returns it; the benchmark then loads it with ``musetalk_core.weights.loading.load_models``, so the timed loading
path is the one users run. Nothing is downloaded.

- ``scale="tiny"``: the test suite's tiny checkpoints (tests/tiny), for smoke runs in seconds.
- ``scale="real"``: the published architectures: the MuseTalk UNet from the published musetalk.json (850 M
  parameters, 3.4 GB fp32), sd-vae-ft-mse (84 M), whisper-tiny (38 M with its decoder, as the file holds it),
  S3FD (22 M), DWPose RTMPose-l (34 M) and BiSeNet (13 M). Written once into a cache folder
  (``$MUSETALK_BENCH_CACHE`` or ~/.cache/musetalk-bench) and reused.

Random weights make random outputs, which matters for speed in one place only: S3FD's candidate count (cells with
face probability > 0.05), which drives the reference's per-cell Python loop. ``calibrate_s3fd`` sets the classifier
biases so a frame has a realistic number of candidates (a few thousand, as with the real weights on a face video),
instead of nearly every cell (random logits) or none.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Iterable, Optional

import torch

from musetalk_core.models.unet import PUBLISHED_UNET_CONFIG as REAL_UNET_CONFIG

ROOT = Path(__file__).resolve().parents[1]
ALL_NETWORKS = ("unet", "vae", "pe", "whisper", "s3fd", "landmarks", "face_parser")

# stabilityai/sd-vae-ft-mse config.json
REAL_VAE_CONFIG = {
    "_class_name": "AutoencoderKL", "_diffusers_version": "0.4.2", "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4, "in_channels": 3, "latent_channels": 4,
    "layers_per_block": 2, "norm_num_groups": 32, "out_channels": 3, "sample_size": 256,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}

# openai/whisper-tiny config.json (the values that shape the network)
REAL_WHISPER_CONFIG = {
    "architectures": ["WhisperForConditionalGeneration"], "model_type": "whisper",
    "d_model": 384, "encoder_layers": 4, "encoder_attention_heads": 6, "encoder_ffn_dim": 1536,
    "decoder_layers": 4, "decoder_attention_heads": 6, "decoder_ffn_dim": 1536,
    "num_mel_bins": 80, "max_source_positions": 1500, "max_target_positions": 448, "vocab_size": 51865,
    "activation_function": "gelu", "scale_embedding": False, "tie_word_embeddings": True,
    "pad_token_id": 50257, "bos_token_id": 50257, "eos_token_id": 50257, "decoder_start_token_id": 50258,
    "begin_suppress_tokens": None, "suppress_tokens": None,
    "dropout": 0.0, "attention_dropout": 0.0, "activation_dropout": 0.0,
}

UNET_FILES = {"v15": "musetalkV15", "v1": "musetalk"}
MODULES = {"unet": "unet", "vae": "vae", "pe": "positional_encoding", "whisper": "whisper_encoder", "s3fd": "s3fd",
           "landmarks": "dwpose", "face_parser": "bisenet"}


def available_networks() -> list:
    """Every network the benchmarks load; a network module missing from the checkout is an error, not a skipped
    stage."""
    import importlib.util

    missing = [n for n in ALL_NETWORKS if importlib.util.find_spec(f"musetalk_core.models.{MODULES[n]}") is None]
    if missing:
        raise ImportError(f"network modules missing from this checkout: {', '.join(missing)}")
    return list(ALL_NETWORKS)


def _tiny():
    """The test suite's tiny real-format writers (tests/tiny)."""
    tests = str(ROOT / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    import tiny  # noqa: F401  (tests/tiny/__init__.py)

    return tiny


def cache_root() -> Path:
    return Path(os.environ.get("MUSETALK_BENCH_CACHE", Path.home() / ".cache" / "musetalk-bench"))


def _save_safetensors(state: dict, path: Path) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({k: v.detach().contiguous() for k, v in state.items()}, str(tmp), metadata={"format": "pt"})
    tmp.replace(path)


def _small_noise_(module: torch.nn.Module, seed: int) -> None:
    """Default inits zero some layers (e.g. conv_out); give those seeded noise so every layer does real work."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in module.named_parameters():
            if p.ndim > 1 and not bool(p.any()):
                p.copy_(torch.randn(p.shape, generator=gen) * (1.0 / p[0].numel()) ** 0.5)


def write_real_unet(models_dir: Path, version: str) -> None:
    from diffusers import UNet2DConditionModel

    folder = Path(models_dir) / UNET_FILES[version]
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**{k: v for k, v in REAL_UNET_CONFIG.items() if not k.startswith("_")})
    _small_noise_(unet, 0)
    # the loader accepts the safetensors twin of unet.pth / pytorch_model.bin (model_files._twins)
    stem = "unet" if version == "v15" else "pytorch_model"
    _save_safetensors(unet.state_dict(), folder / f"{stem}.safetensors")
    (folder / "musetalk.json").write_text(json.dumps(REAL_UNET_CONFIG, indent=2))


def write_real_vae(models_dir: Path) -> None:
    from diffusers import AutoencoderKL

    folder = Path(models_dir) / "sd-vae"
    torch.manual_seed(1)
    vae = AutoencoderKL(**{k: v for k, v in REAL_VAE_CONFIG.items() if not k.startswith("_")})
    _small_noise_(vae, 1)
    _save_safetensors(vae.state_dict(), folder / "diffusion_pytorch_model.safetensors")
    (folder / "config.json").write_text(json.dumps(REAL_VAE_CONFIG, indent=2))


def write_real_whisper(models_dir: Path) -> None:
    from tiny import whisper as tiny_whisper  # noqa: E402  (format helpers: key names, preprocessor config)

    folder = Path(models_dir) / "whisper"
    folder.mkdir(parents=True, exist_ok=True)
    model = tiny_whisper.seeded_whisper(7, config=REAL_WHISPER_CONFIG)
    config = dict(model.config.to_dict())
    config["architectures"] = ["WhisperForConditionalGeneration"]
    (folder / "config.json").write_text(json.dumps(config, indent=2, default=str))
    (folder / "preprocessor_config.json").write_text(json.dumps(tiny_whisper.PREPROCESSOR_CONFIG, indent=2))
    _save_safetensors(tiny_whisper.state_dict_for_file(model), folder / "model.safetensors")


def _seeded_(module: torch.nn.Module, seed: int) -> dict:
    """He-normal convs/linears, BN near identity: activations stay in range through deep random networks."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for name, value in sorted(module.state_dict().items()):
        if name.endswith("num_batches_tracked"):
            state[name] = torch.zeros_like(value)
        elif name.endswith("running_mean"):
            state[name] = 0.05 * torch.randn(value.shape, generator=gen)
        elif name.endswith("running_var"):
            state[name] = 1.0 + 0.1 * torch.rand(value.shape, generator=gen)
        elif value.ndim >= 2:
            state[name] = torch.randn(value.shape, generator=gen) * (2.0 / value[0].numel()) ** 0.5
        elif value.dtype.is_floating_point and name.endswith("weight"):
            state[name] = 1.0 + 0.1 * torch.randn(value.shape, generator=gen)
        elif value.dtype.is_floating_point:
            state[name] = 0.05 * torch.randn(value.shape, generator=gen)
        else:
            state[name] = value.clone()
    return state


def write_s3fd(models_dir: Path) -> None:
    """s3fd/s3fd-619a316812.pth: a bare state dict of the fixed S3FD architecture (22 M parameters)."""
    from musetalk_core.models.s3fd import S3FD

    net = S3FD()
    state = _seeded_(net, 3)
    for name in ("conv3_3_norm", "conv4_3_norm", "conv5_3_norm"):
        state[f"{name}.weight"] = getattr(net, name).weight.detach().clone()  # the L2Norm scales 10 / 8 / 5
    path = Path(models_dir) / "s3fd" / "s3fd-619a316812.pth"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, str(path))


def write_dwpose(models_dir: Path) -> None:
    """dwpose/dw-ll_ucoco_384.pth: an mmengine checkpoint {meta, state_dict} of RTMPose-l (CSPNeXt-l + RTMCC)."""
    from musetalk_core.models.dwpose import DWPose

    path = Path(models_dir) / "dwpose" / "dw-ll_ucoco_384.pth"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"meta": {"mmengine_version": "0.7.4"}, "state_dict": _seeded_(DWPose(), 4)}, str(path))


_OWN_WRITERS = {"s3fd": write_s3fd, "landmarks": write_dwpose}


def _write_fixed(tiny, folder: Path, version: str, name: str) -> None:
    """Fixed-architecture networks through the test suite's writers (tests/tiny: S3FD, DWPose, BiSeNet)."""
    if name not in tiny.WRITERS:
        raise ValueError(f"no writer for network {name!r} in tests/tiny (writers: {', '.join(tiny.WRITERS)})")
    tiny.write_models(folder, version, [name])


def calibrate_s3fd(models_dir: Path, size=(720, 1280), candidates: int = 3000, keep: int = 40) -> Optional[dict]:
    """Shift S3FD's face/background biases so a synthetic frame gives about ``candidates`` cells with p > 0.05
    (and about ``keep`` with p > 0.5). Rewrites the checkpoint in place; returns the per-level counts."""
    from musetalk_core.models.checkpoints import read_state_dict
    from musetalk_core.models import s3fd as s3fd_mod

    from .synthetic import make_frames

    path = next((p for p in (Path(models_dir) / "s3fd").glob("s3fd-619a316812.*")), None)
    if path is None:
        return None
    state = read_state_dict(path)
    net = s3fd_mod.S3FD()
    net.load_state_dict(state)
    net.eval()
    frames, _ = make_frames(1, size)
    with torch.no_grad():
        outs = net(s3fd_mod.preprocess(frames, "cpu"))
    logits = [(outs[2 * i][:, 1] - outs[2 * i][:, 0]).flatten() for i in range(6)]
    allv = torch.cat(logits)
    # threshold on the logit difference: p > 0.05 <=> d > log(0.05/0.95); choose a shift putting `candidates` above
    k = min(candidates, allv.numel())
    kth = torch.topk(allv, k).values[-1]
    shift = float(torch.log(torch.tensor(0.05 / 0.95)) - kth) + 1e-3
    kk = min(keep, allv.numel())
    kth_keep = torch.topk(allv, kk).values[-1]
    names = [h[0] for h in s3fd_mod.S3FD._HEADS]
    for name in names:
        bias = state[f"{name}_mbox_conf.bias"]
        bias[-1] += shift  # the face logit (last channel on every level, also after conv3_3's max-out)
    state = {k: v.contiguous() for k, v in state.items()}
    if path.suffix == ".safetensors":
        _save_safetensors(state, path)
    else:
        torch.save(state, str(path))
    above = int((allv + shift > torch.log(torch.tensor(0.05 / 0.95))).sum())
    kept = int((allv + shift > 0).sum())
    return {"candidates_per_frame": above, "above_0.5": kept, "keep_target": kk, "kth_keep": float(kth_keep)}


def write_taesd(models_dir: Path) -> Path:
    """taesd/taesd_decoder.safetensors: the published TAESD decoder layout (1.2 M parameters) with seeded random
    weights. Small enough that both scales use the real size. Returns the file's path (written once)."""
    from musetalk_core.models.taesd import build_taesd_decoder

    path = Path(models_dir) / "taesd" / "taesd_decoder.safetensors"
    if not path.exists():
        _save_safetensors(_seeded_(build_taesd_decoder(), 9), path)
    return path


def models_folder(scale: str = "tiny", version: str = "v15", networks: Optional[Iterable[str]] = None,
                  folder: Optional[Path] = None, calibrate: bool = True) -> Path:
    """A models folder holding ``networks`` at ``scale``; real-size folders are cached and reused."""
    tiny = _tiny()
    wanted = [n for n in (networks or available_networks()) if n != "pe"]
    if scale == "tiny":
        folder = Path(folder) if folder else cache_root() / f"tiny-{version}"
        marker = folder / f".complete-{'-'.join(sorted(wanted))}"
        if not marker.exists():
            for name in wanted:
                if name in ("unet", "vae", "whisper"):
                    tiny.write_models(folder, version, [name])
                else:
                    _write_fixed(tiny, folder, version, name)
            if calibrate and "s3fd" in wanted:
                info = calibrate_s3fd(folder, size=(128, 160), candidates=300, keep=10)
                (folder / "s3fd_calibration.json").write_text(json.dumps(info))
            marker.write_text("ok")
        return folder
    if scale != "real":
        raise ValueError(f"scale must be 'tiny' or 'real', not {scale!r}")
    folder = Path(folder) if folder else cache_root() / f"real-{version}"
    folder.mkdir(parents=True, exist_ok=True)
    for name in wanted:
        marker = folder / f".complete-{name}"
        if marker.exists():
            continue
        if name == "unet":
            write_real_unet(folder, version)
        elif name == "vae":
            write_real_vae(folder)
        elif name == "whisper":
            write_real_whisper(folder)
        elif name in _OWN_WRITERS:  # S3FD, DWPose at the published size (the test suite's DWPose is shrunk)
            _OWN_WRITERS[name](folder)
        else:  # face_parser (BiSeNet): one fixed architecture, the test suite's writer is real size
            _write_fixed(tiny, folder, version, name)
        if name == "s3fd" and calibrate:
            info = calibrate_s3fd(folder)
            (folder / "s3fd_calibration.json").write_text(json.dumps(info))
        marker.write_text("ok")
    return folder


def parameter_counts(models) -> dict:
    out = {}
    for name, net in models.networks.items():
        if isinstance(net, torch.nn.Module):
            out[name] = int(sum(p.numel() for p in net.parameters()))
    return out
