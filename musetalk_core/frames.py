"""Converting ComfyUI IMAGE batches to the uint8 frames the reference works on, and back.

ComfyUI IMAGE: float (B, H, W, C) in 0..1, RGB. The reference reads frames as uint8 BGR; we keep uint8 RGB inside
the pipeline (``round(x * 255)``, as the parity checklist says) and flip channels only where a reference cv2 step
needs BGR. Grayscale is expanded to RGB; RGBA drops its alpha (documented: lip-sync ignores transparency).
"""

from __future__ import annotations

import hashlib
from typing import Optional

import torch

from .errors import InputError


def image_to_uint8(images: torch.Tensor, name: str = "images", device: Optional[torch.device] = None) -> torch.Tensor:
    """IMAGE (B,H,W,C) float 0..1 (or a single (H,W,C) image, or uint8) -> uint8 (B,H,W,3) RGB. Never in place."""
    if not isinstance(images, torch.Tensor):
        raise InputError(f"'{name}' must be an IMAGE tensor (B, H, W, 3), got {type(images).__name__}.")
    if images.ndim == 3:
        images = images.unsqueeze(0)
    if images.ndim != 4:
        raise InputError(f"'{name}' must have shape (frames, height, width, channels); got {tuple(images.shape)}.")
    b, h, w, c = images.shape
    if b == 0:
        raise InputError(f"'{name}' is an empty batch (0 frames): connect a node that outputs at least one frame.")
    if h == 0 or w == 0:
        raise InputError(f"'{name}' has zero-sized frames ({h}x{w}).")
    if c not in (1, 3, 4):
        raise InputError(f"'{name}' has {c} channels; expected 3 (RGB), 1 (grayscale) or 4 (RGBA).")
    if device is not None:
        images = images.to(device)
    if images.dtype == torch.uint8:
        out = images
    else:
        if not torch.isfinite(images).all():
            raise InputError(f"'{name}' contains NaN or infinite pixel values.")
        out = (images.float() * 255.0).round().clamp_(0, 255).to(torch.uint8)
    if c == 1:
        out = out.expand(b, h, w, 3)
    elif c == 4:
        out = out[..., :3]
    return out.contiguous()


def uint8_to_image(frames: torch.Tensor, device: Optional[torch.device] = None) -> torch.Tensor:
    """uint8 (B,H,W,3) -> IMAGE float32 0..1 on ``device`` (ComfyUI's intermediate device for outputs)."""
    out = frames.to(device) if device is not None else frames
    return out.to(torch.float32).div_(255.0)


def frames_fingerprint(frames: torch.Tensor) -> str:
    """A cheap identity of a frame batch: shape plus a hash of a fixed subsample of pixels.

    Lets BlendAndAssemble refuse frames that are not the ones the faces were computed from.
    """
    if frames.ndim == 3:
        frames = frames.unsqueeze(0)
    n, h, w = frames.shape[:3]
    rows = torch.linspace(0, h - 1, steps=min(h, 16)).long().to(frames.device)
    cols = torch.linspace(0, w - 1, steps=min(w, 16)).long().to(frames.device)
    sub = frames[:, rows][:, :, cols]  # subsample first: never convert the whole batch
    u8 = sub if sub.dtype == torch.uint8 else (sub.float() * 255).round().clamp(0, 255).to(torch.uint8)
    sample = u8.cpu().contiguous().numpy()
    digest = hashlib.sha1(sample.tobytes()).hexdigest()[:16]
    return f"{n}x{h}x{w}:{digest}"
