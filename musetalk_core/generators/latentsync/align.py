"""LatentSync's face alignment and restore (latentsync/utils/affine_transform.py AlignRestore), in plain torch.

Align: a similarity transform takes three points (left eyebrow centre, right eyebrow centre, nose centre) to a fixed
template, with a "smooth" bias on the translation that carries over from frame to frame (so results depend on the
frame order, as upstream); the frame is warped bilinearly to a (75 * r) x (100 * r) crop (r = resolution / 256 *
2.8), outside pixels 127. Restore: the generated face is warped back, cut by an eroded and blurred mask of the crop
area, and blended over the frame.

The warps reproduce kornia's warp_affine (align_corners=True, "fill" as a separately warped ones-mask) with
torch.grid_sample; the erosions kornia's (2 x 2, origin (1, 1)) and cv2.erode's; the blur kornia's separable
Gaussian with reflect borders. Upstream runs this in float16 on the GPU (AlignRestore's default dtype); the
functions here run in the dtype they are given (float32 by default, which the goldens use).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

FILL = 127.0


def face_template(resolution: int) -> Tuple[np.ndarray, Tuple[int, int]]:
    """Template points (3, 2) and the crop size (width, height) for a face resolution."""
    ratio = resolution / 256 * 2.8
    template = np.array([[17.0, 20.0], [58.0, 20.0], [37.5, 40.0]]) * ratio
    return template, (int(75 * ratio), int(100 * ratio))


def insightface_points(landmarks106: np.ndarray) -> np.ndarray:
    """The three alignment points from InsightFace's 106 landmarks, rounded as upstream."""
    left = np.mean(landmarks106[[43, 48, 49, 51, 50]], axis=0)
    right = np.mean(landmarks106[101:106], axis=0)
    nose = np.mean(landmarks106[[74, 77, 83, 86]], axis=0)
    return np.round([left, right, nose])


@dataclass
class SmoothState:
    """The translation bias carried from frame to frame (AlignRestore.p_bias)."""

    bias: Optional[torch.Tensor] = None


def similarity(points: np.ndarray, template: np.ndarray, state: Optional[SmoothState] = None) -> torch.Tensor:
    """(2, 3) float32 matrix mapping frame pixels to template pixels (transformation_from_points, smooth=True)."""
    p1 = torch.tensor(points, dtype=torch.float32)
    p2 = torch.tensor(template, dtype=torch.float32)
    c1, c2 = p1.mean(0), p2.mean(0)
    s1, s2 = torch.std(p1 - c1), torch.std(p2 - c2)  # unbiased, over all six numbers, as upstream
    n1, n2 = (p1 - c1) / s1, (p2 - c2) / s2
    u, _, v = torch.svd(n1.T @ n2)
    rot = v @ u.T
    if torch.det(rot) < 0:
        v[:, -1] = -v[:, -1]
        rot = v @ u.T
    scaled = (s2 / s1) * rot
    shift = c2.reshape(2, 1) - (s2 / s1) * (rot @ c1.reshape(2, 1))
    matrix = torch.cat([scaled, shift], dim=1)
    if state is not None:
        bias = n2[2] - n1[2]
        if state.bias is not None:
            bias = state.bias * 0.2 + bias * 0.8
        state.bias = bias
        matrix[:, 2] = matrix[:, 2] + bias
    return matrix


def _pixel_to_norm(h: int, w: int) -> torch.Tensor:
    """Pixel -> [-1, 1] coordinates with align_corners=True (kornia normal_transform_pixel), float32."""
    t = torch.tensor([[1.0, 0.0, -1.0], [0.0, 1.0, -1.0], [0.0, 0.0, 1.0]])
    t[0, 0] = t[0, 0] * 2.0 / (1e-14 if w == 1 else w - 1.0)
    t[1, 1] = t[1, 1] * 2.0 / (1e-14 if h == 1 else h - 1.0)
    return t


def warp_affine(src: torch.Tensor, matrix: torch.Tensor, size_hw: Tuple[int, int],
                fill: Optional[float] = None) -> torch.Tensor:
    """kornia.geometry.transform.warp_affine(src (B, C, H, W), matrix (2, 3), size, bilinear, align_corners=True);
    ``fill`` None = zeros outside, else that value blended in by a warped ones-mask (kornia's "fill" mode).
    The matrix algebra is kornia's, in float32 and in its order, so sampling positions agree to the last bits."""
    m = torch.eye(3)
    m[:2] = matrix.float()
    dst_from_src = _pixel_to_norm(*size_hw) @ (m @ torch.inverse(_pixel_to_norm(*src.shape[-2:])))
    theta = torch.inverse(dst_from_src)[:2].to(device=src.device, dtype=src.dtype)[None].expand(src.shape[0], 2, 3)
    grid = F.affine_grid(theta, [src.shape[0], src.shape[1], *size_hw], align_corners=True)
    out = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    if fill is None:
        return out
    outside = 1 - F.grid_sample(torch.ones_like(src), grid, mode="bilinear", padding_mode="zeros",
                                align_corners=True)
    return out + outside * fill


