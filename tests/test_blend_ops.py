"""The blend kernels against the libraries they reproduce (cv2 / PIL are runtime requirements of the pack)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from musetalk_core.blend import kernels as blend_ops

import cv2
from PIL import Image


def test_resize_linear_matches_cv2_for_mixed_sizes_in_one_batch():
    rng = np.random.default_rng(0)
    sizes = [(1, 1), (2, 317), (256, 256), (37, 400), (511, 129), (130, 131), (255, 257), (83, 61)]
    imgs = rng.integers(0, 256, (len(sizes), 256, 256, 3), dtype=np.uint8)
    out = blend_ops.resize_linear(torch.from_numpy(imgs), sizes).numpy()
    for b, (w, h) in enumerate(sizes):
        ref = cv2.resize(imgs[b], (w, h))
        np.testing.assert_array_equal(out[b, :h, :w], ref, err_msg=f"size {(w, h)}")
        assert not out[b, h:].any() and not out[b, :, w:].any()


def test_resize_linear_random_sizes_bit_exact():
    rng = np.random.default_rng(1)
    for _ in range(4):
        sizes = [tuple(int(v) for v in rng.integers(1, 450, size=2)) for _ in range(6)]
        imgs = rng.integers(0, 256, (6, 256, 256, 3), dtype=np.uint8)
        out = blend_ops.resize_linear(torch.from_numpy(imgs), sizes).numpy()
        for b, (w, h) in enumerate(sizes):
            assert np.array_equal(out[b, :h, :w], cv2.resize(imgs[b], (w, h))), (w, h)


@pytest.mark.parametrize("ksize", [1, 3, 5, 7, 9, 19, 39, 101])
def test_gaussian_kernel_sums_to_one(ksize):
    taps = blend_ops.gaussian_kernel_fixed(ksize)
    assert len(taps) == ksize and sum(taps) == 256 and list(taps) == list(taps)[::-1]


def test_gaussian_blur_matches_cv2_with_mixed_sizes_and_kernels():
    rng = np.random.default_rng(2)
    sides = [1, 2, 5, 9, 40, 150, 301, 64, 90]
    factors = [0.05, 0.1, 0.5, 0.5, 0.05, 0.1, 0.05, 0.3, 0.02]
    masks, ks = [], []
    for i, (s, f) in enumerate(zip(sides, factors)):
        if i % 2:
            m = ((rng.random((s, s)) > 0.6) * 255).astype(np.uint8)
        else:
            m = rng.integers(0, 256, (s, s), dtype=np.uint8)
        masks.append(m)
        ks.append(blend_ops.blur_kernel_size(f, s))
    out = blend_ops.gaussian_blur_masks([torch.from_numpy(m) for m in masks], ks)
    for m, k, o in zip(masks, ks, out):
        ref = cv2.GaussianBlur(m, (k, k), 0)
        np.testing.assert_array_equal(o.numpy(), ref, err_msg=f"side {m.shape[0]} k {k}")


def test_blur_kernel_rule_matches_reference_examples():
    # musetalk-pipeline.md §7: 2s=390 -> 19 (0.05) and 39 (0.1); 300 -> 15 and 31
    assert blend_ops.blur_kernel_size(0.05, 390) == 19
    assert blend_ops.blur_kernel_size(0.1, 390) == 39
    assert blend_ops.blur_kernel_size(0.05, 300) == 15
    assert blend_ops.blur_kernel_size(0.1, 300) == 31
    assert blend_ops.blur_kernel_size(0.0, 300) == 1


def test_compose_matches_pil_paste_with_crop_outside_frame():
    rng = np.random.default_rng(3)
    h, w = 50, 70
    frame = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    face = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)  # (height, width) of box
    box = (-6, 35, 18, 55)  # partly outside left and bottom
    crop = (-14, 27, 26, 67)  # side 40
    mask = rng.integers(0, 256, (40, 40), dtype=np.uint8)
    mask[rng.random((40, 40)) < 0.3] = 0
    body = Image.fromarray(frame)
    large = body.crop(crop)
    large.paste(Image.fromarray(face), (box[0] - crop[0], box[1] - crop[1], box[2] - crop[0], box[3] - crop[1]))
    body.paste(large, crop[:2], Image.fromarray(mask))
    ref = np.array(body)

    bi, y, x, vals = blend_ops.compose(torch.from_numpy(frame)[None], torch.from_numpy(face)[None],
                                       torch.tensor([box]), torch.tensor([crop]), torch.from_numpy(mask)[None])
    out = frame.copy()
    out[y.numpy(), x.numpy()] = vals.numpy()
    np.testing.assert_array_equal(out, ref)
    assert (out != frame).any()


def test_gaussian_blur_large_mask_beside_tiny_ones_bit_exact():
    # one batch: a 700-px mask (k = 71, cost linear in k) next to masks much smaller than the batch's kernel radius
    rng = np.random.default_rng(5)
    masks = [((rng.random((700, 700)) > 0.5) * 255).astype(np.uint8), rng.integers(0, 256, (2, 2), dtype=np.uint8),
             rng.integers(0, 256, (3, 3), dtype=np.uint8), rng.integers(0, 256, (1, 1), dtype=np.uint8)]
    ks = [blend_ops.blur_kernel_size(0.1, 700), 3, 3, 1]
    out = blend_ops.gaussian_blur_masks([torch.from_numpy(m) for m in masks], ks)
    for m, k, o in zip(masks, ks, out):
        np.testing.assert_array_equal(o.numpy(), cv2.GaussianBlur(m, (k, k), 0), err_msg=f"side {m.shape[0]} k {k}")
