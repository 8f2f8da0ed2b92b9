"""The reference's affine warp, reproduced bit for bit in torch: OpenCV 4.9's ``getAffineTransform`` and
``warpAffine(..., INTER_LINEAR, BORDER_CONSTANT 0)`` on uint8 images (DWPose's input crop).

Why our own: OpenCV 5.0 rewrote warpAffine (float coordinates and weights) and its results moved by up to 6 grey
levels against 4.x; the reference pins opencv-python 4.9.0.80, and a ComfyUI user has whatever OpenCV other packs
installed. These functions give 4.9.0.80's numbers with any OpenCV (or none), on the CPU or the GPU.

OpenCV 4.x's fixed-point scheme, as reproduced here:
- the 2x3 matrix is inverted in double (``invert_affine``);
- per output column x: ``adelta = round(M00 * x * 1024)``; per output row y: ``X0 = round((M01 * y + M02) * 1024) + 16``
  (round = half to even, as cvRound); ``X = (X0 + adelta) >> 5`` is the source x in 1/32 pixel, likewise Y;
- source pixel ``X >> 5`` (saturated to int16), fraction ``X & 31``;
- weights ``(32 - fx)(32 - fy) * 32`` etc. in 1/32768 (their integer table; at fraction (0, 0) it holds
  32767 / 0 / 0 / 1, because 32768 saturates to int16 and the lost unit goes to the last weight);
- value ``(sum w * src + 16384) >> 15`` clamped to 0..255; neighbours outside the image count as 0.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np
import torch

_AB_BITS = 10                      # max(10, INTER_BITS)
_AB_SCALE = 1 << _AB_BITS
_INTER_BITS = 5                    # 1/32 pixel
_TAB = 1 << _INTER_BITS
_ROUND_DELTA = _AB_SCALE // _TAB // 2
_COEF_BITS = 15                    # INTER_REMAP_COEF_BITS


def affine_from_points(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """``cv2.getAffineTransform(src, dst)`` (float32 points -> float64 2x3): the same 6x6 system solved by the same
    LU with partial pivoting in double, operation for operation, so the last bits agree too."""
    src = np.asarray(src, np.float32).astype(np.float64)
    dst = np.asarray(dst, np.float32).astype(np.float64)
    a = [[0.0] * 6 for _ in range(6)]
    b = [0.0] * 6
    for i in range(3):
        x, y = float(src[i, 0]), float(src[i, 1])
        a[2 * i][0:3] = [x, y, 1.0]
        a[2 * i + 1][3:6] = [x, y, 1.0]
        b[2 * i], b[2 * i + 1] = float(dst[i, 0]), float(dst[i, 1])
    if not _lu_solve(a, b):
        return np.zeros((2, 3), np.float64)  # collinear points: cv2.solve fails and OpenCV returns zeros
    return np.array(b, dtype=np.float64).reshape(2, 3)


def _lu_solve(a, b) -> bool:
    """OpenCV's LUImpl (core/matrix_decomp) in place on lists of Python floats (IEEE double, no fused ops).
    False for a singular system."""
    m = len(a)
    for i in range(m):
        k = i
        for j in range(i + 1, m):
            if abs(a[j][i]) > abs(a[k][i]):
                k = j
        if abs(a[k][i]) < np.finfo(np.float64).eps * 100:
            return False
        if k != i:
            a[i], a[k] = a[k], a[i]
            b[i], b[k] = b[k], b[i]
        d = -1.0 / a[i][i]
        for j in range(i + 1, m):
            alpha = a[j][i] * d
            for c in range(i + 1, m):
                a[j][c] += alpha * a[i][c]
            b[j] += alpha * b[i]
    for i in range(m - 1, -1, -1):
        s = b[i]
        for c in range(i + 1, m):
            s -= a[i][c] * b[c]
        b[i] = s / a[i][i]
    return True


def invert_affine(mat: np.ndarray) -> np.ndarray:
    """warpAffine's inversion of a forward 2x3 matrix, in double as OpenCV writes it (not numpy.linalg)."""
    m = [float(v) for v in np.asarray(mat, np.float64).reshape(6)]
    d = m[0] * m[4] - m[1] * m[3]
    d = 1.0 / d if d != 0 else 0.0
    a11, a22 = m[4] * d, m[0] * d
    m[0] = a11
    m[1] *= -d
    m[3] *= -d
    m[4] = a22
    b1 = -m[0] * m[2] - m[1] * m[5]
    b2 = -m[3] * m[2] - m[4] * m[5]
    m[2], m[5] = b1, b2
    return np.array(m, np.float64).reshape(2, 3)


