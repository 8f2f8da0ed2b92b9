"""Face parsing and blend-mask material against golden values recorded from the reference (tools/golden/record_parsing.py)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from musetalk_core.faces import parsing
from musetalk_core.errors import InputError, WeightFileError

GOLDEN = Path(__file__).parent / "golden" / "parsing" / "parsing_cases.npz"


@pytest.fixture(scope="module")
def golden():
    with np.load(GOLDEN) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def parser(tiny_models_factory):
    from musetalk_core.weights.loading import load_models

    folder = tiny_models_factory("v15", ["face_parser"])
    models = load_models([folder], "v15", precision="fp32", device="cpu", networks=["face_parser"])
    return models.network("face_parser")


@pytest.fixture(scope="module")
def ours(golden, parser):
    """Our labels and masks for every recorded case, in one parser batch per mode."""
    n = int(golden["num_cases"])
    frames = [golden[f"frame_{i}"] for i in range(n)]
    boxes = [golden[f"box_{i}"].tolist() for i in range(n)]
    # one parser call for all cases (raw mode; cheek widths only matter for jaw)
    crops, raw_masks, labels = parsing.face_masks(parser, frames, boxes, "raw", return_labels=True)
    out = {"raw": (crops, raw_masks, list(labels))}
    jaw = []
    for i in range(n):  # jaw mode from the same label maps, with each case's cheek widths
        left, right = golden[f"cheeks_{i}"].tolist()
        jaw.append(parsing.mask_material(parsing.labels_to_mask(labels[i], "jaw", left, right), crops[i], boxes[i]))
    out["jaw"] = (crops, jaw, list(labels))
    return out


def masks_from_labels(golden, crops, labels, mode):
    """Our mask material for every case, made from the given 512x512 label maps."""
    out = []
    for i, lab in enumerate(labels):
        left, right = golden[f"cheeks_{i}"].tolist()
        out.append(parsing.mask_material(parsing.labels_to_mask(lab, mode, left, right), crops[i],
                                         golden[f"box_{i}"].tolist()))
    return out


@pytest.fixture(scope="module")
def from_reference_labels(golden, ours):
    """Our masks made from the reference's own label maps: the mask arithmetic (class selection, jaw dilation,
    resize, paste, cut, blur) is compared exactly, free of the network's float rounding."""
    n = int(golden["num_cases"])
    labels = [golden[f"labels_{i}"] for i in range(n)]
    crops = ours["raw"][0]
    return {mode: (crops, masks_from_labels(golden, crops, labels, mode), labels) for mode in ("raw", "jaw")}


def test_batched_parsing_agrees(golden, ours, parser):
    """One batched call (the accelerator path) may differ from one-at-a-time only at rare argmax near-ties."""
    idx = [0, 1, 8]
    frames = [golden[f"frame_{i}"] for i in idx]
    boxes = [golden[f"box_{i}"].tolist() for i in idx]
    _, _, labels = parsing.face_masks(parser, frames, boxes, "raw", return_labels=True, one_by_one=False)
    for lab, i in zip(labels, idx):
        assert np.mean(lab != ours["raw"][2][i]) < 1e-4


def test_weights_are_the_recorded_ones(golden):
    from tiny.bisenet import seeded_state

    state = seeded_state()
    digest = hashlib.sha1(b"".join(state[k].numpy().tobytes() for k in sorted(state))).hexdigest()
    assert digest == str(golden["weights_sha1"])


def test_golden_cases_are_non_trivial(golden):
    n = int(golden["num_cases"])
    assert n >= 10
    assert len({golden[f"frame_{i}"].shape for i in range(n)}) >= 10
    for i in range(n):
        for mode in ("raw", "jaw"):
            frac = (golden[f"preblur_{mode}_{i}"] > 0).mean()
            assert 0.05 < frac < 0.6, (i, mode, frac)
    # jaw mode really differs from raw somewhere
    assert any((golden[f"preblur_raw_{i}"] != golden[f"preblur_jaw_{i}"]).any() for i in range(n))


def test_label_maps_match_reference_away_from_ties(golden, ours):
    """Identical label maps except at the reference's near-ties: pixels whose two best class scores are within
    ``tie_gap`` (0.01, scores ~20), where CPU kernels and thread counts (differences up to ~3e-4) may pick either
    class. There ours must be one of the two. Those pixels are few, so the exemption is narrow."""
    gap = float(golden["tie_gap"])
    assert gap <= 0.01
    for i, lab in enumerate(ours["raw"][2]):
        ref = golden[f"labels_{i}"].ravel()
        idx, alt = golden[f"tie_idx_{i}"], golden[f"tie_alt_{i}"]
        assert len(idx) < 2e-3 * ref.size, f"case {i}: {len(idx)} near-ties"
        ours_flat = lab.ravel()
        away = np.ones(ref.size, bool)
        away[idx] = False
        assert np.array_equal(ours_flat[away], ref[away]), f"case {i}: {np.sum(ours_flat[away] != ref[away])} differ"
        assert np.all((ours_flat[idx] == ref[idx]) | (ours_flat[idx] == alt)), f"case {i}: a tie went elsewhere"


