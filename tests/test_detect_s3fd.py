"""S3FD: strict loading, the reference's boxes on seeded weights (golden), batching, bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from musetalk_core.errors import WeightFileError
from musetalk_core.weights.loading import load_models
from musetalk_core.models.s3fd import detect, nms_keep

GOLDEN = Path(__file__).parent / "golden" / "detect" / "s3fd.npz"


@pytest.fixture(scope="module")
def s3fd_net(tiny_models_factory):
    folder = tiny_models_factory("v15", networks=["s3fd", "landmarks"])
    return load_models([folder], device="cpu", networks=["s3fd"]).network("s3fd")


@pytest.fixture(scope="module")
def golden():
    data = np.load(GOLDEN)
    n = len(data["final"])
    return [data[f"frame_{i}"] for i in range(n)], [data[f"kept_{i}"] for i in range(n)], data["final"]


def test_s3fd_matches_reference_boxes(s3fd_net, golden):
    frames, kept, final = golden
    for i, frame in enumerate(frames):
        det = detect(s3fd_net, torch.from_numpy(frame)[None])[0]
        ref = kept[i]
        assert det.boxes.shape[0] == ref.shape[0], f"frame {i}: kept count"
        np.testing.assert_allclose(det.boxes.numpy(), ref[:, :4], rtol=0, atol=1e-3)
        np.testing.assert_allclose(det.scores.numpy(), ref[:, 4], rtol=0, atol=1e-5)
        if final[i][0] >= 0:
            ours = [int(v) for v in torch.clamp(det.boxes[0], min=0).tolist()]
            assert ours == list(final[i]), f"frame {i}"
        else:
            assert det.boxes.shape[0] == 0


def test_golden_is_clear_of_ties(s3fd_net, golden):
    """The exact comparisons above (kept count, int-truncated final box) hold on any CPU because no decision is a
    near-tie: CPU kernels move scores by ~1e-6 and box coordinates by ~1e-4 here, while every candidate's score is
    at least 1e-4 from the 0.5 keep threshold and every final box coordinate at least 2e-3 from an integer."""
    from musetalk_core.models.s3fd import STRIDES, _decode_level, preprocess

    frames, kept, final = golden
    for i, frame in enumerate(frames):
        if final[i][0] >= 0:
            coords = np.maximum(kept[i][0, :4].astype(np.float64), 0)
            frac = np.abs(coords - np.round(coords))
            assert frac[coords > 0].min() >= 2e-3, (i, coords)
        with torch.no_grad():
            outs = s3fd_net(preprocess(torch.from_numpy(frame)[None], "cpu"))
        probs = torch.cat([_decode_level(outs[2 * k], outs[2 * k + 1], STRIDES[k])[0] for k in range(6)], 1)
        assert (probs - 0.5).abs().min() >= 1e-4, (i, float((probs - 0.5).abs().min()))


def test_s3fd_batch_invariant(s3fd_net, golden):
    frames = torch.from_numpy(np.stack(golden[0][:4]))
    one = [detect(s3fd_net, f[None])[0] for f in frames]
    four = detect(s3fd_net, frames)
    for a, b in zip(one, four):
        # conv kernels may round differently per batch size (last-bit float noise); the boxes the pipeline uses
        # (int-truncated, clipped at 0) must be identical
        assert a.boxes.shape == b.boxes.shape
        torch.testing.assert_close(a.boxes, b.boxes, rtol=0, atol=1e-3)
        assert torch.equal(a.boxes.clamp(min=0).long(), b.boxes.clamp(min=0).long())


def test_s3fd_tiny_and_downscaled_frames(s3fd_net):
    tiny = torch.full((1, 8, 12, 3), 90, dtype=torch.uint8)  # smaller than the network stride: padded, no crash
    assert len(detect(s3fd_net, tiny)) == 1
    frame = torch.from_numpy(np.load(GOLDEN)["frame_0"])[None]
    half = detect(s3fd_net, frame, scale=0.5)[0]
    assert half.boxes.ndim == 2 and half.boxes.shape[1] == 4


def test_nms_matches_numpy_reference():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 50, (40, 2))
    wh = rng.uniform(5, 30, (40, 2))
    boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
    scores = rng.uniform(0.5, 1, 40).astype(np.float32)
    # the reference's numpy nms (face_detection/detection/sfd/bbox.py), rewritten here as the oracle
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = scores.argsort()[::-1]
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(i)
        xx1, yy1 = np.maximum(x1[i], x1[order[1:]]), np.maximum(y1[i], y1[order[1:]])
        xx2, yy2 = np.minimum(x2[i], x2[order[1:]]), np.minimum(y2[i], y2[order[1:]])
        w, h = np.maximum(0.0, xx2 - xx1 + 1), np.maximum(0.0, yy2 - yy1 + 1)
        ovr = w * h / (areas[i] + areas[order[1:]] - w * h)
        order = order[np.where(ovr <= 0.3)[0] + 1]
    ours = nms_keep(torch.from_numpy(boxes), torch.from_numpy(scores)).tolist()
    assert ours == [int(k) for k in keep]
    assert 1 < len(ours) < 40


def test_wrong_checkpoint_in_s3fd_slot(tmp_path):
    from tiny import dwpose

    path = dwpose.write(tmp_path)
    target = tmp_path / "s3fd" / "s3fd-619a316812.pth"
    target.parent.mkdir()
    path.rename(target)
    from musetalk_core.models.s3fd import load_s3fd

    with pytest.raises(WeightFileError, match="S3FD"):
        load_s3fd(target)


def test_frames_far_above_the_pixel_budget_get_one_warning_naming_a_detector_scale(caplog, monkeypatch):
    """One 4K frame is one S3FD pass of 8.3 Mpx (several GB): a warning, once per size, says which detector_scale
    keeps a pass near the budget; 1080p (about the budget) and 4K at 0.5 say nothing."""
    import logging

    from musetalk_core.faces import locate as face_locate

    monkeypatch.setattr(face_locate, "_warned_sizes", set())
    with caplog.at_level(logging.WARNING, logger="musetalk_core.faces.locate"):
        for h, w, scale in ((1080, 1920, 1.0), (2160, 3840, 0.5), (2160, 3840, 1.0), (2160, 3840, 1.0),
                            (4320, 7680, 1.0)):
            face_locate.warn_large_frames(h, w, scale)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert "3840x2160" in messages[0] and "detector_scale 0.50" in messages[0] and "GB" in messages[0]
    assert "7680x4320" in messages[1] and "detector_scale 0.25" in messages[1]
