"""Batched torch kernels that reproduce the reference's cv2/PIL compositing steps bit for bit.

Three integer kernels, each checked against the library it replaces (tests/test_blend_ops.py):

- ``resize_linear``: ``cv2.resize(img, (w, h))`` (INTER_LINEAR) on uint8. OpenCV works in fixed point: 11-bit
  horizontal/vertical weights from float32 source positions, an int32 horizontal pass, and a vertical pass that
  drops 4 bits, takes the high 16 bits of each int16 product and rounds by 2 bits (its SIMD path, which OpenCV 4.9
  and 5.0 use for every pixel of the row). Equal to cv2 4.9.0 and 5.0.0 on every pixel tested.
- ``gaussian_blur_masks``: ``cv2.GaussianBlur(mask, (k, k), 0)`` on uint8 (BORDER_REFLECT_101). OpenCV's uint8 path
  is bit exact: the kernel is quantised to 8 fractional bits by error diffusion (the 3/5/7 tables for small k),
  the horizontal pass keeps 8 fractional bits, the vertical 16, and the result is rounded.
- ``compose``: PIL ``Image.paste(face_large, crop_xy, mask)`` for an RGB image and an "L" mask:
  ``DIV255(dst * (255 - m) + src * m)`` with ``DIV255(a) = ((a + 128) >> 8 + a + 128) >> 8``.

Frames in a batch have different box and crop sizes; every kernel pads to the batch maximum and masks the padding,
so there is no per-frame or per-pixel Python loop.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import List, Sequence, Tuple

import numpy as np
import torch

_COEF_BITS = 11
_COEF_SCALE = 1 << _COEF_BITS  # INTER_RESIZE_COEF_SCALE


# --------------------------------------------------------------------------------------------------------------
# cv2.resize INTER_LINEAR, uint8


@lru_cache(maxsize=4096)
def _linear_axis(src: int, dst: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """OpenCV's per-axis source indices and 11-bit weights for resizing ``src`` samples to ``dst``."""
    scale = 1.0 / (dst / src)
    d = np.arange(dst, dtype=np.float64)
    f = ((d + 0.5) * scale - 0.5).astype(np.float32)  # float32 position, as OpenCV computes it
    s = np.floor(f).astype(np.int64)
    f = (f - s.astype(np.float32)).astype(np.float32)
    w0 = np.rint((np.float32(1.0) - f) * np.float32(_COEF_SCALE)).astype(np.int64)
    w1 = np.rint(f * np.float32(_COEF_SCALE)).astype(np.int64)
    return s, w0, w1, f


def _axis_tables(src: int, dst: int, horizontal: bool):
    s, w0, w1, _ = _linear_axis(src, dst)
    s = s.copy()
    w0 = w0.copy()
    w1 = w1.copy()
    if horizontal:
        # Horizontally OpenCV clamps the position itself (weight 1 on the edge sample).
        edge = (s < 0) | (s >= src - 1)
        s = np.clip(s, 0, src - 1)
        w0[edge] = _COEF_SCALE
        w1[edge] = 0
        i0 = s
        i1 = np.minimum(s + 1, src - 1)
    else:
        # Vertically it keeps the weights and clamps the row indices.
        i0 = np.clip(s, 0, src - 1)
        i1 = np.clip(s + 1, 0, src - 1)
    return i0, i1, w0, w1


def _padded_tables(src: int, sizes: Sequence[int], horizontal: bool, device) -> Tuple[torch.Tensor, ...]:
    n = max(sizes)
    out = np.zeros((4, len(sizes), n), dtype=np.int64)
    for b, size in enumerate(sizes):  # per frame, not per pixel: tables are cached per size
        i0, i1, w0, w1 = _axis_tables(src, int(size), horizontal)
        out[0, b, :size] = i0
        out[1, b, :size] = i1
        out[2, b, :size] = w0
        out[3, b, :size] = w1
    t = torch.from_numpy(out).to(device)
    return t[0], t[1], t[2].to(torch.int32), t[3].to(torch.int32)


