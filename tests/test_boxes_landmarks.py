"""Crop box from landmarks (golden from the reference's get_landmark_and_bbox), DWPose vs mmpose, locate_faces."""

from __future__ import annotations

import os

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from musetalk_core.errors import InputError, WeightFileError
from musetalk_core.faces.boxes import bbox_range_text, landmark_box
from musetalk_core.weights.loading import load_models

GOLDEN = Path(__file__).parent / "golden" / "detect" / "boxes.json"


def test_box_logic_matches_reference():
    data = json.loads(GOLDEN.read_text())
    checked = fallbacks = 0
    for rec in data["records"]:
        lm = np.array(rec["landmarks"], np.float32).astype(np.int32)
        before = lm.copy()
        if not rec["has_face"]:
            assert rec["error"] == "ZeroDivisionError"
            assert "No face" in bbox_range_text(1, [], [], rec["shift"])
            continue
        fb = landmark_box(lm, rec["detector_box"], rec["shift"])
        assert list(fb.box) == rec["coords"], rec["name"]
        assert np.array_equal(lm, before)  # our input is not mutated (the reference mutates its own copy)
        assert bbox_range_text(1, [fb.range_minus], [fb.range_plus], rec["shift"]) == rec["range_text"]
        checked += 1
        fallbacks += fb.used_fallback
    assert checked >= 15 and fallbacks >= 3


def test_extra_margin_and_in_place_shift():
    lm = np.zeros((68, 2), np.int32)
    lm[:, 0] = np.arange(68) + 10
    lm[:, 1] = 100
    lm[28, 1], lm[29, 1], lm[30, 1] = 90, 100, 110
    lm[8, 1] = 150  # chin
    fb = landmark_box(lm, (0, 0, 5, 5), 0, extra_margin=10, frame_height=155)
    assert fb.box == (10, 50, 77, 155)  # y1 = 2*100 - 150; y2 = min(150 + 10, 155)
    big = landmark_box(lm, (1, 2, 3, 4), 60)  # lm29 moves to 160 and becomes the max: y2 = 160, y1 = 160
    assert big.used_fallback and big.box == (1, 2, 3, 4)
    assert (fb.range_minus, fb.range_plus) == (10, 10)


@pytest.fixture(scope="module")
def models(tiny_models_factory):
    folder = tiny_models_factory("v15", networks=["s3fd", "landmarks"])
    return load_models([folder], device="cpu", networks=["s3fd", "landmarks"]), folder


