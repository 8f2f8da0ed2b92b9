"""The files of an avatar folder (format 1; see avatar.py for what they hold), written and read back.

Writing goes to a hidden temporary folder beside the target (``.NAME.tmp-XXXX``) that is renamed into place once
every file is complete, so a crash, a full disk or Ctrl-C never leaves a half-written avatar under its name.
Reading checks every file against avatar.json and turns any failure into an InputError that names the file and
what to do. No pickle anywhere: avatars may be shared between people.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
import warnings
from pathlib import Path
from typing import Any, Dict, Iterable, Mapping, Optional, Tuple

import numpy as np
import torch

from ..errors import InputError

AVATAR_FORMAT = 1
INFO_FILE, FRAMES_FILE, MATERIAL_FILE = "avatar.json", "frames.u8", "material.safetensors"
MATERIAL_KEYS = ("has_face", "boxes", "crop_boxes", "landmarks", "crops", "latents", "latent_frames", "masks",
                 "mask_sides", "mask_offsets")
_PREPARE = ("prepare it again (python -m musetalk_core avatar --video VIDEO --name NAME, or the "
            "SaveMuseTalkAvatar node)")


# ---------------------------------------------------------------------------------------------------- writing

def temporary_folder(root: Path, name: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=root))


def write_frames(path: Path, chunks: Iterable[torch.Tensor]) -> int:
    """uint8 (k, H, W, 3) chunks appended to ``path`` as raw bytes, one chunk in memory at a time; frames written."""
    count = 0
    with open(path, "wb") as fh:
        for chunk in chunks:
            fh.write(memoryview(np.ascontiguousarray(chunk.numpy())).cast("B"))
            count += int(chunk.shape[0])
        fh.flush()
        os.fsync(fh.fileno())
    return count


def pack_masks(masks, n: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-frame square uint8 masks (or None) as (one flat uint8 tensor, sides (N,), offsets (N,)); side 0: none."""
    sides = torch.zeros(n, dtype=torch.int64)
    offsets = torch.zeros(n, dtype=torch.int64)
    parts, end = [], 0
    for j in range(n):
        mask = masks[j]
        if mask is None:
            continue
        mask = torch.as_tensor(mask).detach().cpu().to(torch.uint8).contiguous()
        sides[j], offsets[j] = int(mask.shape[0]), end
        parts.append(mask.reshape(-1))
        end += int(mask.numel())
    flat = torch.cat(parts) if parts else torch.zeros(0, dtype=torch.uint8)
    return flat, sides, offsets


def write_material(path: Path, tensors: Mapping[str, torch.Tensor]) -> None:
    from safetensors.torch import save_file

    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(path),
              metadata={"musetalk_avatar_format": str(AVATAR_FORMAT)})


def write_info(path: Path, info: Mapping[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(info, fh, indent=2, sort_keys=True)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())


def name_taken(target: Path) -> InputError:
    """The refusal for an avatar folder that exists already (checked before preparing, and again when moving)."""
    return InputError(f"An avatar named '{target.name}' already exists in '{target.parent}': choose another name, or "
                      "replace it (--overwrite on the command line).")


def move_into_place(temporary: Path, target: Path, overwrite: bool) -> None:
    """``temporary`` becomes ``target``; an existing avatar there is replaced only with ``overwrite``."""
    old = None
    if target.exists():
        if not overwrite:
            raise name_taken(target)
        old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
        os.rename(target, old)
    try:
        os.rename(temporary, target)
    except BaseException:
        if old is not None:
            os.rename(old, target)  # the previous avatar back under its name
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------- reading

def read_info(folder: Path) -> Dict[str, Any]:
    """avatar.json, checked: a format this pack reads, and the fields every other file is checked against."""
    if not folder.is_dir():
        raise InputError(f"Avatar folder '{folder}' does not exist. Check the name and the avatars folder "
                         f"(--avatars-dir), or {_PREPARE}.")
    path = folder / INFO_FILE
    if not path.is_file():
        raise InputError(f"'{path}' is missing: '{folder}' is not an avatar, or its preparation never finished; "
                         f"{_PREPARE}.")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"'{path}' could not be read as JSON ({exc}): the avatar is damaged; {_PREPARE}.") from None
    fmt = info.get("format") if isinstance(info, dict) else None
    if not isinstance(fmt, int) or isinstance(fmt, bool) or fmt < 1:
        raise InputError(f"'{path}' has no valid avatar format number (got {fmt!r}): the file is damaged or not an "
                         f"avatar's; {_PREPARE}.")
    if fmt > AVATAR_FORMAT:
        raise InputError(f"'{path}' is avatar format {fmt}, written by a newer version of this pack (this one reads "
                         f"format {AVATAR_FORMAT}): update the pack, or {_PREPARE} with this version.")
    try:
        h, w = (int(v) for v in info["frame_size"])
        n, fps = int(info["num_frames"]), float(info["fps"])
        if h < 1 or w < 1 or n < 1 or not fps > 0 or not isinstance(info["settings"], dict):
            raise ValueError("empty frames, a frame rate of 0 or no settings")
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"'{path}' lacks a usable field ({exc}): the avatar is damaged; {_PREPARE}.") from None
    return info