def resize_linear(images: torch.Tensor, sizes: Sequence[Tuple[int, int]]) -> torch.Tensor:
    """uint8 (B, h, w, C) -> uint8 (B, Hmax, Wmax, C): image b resized to sizes[b] = (width, height) exactly as
    ``cv2.resize(image, (width, height))`` (INTER_LINEAR); the rest of each padded image is zero."""
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError("resize_linear expects uint8 (B, h, w, C)")
    b, h, w, c = images.shape
    if len(sizes) != b:
        raise ValueError("one (width, height) per image")
    widths = [int(s[0]) for s in sizes]
    heights = [int(s[1]) for s in sizes]
    if min(widths) < 1 or min(heights) < 1:
        raise ValueError("resize_linear: sizes must be at least 1x1")
    dev = images.device
    x0, x1, a0, a1 = _padded_tables(w, widths, True, dev)
    y0, y1, c0, c1 = _padded_tables(h, heights, False, dev)
    wm, hm = x0.shape[1], y0.shape[1]
    src = images.to(torch.int32)
    gx0 = x0[:, None, :, None].expand(b, h, wm, c)
    gx1 = x1[:, None, :, None].expand(b, h, wm, c)
    horiz = (torch.gather(src, 2, gx0) * a0[:, None, :, None]
             + torch.gather(src, 2, gx1) * a1[:, None, :, None])  # (B, h, Wm, C), 11 fractional bits
    gy0 = y0[:, :, None, None].expand(b, hm, wm, c)
    gy1 = y1[:, :, None, None].expand(b, hm, wm, c)
    r0 = torch.gather(horiz, 1, gy0)
    r1 = torch.gather(horiz, 1, gy1)
    # OpenCV's vector path: (S >> 4) as int16, mul_hi with the int16 weight, add, round by 2 bits, saturate.
    v = (((r0 >> 4) * c0[:, :, None, None]) >> 16) + (((r1 >> 4) * c1[:, :, None, None]) >> 16)
    out = ((v + 2) >> 2).clamp_(0, 255).to(torch.uint8)
    # zero the padding so callers never see stale values
    keep_x = torch.arange(wm, device=dev)[None, :] < torch.tensor(widths, device=dev)[:, None]
    keep_y = torch.arange(hm, device=dev)[None, :] < torch.tensor(heights, device=dev)[:, None]
    keep = keep_y[:, :, None, None] & keep_x[:, None, :, None]
    return out * keep


# --------------------------------------------------------------------------------------------------------------
# cv2.GaussianBlur, uint8, sigma 0, BORDER_REFLECT_101