def _cv_round(values: np.ndarray) -> np.ndarray:
    """saturate_cast<int>(double): round half to even, saturated to int32."""
    return np.clip(np.rint(values), -(2 ** 31), 2 ** 31 - 1).astype(np.int64)


def _fixed_terms(inv: np.ndarray, out_w: int, out_h: int):
    """OpenCV's per-column (adelta, bdelta) and per-row (X0, Y0) fixed-point terms, int64."""
    xs = np.arange(out_w, dtype=np.float64)
    ys = np.arange(out_h, dtype=np.float64)
    adelta = _cv_round(inv[0, 0] * xs * _AB_SCALE)
    bdelta = _cv_round(inv[1, 0] * xs * _AB_SCALE)
    x0 = _cv_round((inv[0, 1] * ys + inv[0, 2]) * _AB_SCALE) + _ROUND_DELTA
    y0 = _cv_round((inv[1, 1] * ys + inv[1, 2]) * _AB_SCALE) + _ROUND_DELTA
    return adelta, bdelta, x0, y0


def _to_sub_pixels(total: np.ndarray) -> np.ndarray:
    """X0 + adelta (an int32 sum in C; sane matrices never overflow) -> 1/32 pixel, arithmetic shift like C's."""
    return total.astype(np.int32).astype(np.int64) >> (_AB_BITS - _INTER_BITS)


def source_coords(inv: np.ndarray, out_w: int, out_h: int) -> Tuple[np.ndarray, np.ndarray]:
    """Fixed-point source coordinates in 1/32 pixel for every output pixel: (X, Y), each int64 (out_h, out_w)."""
    adelta, bdelta, x0, y0 = _fixed_terms(inv, out_w, out_h)
    return _to_sub_pixels(x0[:, None] + adelta[None, :]), _to_sub_pixels(y0[:, None] + bdelta[None, :])


def axis_coords(inv: np.ndarray, out_w: int, out_h: int) -> Tuple[np.ndarray, np.ndarray]:
    """For an axis-aligned inverse matrix (inv[0, 1] == inv[1, 0] == 0): X per output column (out_w,) and Y per
    output row (out_h,), the one row / column of ``source_coords`` that repeats (X0 is the same on every row and
    bdelta is 0 on every column)."""
    adelta, bdelta, x0, y0 = _fixed_terms(inv, out_w, out_h)
    return _to_sub_pixels(x0[0] + adelta), _to_sub_pixels(y0 + bdelta[0])


def _weights(fx: torch.Tensor, fy: torch.Tensor) -> torch.Tensor:
    """The integer bilinear table for fractions (fx, fy) in 1/32: int32 (4, ...) weights summing to 32768, in the
    order (y, x), (y, x + 1), (y + 1, x), (y + 1, x + 1)."""
    gx, gy = _TAB - fx, _TAB - fy
    w = torch.stack((gx * gy, fx * gy, gx * fy, fx * fy)) * 32
    corner = (fx == 0) & (fy == 0)          # 32768 saturated to 32767, the unit moved to the last weight
    w[0] -= corner.to(w.dtype)
    w[3] += corner.to(w.dtype)
    return w


def warp_affine_linear(images: torch.Tensor, mats: Sequence[np.ndarray], out_size: Tuple[int, int]) -> torch.Tensor:
    """``cv2.warpAffine(img, M, (w, h), flags=INTER_LINEAR)`` of OpenCV 4.9 for each uint8 image (B, H, W, C) with its
    own forward 2x3 matrix; returns uint8 (B, h, w, C) on the images' device."""
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(f"warp_affine_linear: images must be uint8 (B, H, W, C), got {images.dtype} {tuple(images.shape)}")
    if len(mats) != images.shape[0]:
        raise ValueError(f"warp_affine_linear: {len(mats)} matrices for {images.shape[0]} images")
    out_w, out_h = out_size
    invs = [invert_affine(m) for m in mats]
    if all(inv[0, 1] == 0 and inv[1, 0] == 0 for inv in invs):
        return _warp_axis_aligned(images, invs, out_w, out_h)
    return _warp_general(images, invs, out_w, out_h)


