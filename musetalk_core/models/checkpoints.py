"""Reading weight files safely and loading them strictly, with errors that name the file.

Pickles are read with ``torch.load(weights_only=True)`` only; safetensors with the safetensors library. Any parse
failure, a wrapper dict we do not know, or missing/unexpected/mis-shaped keys become a WeightFileError that names
the file and summarises the mismatch, instead of a torch traceback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Iterable, Mapping, Optional

import torch

from ..errors import WeightFileError

# Wrapper keys some trainers put around a state dict (mmengine: "state_dict"; others: "model", "module").
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "module")


def read_state_dict(path: Path, unwrap: Iterable[str] = ()) -> dict:
    """Tensors of a .safetensors or pickle file (CPU). ``unwrap`` names wrapper keys that may hold the dict."""
    path = Path(path)
    if not path.is_file():
        raise WeightFileError(path, "file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            data = load_file(str(path), device="cpu")
        else:
            data = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - every parse failure becomes one clear message
        from ..out_of_memory import is_out_of_memory

        if is_out_of_memory(exc):  # not the file's fault: the caller says that memory ran out
            raise
        kind = "safetensors" if path.suffix == ".safetensors" else "PyTorch checkpoint"
        raise WeightFileError(path, f"cannot be read as a {kind} ({type(exc).__name__}: {_short(exc)}). "
                                    "The file is corrupt, truncated or not a weight file: download it again.") from None
    for key in unwrap:
        if isinstance(data, Mapping) and key in data and isinstance(data[key], Mapping):
            data = data[key]
    if not isinstance(data, Mapping) or not data:
        raise WeightFileError(path, f"holds {type(data).__name__}, not a state dict of tensors.")
    tensors = {k: v for k, v in data.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise WeightFileError(path, "holds no tensors (keys: " + ", ".join(list(map(str, data))[:5]) + ").")
    return tensors


def _short(exc: Exception, limit: int = 200) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return text[:limit]


def _preview(keys, limit: int = 5) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def mismatch_summary(expected: Mapping[str, torch.Size], got: Mapping[str, torch.Tensor]) -> Optional[str]:
    """None when keys and shapes agree; otherwise a one-paragraph summary of the difference."""
    missing = set(expected) - set(got)
    unexpected = set(got) - set(expected)
    wrong_shape = [k for k in set(expected) & set(got) if tuple(expected[k]) != tuple(got[k].shape)]
    if not (missing or unexpected or wrong_shape):
        return None
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys ({_preview(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys ({_preview(unexpected)})")
    if wrong_shape:
        k = sorted(wrong_shape)[0]
        parts.append(f"{len(wrong_shape)} keys with another shape (e.g. {k}: file {tuple(got[k].shape)}, "
                     f"model {tuple(expected[k])})")
    return "; ".join(parts)


def load_strict(module: torch.nn.Module, state: Mapping[str, torch.Tensor], path: Path, what: str,
                hint: str = "", assign: bool = False) -> torch.nn.Module:
    """Copy ``state`` into ``module`` only if every key and shape matches; else explain which file is wrong.

    ``assign``: take the file's tensors as they are (for a module built on the meta device)."""
    expected = {k: v.shape for k, v in module.state_dict().items()}
    summary = mismatch_summary(expected, state)
    if summary is not None:
        raise WeightFileError(path, f"is not a {what} checkpoint: {summary}. "
                                    f"Check that the right file is in this place{hint}.")
    module.load_state_dict(state, strict=True, assign=assign)
    return module


def read_json(path: Path, what: str) -> dict:
    try:
        with open(path, "r", encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise WeightFileError(path, "file not found") from None
    except (OSError, ValueError) as exc:
        raise WeightFileError(path, f"is not valid JSON for the {what} ({_short(exc)}).") from None
    if not isinstance(data, dict):
        raise WeightFileError(path, f"is not a {what} (expected a JSON object).")
    return data


def rename_keys(state: Mapping[str, torch.Tensor], rename: Callable[[str], str]) -> dict:
    return {rename(k): v for k, v in state.items()}


def on_meta(build: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    """Build a module on the meta device (no memory, no init cost): for shape/key checks of real-size configs."""
    with torch.device("meta"):
        return build()


def cast_dtype(module: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """Cast a loaded network's floating parameters and buffers to ``dtype``, in place; returns it.

    Goes through torch's own ``nn.Module.to``: diffusers' ``ModelMixin.to`` logs "There are modules in ... that
    should be kept in float32: []" on every dtype cast, even for models that keep nothing in float32 (the UNet
    and the VAE). Submodules a diffusers class does declare in ``_keep_in_fp32_modules`` stay float32, matched by
    name as diffusers matches them.
    """
    torch.nn.Module.to(module, dtype=dtype)
    keep = getattr(module, "_keep_in_fp32_modules", None) or ()
    if keep and dtype != torch.float32:
        for name, sub in module.named_modules():
            if name and any(pattern in name for pattern in keep):
                torch.nn.Module.to(sub, dtype=torch.float32)
    return module