def blur_kernel_size(blur_factor: float, side: int) -> int:
    """The reference's kernel rule, evaluated in Python floats as it is: ``int(f * side // 2 * 2) + 1``."""
    return int(blur_factor * side // 2 * 2) + 1


_SMALL_GAUSSIAN = {
    3: (0.25, 0.5, 0.25),
    5: (0.0625, 0.25, 0.375, 0.25, 0.0625),
    7: (0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125),
}


@lru_cache(maxsize=256)
def gaussian_kernel_fixed(ksize: int) -> Tuple[int, ...]:
    """OpenCV's bit-exact uint8 Gaussian kernel for sigma 0: integer taps with 8 fractional bits summing to 256."""
    if ksize < 1 or ksize % 2 == 0:
        raise ValueError("Gaussian kernel size must be odd and positive")
    if ksize == 1:
        return (256,)
    if ksize in _SMALL_GAUSSIAN:
        k = list(_SMALL_GAUSSIAN[ksize])
    else:
        sigma = ksize * 0.15 + 0.35  # = 0.3 * ((ksize - 1) / 2 - 1) + 0.8
        scale2 = -0.125 / (sigma * sigma)
        vals = [math.exp(float(x * x) * scale2) for x in range(1 - ksize, 0, 2)]
        mul = 1.0 / (sum(vals) * 2.0 + 1.0)
        half = [v * mul for v in vals]
        k = half + [mul] + half[::-1]
    n2 = ksize // 2
    taps = [0] * ksize
    err = 0.0
    total = 0
    for i in range(n2):  # error diffusion from the outside in, mirrored
        adj = k[i] * 256.0 + err
        v0 = int(np.rint(adj))
        err = adj - v0
        taps[i] = taps[ksize - 1 - i] = v0
        total += v0
    taps[n2] = 256 - 2 * total
    return tuple(taps)


def _reflect101(p: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
    """cv2.borderInterpolate(p, length, BORDER_REFLECT_101), elementwise (length broadcast, >= 1), closed form:
    reflect-101 is periodic with period 2 * (length - 1)."""
    single = length <= 1
    period = 2 * (length.clamp(min=2) - 1)
    q = torch.remainder(p, period)
    q = torch.where(q >= length, period - q, q)
    return torch.where(single, torch.zeros_like(q), q)


def _blur_axis(x: torch.Tensor, lengths: torch.Tensor, weights: torch.Tensor, rmax: int) -> torch.Tensor:
    """One 1-D pass along the last axis of (B, S, S): reflect-101 padding by one gather, then one multiply-add of a
    shifted view per tap (cost linear in the kernel size). Values are integers below 2^24 at every step (uint8 x
    8-bit taps, then x 8-bit taps again), so float32 holds them exactly: OpenCV's integer arithmetic on any device."""
    b, s, _ = x.shape
    pos = torch.arange(-rmax, s + rmax, device=x.device)[None, :].expand(b, s + 2 * rmax)
    idx = _reflect101(pos, lengths)  # (B, S + 2r)
    padded = torch.gather(x, 2, idx[:, None, :].expand(b, s, s + 2 * rmax))
    out = torch.zeros_like(x)
    for t in range(2 * rmax + 1):
        w = weights[:, t]
        if not bool(w.any()):
            continue
        out.addcmul_(padded[:, :, t:t + s], w[:, None, None])
    return out


def gaussian_blur_masks(masks: Sequence[torch.Tensor], ksizes: Sequence[int]) -> List[torch.Tensor]:
    """Blur square uint8 masks (each (S_b, S_b), own odd kernel size) exactly as cv2.GaussianBlur(m, (k, k), 0).

    Separable: a horizontal pass keeping 8 fractional bits, a vertical one keeping 16, each one convolution over
    reflect-101 padded rows (cost linear in the kernel size), then OpenCV's rounding. Batched: masks are zero-padded
    to the largest side and kernels to the largest size (zero taps add nothing)."""
    if not masks:
        return []
    dev = masks[0].device
    sides = [int(m.shape[0]) for m in masks]
    b, smax = len(masks), max(sides)
    if smax == 0:
        return [m.clone() for m in masks]
    radii = [k // 2 for k in ksizes]
    rmax = max(radii)
    weights = np.zeros((b, 2 * rmax + 1), dtype=np.float32)
    for i, k in enumerate(ksizes):
        taps = gaussian_kernel_fixed(int(k))
        weights[i, rmax - radii[i]: rmax + radii[i] + 1] = taps
    wt = torch.from_numpy(weights).to(device=dev)
    batch = torch.zeros((b, smax, smax), dtype=torch.float32, device=dev)
    for i, m in enumerate(masks):
        batch[i, : sides[i], : sides[i]] = m.to(device=dev, dtype=torch.float32)
    length = torch.tensor(sides, device=dev)[:, None]
    horiz = _blur_axis(batch, length, wt, rmax)  # along each row: 8 fractional bits
    vert = _blur_axis(horiz.transpose(1, 2).contiguous(), length, wt, rmax).transpose(1, 2)  # columns: 16 bits
    out = ((vert.to(torch.int64) + (1 << 15)) >> 16).clamp_(0, 255).to(torch.uint8)
    return [out[i, : sides[i], : sides[i]].clone() for i in range(b)]


# --------------------------------------------------------------------------------------------------------------
# PIL paste: generated face into the expanded crop, crop into the frame through the mask


class NonFiniteError(ValueError):
    """A float frame has NaN/inf where it must be composited."""


def div255(a: torch.Tensor) -> torch.Tensor:
    """PIL's DIV255 (integer round(a / 255) for 0 <= a <= 255*255)."""
    t = a + 128
    return ((t >> 8) + t) >> 8


def compose(frames: torch.Tensor, faces: torch.Tensor, boxes: torch.Tensor, crop_boxes: torch.Tensor,
            masks: torch.Tensor):
    """The reference's two pastes for a batch, returned as the pixels they change.

    frames: uint8 (B, H, W, 3), or float 0..1 (converted per touched pixel as round(x * 255)); faces: uint8 (B, Hm, Wm, 3), face b already resized to its box (top-left aligned);
    boxes / crop_boxes: int64 (B, 4) (x1, y1, x2, y2), the crop square of side S_b may leave the frame;
    masks: uint8 (B, Smax, Smax), the final (cut, blurred) blend mask of crop b top-left aligned, zero padded.

    Returns (b, y, x, values uint8 (P, 3)) for every frame pixel under a non-zero mask: PIL's
    ``face_large.paste(face, box); body.paste(face_large, crop_xy, mask)`` with face_large = body.crop(crop_box).
    Pixels under a zero mask keep the frame's value, so they are not returned.
    """
    bsz, height, width = frames.shape[:3]
    dev = frames.device
    side = (crop_boxes[:, 2] - crop_boxes[:, 0]).to(dev)
    smax = masks.shape[1]
    u = torch.arange(smax, device=dev)
    xs = crop_boxes[:, 0].to(dev)
    ys = crop_boxes[:, 1].to(dev)
    gx = xs[:, None] + u[None, :]  # (B, Smax) frame column of window column u
    gy = ys[:, None] + u[None, :]
    okx = (u[None, :] < side[:, None]) & (gx >= 0) & (gx < width)
    oky = (u[None, :] < side[:, None]) & (gy >= 0) & (gy < height)
    valid = (masks > 0) & oky[:, :, None] & okx[:, None, :]
    bi, vi, ui = torch.nonzero(valid, as_tuple=True)
    if bi.numel() == 0:
        empty = torch.zeros((0,), dtype=torch.long, device=dev)
        return empty, empty, empty, torch.zeros((0, 3), dtype=torch.uint8, device=dev)
    fy = gy[bi, vi]
    fx = gx[bi, ui]
    m = masks[bi, vi, ui].to(torch.int32)[:, None]
    dst = frames[bi, fy, fx]
    if dst.is_floating_point():  # IMAGE values: only the touched pixels are converted, as round(x * 255)
        if not bool(torch.isfinite(dst).all()):
            raise NonFiniteError("non-finite pixel values under the blend mask")
        dst = (dst.float() * 255.0).round_().clamp_(0, 255)
    dst = dst.to(torch.int32)
    bx = boxes.to(dev)
    lx = fx - bx[bi, 0]
    ly = fy - bx[bi, 1]
    inbox = (lx >= 0) & (ly >= 0) & (fx < bx[bi, 2]) & (fy < bx[bi, 3])
    hm, wm = faces.shape[1], faces.shape[2]
    face_px = faces[bi, ly.clamp(0, hm - 1), lx.clamp(0, wm - 1)].to(torch.int32)
    src = torch.where(inbox[:, None], face_px, dst)
    out = div255(dst * (255 - m) + src * m).to(torch.uint8)
    return bi, fy, fx, out
