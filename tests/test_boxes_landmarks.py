"""Crop box from landmarks (golden from the reference's get_landmark_and_bbox), DWPose vs mmpose, locate_faces."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from musetalk_core.errors import InputError, WeightFileError
from musetalk_core.face_boxes import bbox_range_text, landmark_box
from musetalk_core.loading import load_models

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
    assert np.array_equal(kp1.astype(np.int32), kp4.astype(np.int32))


def test_dwpose_matches_mmpose_backend(models):
    pytest.importorskip("mmpose", reason="mmpose not installed (python install.py --with-mmpose)")
    from musetalk_core.models.dwpose import predict_keypoints
    from musetalk_core.models.dwpose_mmpose import load_mmpose_dwpose

    folder = models[1]
    net = models[0].network("landmarks")
    mm = load_mmpose_dwpose(folder / "dwpose" / "dw-ll_ucoco_384.pth", "cpu")
    for size in [(120, 160), (160, 90), (77, 333), (384, 288)]:
        frame = np.stack(_frames([size], seed=size[0]))
        ours, s1 = predict_keypoints(net, frame)
        theirs, s2 = mm.predict_keypoints(frame)
        assert np.array_equal(ours.astype(np.int32), theirs.astype(np.int32)), size
        np.testing.assert_allclose(s1, s2, rtol=1e-3, atol=1e-2)
    box = [(10.0, 20.0, 90.0, 100.0)]
    frame = np.stack(_frames([(120, 160)]))
    assert np.array_equal(predict_keypoints(net, frame, box)[0].astype(np.int32),
                          mm.predict_keypoints(frame, box)[0].astype(np.int32))


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
    from musetalk_core.face_locate import locate_faces

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
