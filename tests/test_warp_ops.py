"""warp_ops reproduces OpenCV 4.9.0.80 (the reference's pin) bit for bit, whatever OpenCV is installed.

tests/golden/warp/opencv49.npz holds 4.9.0.80's getAffineTransform matrices and warpAffine(INTER_LINEAR) images for
the inputs of tests/warp_cases.py (recorded by tools/golden/record_warp.py). OpenCV 5.0/5.1 differ from them by up
to 6 grey levels, so these tests would catch a fall-back to the installed cv2.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from musetalk_core.warp_ops import affine_from_points, invert_affine, warp_affine_linear
from warp_cases import point_cases, warp_cases

GOLDEN = np.load(Path(__file__).parent / "golden" / "warp" / "opencv49.npz")


def _warp(img, mat, size, device="cpu"):
    t = torch.from_numpy(img if img.ndim == 3 else img[..., None])[None].to(device)
    out = warp_affine_linear(t, [mat], size)[0].cpu().numpy()
    return out if img.ndim == 3 else out[..., 0]


def test_matrices_equal_opencv49_to_the_last_bit():
    ours = np.stack([affine_from_points(s, d) for s, d in point_cases()])
    assert ours.shape == GOLDEN["matrices"].shape
    assert np.array_equal(ours, GOLDEN["matrices"]), np.abs(ours - GOLDEN["matrices"]).max()


@pytest.mark.parametrize("case", warp_cases(), ids=lambda c: c[0])
def test_warp_equals_opencv49(case):
    name, img, src, dst, size = case
    out = _warp(img, affine_from_points(src, dst), size)
    ref = GOLDEN[name]
    ref = ref[..., None] if ref.ndim == 2 else ref  # OpenCV drops a single channel axis
    assert out.shape == ref.shape and out.dtype == np.uint8
    diff = np.abs(out.astype(int) - ref.astype(int))
    assert diff.max() == 0, f"{name}: {int((diff > 0).sum())} values differ, by up to {diff.max()}"


def test_batch_with_own_matrices_equals_one_by_one():
    """A batch of frames, each with its own matrix (axis-aligned and rotated in one call), equals single calls."""
    cases = [c for c in warp_cases() if c[0].startswith("dwpose_720p")]
    frame = cases[0][1]
    mats = [affine_from_points(c[2], c[3]) for c in cases]
    rotated = affine_from_points(np.float32([[0, 0], [100, 0], [0, 100]]), np.float32([[150, 10], [230, 70], [90, 90]]))
    batch = torch.from_numpy(np.stack([frame] * 3))
    for mat_list in (mats, [rotated, mats[0]]):
        together = warp_affine_linear(batch[:len(mat_list)], mat_list, (288, 384)).numpy()
        for i, mat in enumerate(mat_list):
            assert np.array_equal(together[i], _warp(frame, mat, (288, 384)))


def test_axis_aligned_fast_path_equals_the_general_one():
    """DWPose's matrices take the separable path; the four-gather path must give the same bytes on them."""
    from musetalk_core import warp_ops

    for name, img, src, dst, size in warp_cases():
        inv = invert_affine(affine_from_points(src, dst))
        if inv[0, 1] != 0 or inv[1, 0] != 0:
            continue
        t = torch.from_numpy(img if img.ndim == 3 else img[..., None])[None]
        assert torch.equal(warp_ops._warp_axis_aligned(t, [inv], *size), warp_ops._warp_general(t, [inv], *size)), name


def test_collinear_points_give_opencvs_zero_matrix():
    pts = np.float32([[0, 0], [1, 1], [2, 2]])
    assert np.array_equal(affine_from_points(pts, pts), np.zeros((2, 3)))


def test_bad_images_are_refused_clearly():
    with pytest.raises(ValueError, match="uint8"):
        warp_affine_linear(torch.zeros(1, 4, 4, 3), [np.eye(2, 3)], (4, 4))
    with pytest.raises(ValueError, match="2 matrices for 1 images"):
        warp_affine_linear(torch.zeros(1, 4, 4, 3, dtype=torch.uint8), [np.eye(2, 3)] * 2, (4, 4))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA: the same integer arithmetic on the GPU")
def test_warp_on_cuda_equals_opencv49():
    for name, img, src, dst, size in warp_cases():
        ref = GOLDEN[name]
        ours = _warp(img, affine_from_points(src, dst), size, "cuda")
        assert np.array_equal(ours.reshape(ref.shape), ref), name