def open_frames(folder: Path, n: int, h: int, w: int) -> np.ndarray:
    """frames.u8 as a read-only memmap (N, H, W, 3); its size is checked first (a copy cut short)."""
    path = folder / FRAMES_FILE
    if not path.is_file():
        raise InputError(f"'{path}' is missing: the avatar is incomplete; copy the whole folder again, or {_PREPARE}.")
    expected = n * h * w * 3
    size = path.stat().st_size
    if size != expected:
        what = "truncated" if size < expected else "longer than avatar.json says"
        raise InputError(f"'{path}' is {what} ({size} bytes; {n} frames of {w}x{h} are {expected}): copy the "
                         f"whole folder again, or {_PREPARE}.")
    return np.memmap(path, dtype=np.uint8, mode="r", shape=(n, h, w, 3))


def read_material(folder: Path, n: int) -> Dict[str, torch.Tensor]:
    """material.safetensors, every tensor's shape checked against N and against the others."""
    from safetensors.torch import load_file

    path = folder / MATERIAL_FILE
    if not path.is_file():
        raise InputError(f"'{path}' is missing: the avatar is incomplete; copy the whole folder again, or {_PREPARE}.")
    try:
        t = load_file(str(path))
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types for a damaged header
        raise InputError(f"'{path}' could not be read ({type(exc).__name__}: {exc}): the avatar is damaged; copy "
                         f"the whole folder again, or {_PREPARE}.") from None
    problem = _material_problem(t, n)
    if problem:
        raise InputError(f"'{path}' does not fit avatar.json ({problem}): the avatar is damaged; {_PREPARE}.")
    return t


def _material_problem(t: Mapping[str, torch.Tensor], n: int) -> Optional[str]:
    missing = [k for k in MATERIAL_KEYS if k not in t]
    if missing:
        return f"no {', '.join(missing)}"
    shapes = {"has_face": (n,), "boxes": (n, 4), "crop_boxes": (n, 4), "landmarks": (n, 68, 2),
              "crops": (n, 256, 256, 3), "mask_sides": (n,), "mask_offsets": (n,)}
    for key, shape in shapes.items():
        if tuple(t[key].shape) != shape:
            return f"{key} is {tuple(t[key].shape)}, expected {shape}"
    faces = torch.nonzero(t["has_face"], as_tuple=False).flatten()
    m = int(faces.numel())
    if tuple(t["latents"].shape) != (m, 8, 32, 32) or not torch.equal(t["latent_frames"], faces):
        return f"latents {tuple(t['latents'].shape)} are not one per frame with a face ({m})"
    sides, offsets = t["mask_sides"], t["mask_offsets"]
    if bool((sides < 0).any()) or bool((offsets < 0).any()) \
            or int((offsets + sides * sides).max()) > int(t["masks"].numel()):
        return "mask offsets point outside the masks"
    return None


def unpack_masks(flat: torch.Tensor, sides: torch.Tensor, offsets: torch.Tensor) -> tuple:
    """The per-frame masks (views of ``flat``), None where a frame has none."""
    out = []
    for side, offset in zip(sides.tolist(), offsets.tolist()):
        out.append(None if side == 0 else flat[offset:offset + side * side].view(side, side))
    return tuple(out)


def frames_tensor(frames: np.ndarray) -> torch.Tensor:
    """A tensor view of read-only frames, for reading only (torch warns that it could write to them)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(frames)