def align_face(frame: np.ndarray, points: np.ndarray, resolution: int, state: Optional[SmoothState] = None,
               dtype: torch.dtype = torch.float32) -> Tuple[np.ndarray, torch.Tensor]:
    """uint8 (H, W, 3) frame -> uint8 crop (100r, 75r, 3) and the (2, 3) matrix (align_warp_face)."""
    template, (crop_w, crop_h) = face_template(resolution)
    matrix = similarity(points, template, state)
    img = torch.from_numpy(np.ascontiguousarray(frame)).to(dtype).permute(2, 0, 1)[None]
    crop = warp_affine(img, matrix, (crop_h, crop_w), fill=FILL)
    return crop[0].permute(1, 2, 0).numpy().astype(np.uint8), matrix


def resize_face(face: torch.Tensor, size_hw: Tuple[int, int]) -> torch.Tensor:
    """(3, res, res) generated face -> crop size (bicubic, antialias: torchvision's tensor resize)."""
    return F.interpolate(face[None], size=size_hw, mode="bicubic", align_corners=False, antialias=True)[0]


def _erode_2x2(mask: torch.Tensor) -> torch.Tensor:
    """kornia erosion with a 2 x 2 kernel: min over rows y-1..y, cols x-1..x (outside ignored)."""
    padded = F.pad(mask, (1, 0, 1, 0), value=1e4)
    return -F.max_pool2d(-padded, 2, stride=1)


def _cv2_erode(mask: torch.Tensor, k: int) -> torch.Tensor:
    """cv2.erode with a k x k box, anchor at its centre (k // 2), outside ignored."""
    lead = k // 2
    padded = F.pad(-mask, (lead, k - 1 - lead, lead, k - 1 - lead), value=float("-inf"))
    return -F.max_pool2d(padded, k, stride=1)


def _gaussian_blur(x: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
    """kornia gaussian_blur2d (separable, reflect borders) for an odd ``size``."""
    t = torch.arange(size, dtype=x.dtype, device=x.device) - size // 2
    k = torch.exp(-t.pow(2) / (2 * sigma ** 2))
    k = k / k.sum()
    pad = (size - 1) // 2
    x = F.conv2d(F.pad(x, (pad, pad, 0, 0), mode="reflect"), k.view(1, 1, 1, size))
    return F.conv2d(F.pad(x, (0, 0, pad, pad), mode="reflect"), k.view(1, 1, size, 1))


def restore_face(frame: np.ndarray, face: torch.Tensor, matrix: torch.Tensor, resolution: int,
                 dtype: torch.dtype = torch.float32) -> np.ndarray:
    """Paste the generated ``face`` (3, crop_h, crop_w) in [-1, 1] back into ``frame`` (restore_img), uint8.

    Runs on the face's device (the matrix algebra stays on the CPU in float32, as kornia's)."""
    h, w, _ = frame.shape
    device = face.device
    _, (crop_w, crop_h) = face_template(resolution)
    m = torch.eye(3, dtype=torch.float32)
    m[:2] = matrix.float()
    inverse = torch.inverse(m)[:2]
    back = warp_affine(face.to(dtype)[None], inverse, (h, w), fill=FILL)[0]
    back = (back / 2 + 0.5).clamp(0, 1) * 255
    image = torch.from_numpy(np.ascontiguousarray(frame)).to(device=device, dtype=dtype).permute(2, 0, 1)
    area = warp_affine(torch.ones((1, 1, crop_h, crop_w), dtype=dtype, device=device), inverse, (h, w))
    area = _erode_2x2(area)
    pasted = area[0] * back
    w_edge = int(float(area.float().sum()) ** 0.5) // 20
    # cv2.erode with an empty kernel (faces under ~20 px) uses a 3 x 3 box
    core = _cv2_erode(area.float(), w_edge * 2 if w_edge > 0 else 3).to(dtype)
    size = w_edge * 2 + 1
    soft = _gaussian_blur(core, size, 0.3 * ((size - 1) * 0.5 - 1) + 0.8)[0] if size > 1 else core[0]
    out = soft * pasted + (1 - soft) * image
    return out.permute(1, 2, 0).contiguous().to(torch.uint8).cpu().numpy()