def _frames(sizes, seed=0):
    import cv2

    rng = np.random.default_rng(seed)
    out = []
    for h, w in sizes:
        f = np.zeros((h, w, 3), np.uint8)
        f[:] = rng.integers(0, 255, 3)
        cv2.circle(f, (w // 3, h // 2), max(4, min(h, w) // 4), (250, 250, 250), -1)
        out.append(f)
    return out


def test_dwpose_batch_invariant(models):
    from musetalk_core.models.dwpose import predict_keypoints

    net = models[0].network("landmarks")
    frames = np.stack(_frames([(120, 160)] * 4))
    kp4, _ = predict_keypoints(net, frames)
    kp1 = np.concatenate([predict_keypoints(net, frames[i:i + 1])[0] for i in range(4)])
    # identical except at SimCC near-ties, where the batch's other summation order may pick the other bin
    tie = simcc_margins(net, frames) < BATCH_TIE
    assert tie.mean() < 0.05, int(tie.sum())
    assert np.array_equal(kp1.astype(np.int32)[~tie], kp4.astype(np.int32)[~tie])


# --- DWPose (plain torch) vs the mmpose backend -------------------------------------------------------------------
# "calibrated" tiny weights (tests/tiny/dwpose.py): BatchNorm statistics measured on synthetic images, so keypoints
# follow the image content and the parity below exercises the whole network, not just pre/post-processing.

PARITY_SIZES = {  # (H, W)
    "portrait": (320, 180), "landscape": (180, 320), "tiny": (24, 18), "tiny_wide": (9, 40),
    "720p": (720, 1280), "very_wide": (77, 333), "net_input": (384, 288),
}


@pytest.fixture(scope="module")
def content_dwpose(tiny_models_factory):
    folder = tiny_models_factory("v15", networks=["landmarks"], dwpose_init="calibrated")
    net = load_models([folder], device="cpu", networks=["landmarks"]).network("landmarks")
    return net, folder / "dwpose" / "dw-ll_ucoco_384.pth"


@pytest.fixture(scope="module")
def mmpose_dwpose(content_dwpose):
    if not os.environ.get("CI"):  # CI installs the mmpose yardstick (python install.py --dev): never skip there
        pytest.importorskip("mmpose", reason="mmpose not installed (python install.py --with-mmpose)")
    from musetalk_core.models.dwpose_mmpose import load_mmpose_dwpose

    return load_mmpose_dwpose(content_dwpose[1], "cpu")


class _PinnedWarpCv2:
    """mmpose's cv2 with warpAffine replaced by warp_ops (OpenCV 4.9.0.80's numbers, tests/test_warp_ops.py).

    mmpose warps with whatever OpenCV is installed, and OpenCV 5 moved warpAffine by up to 6 grey levels; the
    reference (and our DWPose) follow the reference's pin, 4.9.0.80. With the warp pinned on both sides, the parity
    below checks everything else: centre/scale, matrix, normalisation, network, flip test and decode."""

    def __init__(self, cv2):
        self._cv2 = cv2

    def __getattr__(self, name):
        return getattr(self._cv2, name)

    def warpAffine(self, img, mat, size, flags=None):  # noqa: N802 (OpenCV's name)
        from musetalk_core.warp_ops import warp_affine_linear

        assert flags == self._cv2.INTER_LINEAR and img.ndim == 3, (flags, img.shape)
        return warp_affine_linear(torch.from_numpy(np.ascontiguousarray(img))[None], [mat], tuple(size))[0].numpy()


@pytest.fixture
def mmpose_pinned_warp(mmpose_dwpose, monkeypatch):
    from mmpose.datasets.transforms import topdown_transforms

    monkeypatch.setattr(topdown_transforms, "cv2", _PinnedWarpCv2(topdown_transforms.cv2))
    return mmpose_dwpose


def _varied(n=10, size=(240, 320), seed=5):
    from tiny.dwpose import synthetic_images

    return synthetic_images(n, *size, seed=seed)


def test_dwpose_keypoints_follow_image_content(content_dwpose):
    from musetalk_core.models.dwpose import FACE_SLICE, predict_keypoints

    net = content_dwpose[0]
    frames = _varied()
    kp = predict_keypoints(net, frames)[0].astype(np.int32)  # same size: differences come from content only
    assert len({k.tobytes() for k in kp}) == len(frames)
    assert len({k[FACE_SLICE].tobytes() for k in kp}) == len(frames)
    positions = np.array([len({tuple(p) for p in kp[:, j]}) for j in range(kp.shape[1])])
    assert (positions >= 2).all() and np.median(positions) >= 5, positions  # every keypoint moves, most a lot
    assert (positions[FACE_SLICE] >= 2).all()
    moved = np.mean([(kp[i] != kp[i + 1]).any(-1).mean() for i in range(len(kp) - 1)])
    assert moved > 0.6, moved  # consecutive frames: most of the 133 keypoints land elsewhere
    # a 12x12 inverted patch in one frame moves keypoints, face points among them
    patched = frames[:1].copy()
    patched[0, 100:112, 150:162] = 255 - patched[0, 100:112, 150:162]
    kp_p = predict_keypoints(net, patched)[0].astype(np.int32)[0]
    changed = (kp_p != kp[0]).any(-1)
    assert changed.sum() >= 10 and changed[FACE_SLICE].any(), changed.sum()
    # the flip test takes part: without it the result differs
    kp_noflip = predict_keypoints(net, frames[:3], flip_test=False)[0].astype(np.int32)
    assert (kp_noflip != kp[:3]).any(-1).sum() >= 10


BATCH_TIE = 5e-3  # batching moves the SimCC logits by ~1e-4 (measured)


def simcc_margins(net, frames, boxes=None, flip_test=True) -> np.ndarray:
    """(N, 133): per keypoint, the smaller of its x and y gaps between the two best SimCC bins (one frame per call)."""
    from musetalk_core.models.dwpose import simcc_logits, warp_inputs

    inputs, _, _ = warp_inputs(frames, boxes)
    margin = np.full((len(frames), 133), np.inf, np.float32)
    for i in range(len(frames)):
        for logits in simcc_logits(net, inputs[i:i + 1], flip_test):
            top2 = torch.topk(logits[0], 2, dim=-1).values
            margin[i] = np.minimum(margin[i], (top2[:, 0] - top2[:, 1]).numpy())
    return margin


def _compare(net, frames, boxes, theirs, label, stats, flip_test=True):
    """Ours one frame per call, as mmpose runs it: bit-identical keypoints and scores (same operations on the same
    machine, whatever its kernels). Ours batched: the same keypoints after int truncation, scores within rounding."""
    from musetalk_core.models.dwpose import predict_keypoints

    k2, s2 = theirs
    single = [predict_keypoints(net, frames[i:i + 1], None if boxes is None else [boxes[i]], flip_test)
              for i in range(len(frames))]
    k1, s1 = np.concatenate([o[0] for o in single]), np.concatenate([o[1] for o in single])
    assert k1.shape == k2.shape and k1.shape[1:] == (133, 2), label
    stats["keypoints"] += k1.shape[0] * k1.shape[1]
    stats["max_score_diff"] = max(stats["max_score_diff"], float(np.abs(s1 - s2).max()))
    assert np.array_equal(k1, k2), f"{label}: {int((k1 != k2).any(-1).sum())} keypoints differ"
    assert np.array_equal(s1, s2), f"{label}: scores differ by up to {np.abs(s1 - s2).max()}"
    if len(frames) > 1:
        # batched, the convolutions sum in another order (logits move by ~1e-4): the same keypoints except where
        # the two best SimCC bins are within BATCH_TIE (near-ties, where either bin is right), which are few
        kb, sb = predict_keypoints(net, frames, boxes, flip_test)
        tie = simcc_margins(net, frames, boxes, flip_test) < BATCH_TIE
        diff = (kb.astype(np.int32) != k2.astype(np.int32)).any(-1)
        stats["batched_differ"] += int(diff.sum())
        stats["near_ties"] += int(tie.sum())
        assert tie.mean() < 0.02, f"{label}: {int(tie.sum())} near-ties"
        assert not (diff & ~tie).any(), f"{label} batched: {int((diff & ~tie).sum())} keypoints differ off the ties"
        # scores are SimCC logit maxima (~10-30 here)
        np.testing.assert_allclose(sb, s2, rtol=1e-4, atol=5e-3, err_msg=label)


def test_dwpose_matches_mmpose_backend(content_dwpose, mmpose_pinned_warp):
    """Our DWPose == mmpose's init_model/inference_topdown (flip test on, as MuseTalk runs it)."""
    net, mm = content_dwpose[0], mmpose_pinned_warp
    assert mm.model.test_cfg.get("flip_test") is True
    stats = {"keypoints": 0, "batched_differ": 0, "near_ties": 0, "max_score_diff": 0.0}
    frames = _varied(6)  # the first 6 of the content test's frames (mmpose runs one frame per call: keep it short)
    _compare(net, frames, None, mm.predict_keypoints(frames), "varied 240x320", stats)
    for i, (label, size) in enumerate(PARITY_SIZES.items()):
        frame = _varied(1, size, seed=40 + i)
        _compare(net, frame, None, mm.predict_keypoints(frame), label, stats)
    # person boxes: inside, partly outside the frame, and a thin one (aspect fix on both axes)
    frame = _varied(1, PARITY_SIZES["720p"], seed=60)
    boxes = [(400.0, 100.0, 700.0, 500.0), (-50.5, 600.25, 300.0, 900.0), (900.0, 10.0, 930.0, 700.0)]
    for box in boxes:
        _compare(net, frame, [box], mm.predict_keypoints(frame, [box]), f"box {box}", stats)
    assert stats["keypoints"] == 133 * (len(frames) + len(PARITY_SIZES) + len(boxes))
    print(f"DWPose vs mmpose: {stats}")


def test_dwpose_matches_mmpose_backend_without_flip(content_dwpose, mmpose_pinned_warp):
    net, mm = content_dwpose[0], mmpose_pinned_warp
    stats = {"keypoints": 0, "batched_differ": 0, "near_ties": 0, "max_score_diff": 0.0}
    frames = _varied(4, (200, 150), seed=70)
    mm.model.test_cfg["flip_test"] = False
    try:
        theirs = mm.predict_keypoints(frames)
    finally:
        mm.model.test_cfg["flip_test"] = True
    _compare(net, frames, None, theirs, "no flip", stats, flip_test=False)


def test_mmpose_missing_is_clear(monkeypatch, tmp_path):
    import builtins

    from musetalk_core.models import dwpose_mmpose

    real = builtins.__import__

    def fake(name, *a, **k):
        if name.startswith("mmpose"):
            raise ImportError("No module named 'mmpose'")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(InputError, match="install.py --with-mmpose"):
        dwpose_mmpose.import_mmpose()


def test_wrong_checkpoint_in_dwpose_slot(tmp_path):
    from musetalk_core.models.dwpose import load_dwpose

    path = tmp_path / "dw-ll_ucoco_384.pth"
    torch.save({"conv1_1.weight": torch.zeros(64, 3, 3, 3)}, path)
    with pytest.raises(WeightFileError, match="DWPose"):
        load_dwpose(path)


def test_locate_faces_end_to_end(models):
    from musetalk_core.faces.locate import locate_faces

    m = models[0]
    frames = torch.from_numpy(np.stack(_frames([(128, 160)] * 3) + [np.full((128, 160, 3), 255, np.uint8)]))
    steps = []
    from musetalk_core.hooks import RunHooks

    a = locate_faces(m, frames, batch_size=1, hooks=RunHooks(advance=steps.append))
    b = locate_faces(m, frames, batch_size=4)
    assert steps == [1, 1, 1, 1]
    assert torch.equal(a.boxes, b.boxes) and torch.equal(a.landmarks, b.landmarks)
    assert a.boxes.dtype == torch.int64 and a.landmarks.shape == (4, 68, 2)
    for i in range(4):
        if a.has_face[i]:
            assert a.boxes[i, 3] <= 128 and len(a.range_minus) == int(a.has_face.sum())
        else:
            assert a.boxes[i].abs().sum() == 0
    assert "Total frame:「4」" in a.bbox_range_text()
    v1 = locate_faces(m, frames, version="v1", bbox_shift=5, face_selection="largest",
                      landmark_region="face_region", detector_scale=0.5)
    assert v1.settings["landmark_region"] == "face_region"
    with pytest.raises(InputError):
        locate_faces(m, frames.float())
    with pytest.raises(InputError):
        locate_faces(m, frames, face_selection="biggest")