def _warp_general(images: torch.Tensor, invs, out_w: int, out_h: int) -> torch.Tensor:
    """Any matrix: four neighbour gathers per output pixel."""
    b, h, w, c = images.shape
    dev = images.device
    coords = [source_coords(inv, out_w, out_h) for inv in invs]
    big_x = torch.from_numpy(np.stack([cx for cx, _ in coords])).to(dev)
    big_y = torch.from_numpy(np.stack([cy for _, cy in coords])).to(dev)
    sx = (big_x >> _INTER_BITS).clamp(-32768, 32767)
    sy = (big_y >> _INTER_BITS).clamp(-32768, 32767)
    weights = _weights((big_x & (_TAB - 1)).to(torch.int32), (big_y & (_TAB - 1)).to(torch.int32))
    # the four neighbours of every output pixel as rows of the (B*H*W, C) image table; outside ones weigh 0
    px = torch.stack((sx, sx + 1, sx, sx + 1))
    py = torch.stack((sy, sy, sy + 1, sy + 1))
    inside = (px >= 0) & (px < w) & (py >= 0) & (py < h)
    base = (torch.arange(b, device=dev) * (h * w)).view(1, b, 1, 1)
    rows = base + py.clamp(0, h - 1) * w + px.clamp(0, w - 1)
    pixels = images.reshape(b * h * w, c).index_select(0, rows.reshape(-1)).view(4, b, out_h, out_w, c)
    weights = (weights * inside).unsqueeze(-1)
    acc = (pixels.to(torch.int32) * weights).sum(0, dtype=torch.int32)
    return _fixed_to_u8(acc)


def _axis_taps(coords_1d: np.ndarray, size: int, dev):
    """Along one axis: source indices (n, 2) clamped into the image and integer weights (n, 2) in 1/32, zero for a
    tap outside the image (BORDER_CONSTANT 0)."""
    big = torch.from_numpy(coords_1d).to(dev)
    first = (big >> _INTER_BITS).clamp(-32768, 32767)
    frac = (big & (_TAB - 1)).to(torch.int32)
    taps = torch.stack((first, first + 1), -1)
    weights = torch.stack((_TAB - frac, frac), -1) * ((taps >= 0) & (taps < size))
    return taps.clamp(0, size - 1), weights.to(torch.int32)


def _warp_axis_aligned(images: torch.Tensor, invs, out_w: int, out_h: int) -> torch.Tensor:
    """Scale + translation (every DWPose warp): source x depends on the output column only and y on the row only,
    so the same integer sum is taken in two passes (columns, then rows) instead of four full gathers.
    The 2-D table's quirk at fraction (0, 0) (weights 32767 and 1 instead of 32768 and 0) cannot change a uint8
    result: (32767 * a + b + 16384) >> 15 == a for any 0 <= a, b <= 255, so plain products are used here."""
    b, h, w, c = images.shape
    dev = images.device
    cols, wx, rows, wy = [], [], [], []
    for inv in invs:
        big_x, big_y = axis_coords(inv, out_w, out_h)
        taps, weights = _axis_taps(big_x, w, dev)             # (out_w, 2)
        cols.append(taps)
        wx.append(weights)
        taps, weights = _axis_taps(big_y, h, dev)             # (out_h, 2)
        rows.append(taps)
        wy.append(weights)
    out = []
    for image, col, wxi, row, wyi in zip(images, cols, wx, rows, wy):
        # one frame at a time: index_select of whole rows/columns is far cheaper than a per-pixel gather
        left, right = (image.index_select(1, col[:, k]).to(torch.int32) for k in (0, 1))
        horizontal = left * wxi[:, 0].view(1, out_w, 1) + right * wxi[:, 1].view(1, out_w, 1)
        top, bottom = (horizontal.index_select(0, row[:, k]) for k in (0, 1))
        out.append(top * wyi[:, 0].view(out_h, 1, 1) + bottom * wyi[:, 1].view(out_h, 1, 1))
    acc = torch.stack(out) * 32
    return _fixed_to_u8(acc)


def _fixed_to_u8(acc: torch.Tensor) -> torch.Tensor:
    """FixedPtCast<int, uchar, 15>: (v + 2^14) >> 15, saturated."""
    return ((acc + (1 << (_COEF_BITS - 1))) >> _COEF_BITS).clamp(0, 255).to(torch.uint8)
