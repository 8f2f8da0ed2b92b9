"""Converting ComfyUI IMAGE batches to the uint8 frames the reference works on, and back.

ComfyUI IMAGE: float (B, H, W, C) in 0..1, RGB. The reference reads frames as uint8 BGR; we keep uint8 RGB inside
the pipeline (``round(x * 255)``, as the parity checklist says) and flip channels only where a reference cv2 step
needs BGR. Grayscale is expanded to RGB; RGBA drops its alpha (documented: lip-sync ignores transparency). Every
node that takes frames reads them through ``rgb_frames``, which also refuses a float IMAGE outside 0..1.
"""

from __future__ import annotations

import hashlib
import math
from typing import Optional

import numpy as np
import torch

from ..errors import InputError


# A float IMAGE must hold 0..1. Resampling nodes may overshoot a little (bicubic ringing), so values up to this far
# outside are clipped as before; beyond it the batch is almost surely 0..255 (or -1..1) and would give garbage.
RANGE_SLACK = 0.5


def rgb_frames(images, name: str = "images") -> torch.Tensor:
    """The one way a node reads an IMAGE: checked, and seen as 3-channel RGB (B, H, W, 3) in its own dtype.

    Grayscale (1 channel) is expanded to RGB and RGBA drops its alpha (lip-sync ignores transparency), as views:
    an RGB input is returned as is, nothing is copied. A single (H, W, C) image becomes a batch of one. Float
    pixels must be finite and within 0..1 (see RANGE_SLACK); uint8 pixels are 0..255 by nature. Every stage that
    takes frames (FaceDetectAndParse, BlendAndAssemble) goes through here, so they see identical pixels.
    """
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
    if images.dtype != torch.uint8:
        if not images.is_floating_point():
            raise InputError(f"'{name}' has {images.dtype} pixels; an IMAGE holds floats from 0 to 1 (or uint8).")
        lo, hi = (float(v) for v in torch.aminmax(images))
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise InputError(f"'{name}' contains NaN or infinite pixel values.")
        if lo < -RANGE_SLACK or hi > 1.0 + RANGE_SLACK:
            hint = ""
            if hi > 1.0 + RANGE_SLACK and lo >= -RANGE_SLACK:
                hint = (" These look like 0..255 values: divide by 255, or load the frames with a node that outputs "
                        "a standard IMAGE.")
            elif lo < -RANGE_SLACK and hi <= 1.0 + RANGE_SLACK:
                hint = " These look like -1..1 values: convert them with (x + 1) / 2."
            raise InputError(f"'{name}' has pixel values from {lo:g} to {hi:g}, but an IMAGE holds floats from 0 "
                             f"(black) to 1 (white).{hint}")
    if c == 1:
        return images.expand(b, h, w, 3)
    if c == 4:
        return images[..., :3]
    return images


def image_to_uint8(images: torch.Tensor, name: str = "images", device: Optional[torch.device] = None) -> torch.Tensor:
    """IMAGE (B,H,W,C) float 0..1 (or a single (H,W,C) image, or uint8) -> uint8 (B,H,W,3) RGB. Never in place.

    Checked and reduced to RGB by ``rgb_frames``; floats are rounded as ``round(x * 255)`` (slight overshoots
    clipped)."""
    rgb = rgb_frames(images, name)
    return rgb_to_uint8(rgb.to(device) if device is not None else rgb)


def rgb_to_uint8(rgb: torch.Tensor) -> torch.Tensor:
    """Frames already checked by ``rgb_frames`` -> uint8 (``round(x * 255)``, slight overshoots clipped)."""
    if rgb.dtype == torch.uint8:
        return rgb.contiguous()
    return (rgb.float() * 255.0).round().clamp_(0, 255).to(torch.uint8)


def put_frame(batch: torch.Tensor, k: int, frame: np.ndarray) -> None:
    """``batch[k] = frame`` for a decoded uint8 (H, W, 3) numpy frame, copied by torch on the calling thread.

    Why torch and not numpy: a frame source is read ahead on its own thread (sources.prefetched) while torch runs
    the networks. torch's copy is parallel (OpenMP), so the reading thread gets an OpenMP team of its own, as
    TensorSource's conversion always gave it; libgomp then counts more threads than CPUs and lets its idle workers
    sleep after 100 spins. Without it (frames copied by numpy) they spin 300 000 times after every parallel region
    and take the CPUs the other threads need: the faces stage took about twice the CPU time on a VIDEO than on the
    same frames as an IMAGE (BENCHMARKS.md, "faces stage: VIDEO source vs IMAGE source")."""
    if any(s < 0 for s in frame.strides):  # a turned or mirrored view (io.orientation): torch takes no such view
        frame = np.ascontiguousarray(frame)
    batch[k].copy_(torch.from_numpy(frame))


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


def exact_rate(fps):
    """A frame rate as the exact fraction a video file stores: a Fraction as it is; a float (the graph's FLOAT fps,
    e.g. 29.97002997) as the nearest fraction with a denominator up to 1001 (30000/1001). The one place a float
    rate becomes exact again."""
    from fractions import Fraction

    return fps if isinstance(fps, Fraction) else Fraction(fps).limit_denominator(1001)