def test_our_masks_are_made_from_our_labels(golden, ours):
    """End to end, face_masks' material is exactly what our label maps give (and so the reference's, away from the
    label maps' near-ties: test_label_maps_match_reference_away_from_ties). Jaw mode is built from the same maps."""
    crops, masks, labels = ours["raw"]
    for i, (got, want) in enumerate(zip(masks, masks_from_labels(golden, crops, labels, "raw"))):
        assert np.array_equal(got, want), f"case {i}"


@pytest.mark.parametrize("mode", ["raw", "jaw"])
def test_masks_match_reference(golden, from_reference_labels, mode):
    crops, masks, _ = from_reference_labels[mode]
    for i, (cbox, mask) in enumerate(zip(crops, masks)):
        assert cbox == golden[f"crop_box_{i}"].tolist()
        seg = golden[f"seg_{mode}_{i}"]
        assert mask.shape == seg.shape
        # pre-blur: our stored mask with the reference's upper-boundary cut equals the GaussianBlur input exactly
        top = int(mask.shape[0] * 0.5)
        cut = mask.copy()
        cut[:top] = 0
        assert np.array_equal(cut, golden[f"preblur_{mode}_{i}"]), f"case {i}"
        # inside the face box our material is face_seg's output itself
        assert np.array_equal(mask[mask > 0], seg[mask > 0])
        # finished like get_image_prepare_material (blur 0.1): within one grey level
        final = parsing.finish_mask(mask, 0.5, 0.1)
        diff = np.abs(final.astype(int) - golden[f"final_{mode}_{i}"].astype(int)).max()
        assert diff <= 1, f"case {i}: max diff {diff}"


def test_jaw_kernel_shape():
    k = parsing.jaw_kernel()
    assert k.shape == (33, 33) and int(k.sum()) == 373
    assert not k[:10].any()
    assert k[10].tolist() == [0] * 16 + [1] + [0] * 16
    assert k[21:, 6:27].all() and not k[21:, :6].any() and not k[21:, 27:].any()


def test_cheek_mask_columns():
    m = parsing.cheek_mask(90, 90)
    assert (m[:, :167] == 255).all() and (m[:, 167:346] == 0).all() and (m[:, 346:] == 255).all()


def test_crop_box_rounding():
    assert parsing.crop_box([0, 0, 200, 260]) == ([-95, -65, 295, 325], 195)
    box, s = parsing.crop_box([10, 20, 41, 50])  # w=31 -> 31//2 = 15 -> int(22.5) = 22
    assert s == 22


def test_expanded_crop_black_outside():
    frame = np.full((10, 12, 3), 7, np.uint8)
    crop = parsing.expanded_crop(frame, [-3, -2, 5, 6])
    assert crop.shape == (8, 8, 3)
    assert (crop[:2] == 0).all() and (crop[:, :3] == 0).all() and (crop[2:, 3:] == 7).all()


def test_unknown_mode():
    with pytest.raises(InputError, match="parsing_mode"):
        parsing.resolve_mode("lips", "v15")
    assert parsing.resolve_mode("auto", "v15") == "jaw" and parsing.resolve_mode("auto", "v1") == "raw"


def test_strict_keys(tmp_path):
    from musetalk_core.models.bisenet import load_bisenet
    from tiny.bisenet import seeded_state

    state = seeded_state()
    state.pop("conv_out16.conv_out.weight")
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "79999_iter.pth"
    torch.save(state, str(path))
    with pytest.raises(WeightFileError, match="missing keys.*unexpected keys"):
        load_bisenet(path)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightFileError, match="cannot be read"):
        load_bisenet(path)


@pytest.mark.parametrize("mode", ["raw", "jaw"])
def test_blend_stage_finishes_our_masks_like_the_reference(golden, from_reference_labels, mode):
    """The blend stage's own cut + blur (musetalk_core.blend.kernels) on our stored masks gives the reference's
    get_image_prepare_material output (blur 0.1) within one grey level."""
    from musetalk_core.blend import kernels as blend_ops

    _, masks, _ = from_reference_labels[mode]
    cut, ks = [], []
    for m in masks:
        t = torch.from_numpy(m.copy())
        t[: int(m.shape[0] * 0.5)] = 0
        cut.append(t)
        ks.append(blend_ops.blur_kernel_size(0.1, m.shape[0]))
    for i, out in enumerate(blend_ops.gaussian_blur_masks(cut, ks)):
        diff = np.abs(out.numpy().astype(int) - golden[f"final_{mode}_{i}"].astype(int)).max()
        assert diff <= 1, f"case {i}: {diff}"
