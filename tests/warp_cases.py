"""Inputs of the affine-warp golden (tests/test_warp_ops.py, tools/golden/record_warp.py): pure integer arithmetic,
so the recorder (numpy 1.x, OpenCV 4.9.0.80) and the tests (any numpy) build the very same arrays."""

from __future__ import annotations

import numpy as np


def hashed(shape, seed: int) -> np.ndarray:
    """uint8 noise from an integer hash of the element index (no RNG stream to drift between numpy versions)."""
    idx = np.arange(int(np.prod(shape)), dtype=np.uint64) + np.uint64(seed * 7919)
    x = (idx * np.uint64(2654435761)) & np.uint64(0xFFFFFFFF)
    x ^= x >> np.uint64(15)
    x = (x * np.uint64(2246822519)) & np.uint64(0xFFFFFFFF)
    x ^= x >> np.uint64(13)
    return (x & np.uint64(255)).astype(np.uint8).reshape(shape)


def floats(n: int, seed: int, lo: float, hi: float) -> np.ndarray:
    """n float64 values in [lo, hi) from the same hash (16 bits each)."""
    raw = hashed((n, 2), seed).astype(np.float64)
    return lo + (raw[:, 0] * 256 + raw[:, 1]) / 65536.0 * (hi - lo)


def smooth_frame(h: int, w: int, seed: int) -> np.ndarray:
    """A compressible 'photo': gradients and a bright disc (the small noisy images above cover the rounding)."""
    y, x = np.mgrid[0:h, 0:w]
    img = np.empty((h, w, 3), np.uint8)
    img[..., 0] = (x * 255 // max(w - 1, 1)).astype(np.uint8)
    img[..., 1] = (y * 255 // max(h - 1, 1)).astype(np.uint8)
    img[..., 2] = np.where((x - w * 0.6) ** 2 + (y - h * 0.4) ** 2 < (min(h, w) * 0.2) ** 2, 230, 40)
    return img


def dwpose_points(box, in_w: int, in_h: int):
    """mmpose's three points for a person box (padding 1.25, aspect fixed to in_w / in_h, rotation 0), float32."""
    bbox = np.asarray(box, dtype=np.float32)[None]
    scale = (bbox[..., 2:] - bbox[..., :2]) * 1.25
    center = (bbox[..., 2:] + bbox[..., :2]) * 0.5
    aspect = in_w / in_h
    w, h = np.hsplit(scale, [1])
    scale = np.where(w > h * aspect, np.hstack([w, w / aspect]), np.hstack([h * aspect, h]))
    c, s = center[0].astype(np.float32), scale[0].astype(np.float32)
    src, dst = np.zeros((3, 2), np.float32), np.zeros((3, 2), np.float32)
    src[0], src[1] = c, c + np.array([s[0] * -0.5, 0.0])
    dst[0] = [in_w * 0.5, in_h * 0.5]
    dst[1] = np.array([in_w * 0.5, in_h * 0.5]) + np.array([in_w * -0.5, 0.0])
    for p in (src, dst):
        d = p[0] - p[1]
        p[2] = p[1] + np.r_[-d[1], d[0]]
    return src, dst


def point_cases(n: int = 300):
    """(src, dst) float32 point triples: DWPose boxes (whole frames and boxes partly outside) and general triangles."""
    out = []
    for i in range(n):
        v = floats(6, 100 + i, 0.0, 1.0)
        if i % 2 == 0:
            fw, fh = 16 + v[0] * 1984, 16 + v[1] * 1984
            x1, y1 = -50 + v[2] * fw * 0.8, -50 + v[3] * fh * 0.8
            box = (0, 0, int(fw), int(fh)) if i % 10 == 0 else (x1, y1, x1 + 4 + v[4] * fw, y1 + 4 + v[5] * fh)
            out.append(dwpose_points(box, 288, 384))
        else:
            src = floats(6, 500 + i, -100, 1000).astype(np.float32).reshape(3, 2)
            dst = floats(6, 900 + i, -100, 1000).astype(np.float32).reshape(3, 2)
            out.append((src, dst))
    return out


def warp_cases():
    """(name, uint8 image, src points, dst points, (out_w, out_h)): every kind of matrix and border the kernel meets."""
    cases = []
    shapes = [(37, 53, 3), (64, 48, 3), (31, 17, 1), (50, 70, 4), (90, 120, 3)]
    for k, shape in enumerate(shapes):
        img = hashed(shape, k)
        h, w = shape[:2]
        v = floats(6, 40 + k, 0.0, 1.0)
        box = (-10 + v[0] * w / 2, -10 + v[1] * h / 2, w / 2 + v[2] * (w / 2 + 10), h / 2 + v[3] * (h / 2 + 10))
        cases.append((f"dwpose_box_{k}", img, *dwpose_points(box, 36, 48), (36, 48)))
        src = (floats(6, 60 + k, 0.0, 1.0).reshape(3, 2) * (w, h)).astype(np.float32)
        dst = floats(6, 70 + k, -5, 45).astype(np.float32).reshape(3, 2)
        cases.append((f"general_{k}", img, src, dst, (41, 33)))
        src = np.float32([[0, 0], [w, 0], [0, h]])
        dst = src + floats(6, 80 + k, -1.5, 1.5).astype(np.float32).reshape(3, 2)
        cases.append((f"subpixel_{k}", img, src, dst, (w, h)))
        src = np.float32([[3, 3], [8, 3], [3, 8]]) + floats(6, 90 + k, -3, 3).astype(np.float32).reshape(3, 2)
        dst = np.float32([[0, 0], [40, 0], [0, 40]])
        cases.append((f"upscale_{k}", img, src, dst, (44, 44)))
    frame = smooth_frame(720, 1280, 3)
    for j, box in enumerate([(0, 0, 1280, 720), (-50.5, 600.25, 300.0, 900.0)]):
        cases.append((f"dwpose_720p_{j}", frame, *dwpose_points(box, 288, 384), (288, 384)))
    return cases
