"""Boxes, landmarks and 256x256 crops of a synthetic video vs the reference pipeline (golden).

tools/golden/record_pipeline_boxes.py ran the reference's preprocessing.get_landmark_and_bbox (its own S3FD code in
face_detection, DWPose through mmpose init_model with upstream's config file) plus scripts/inference.py's v1.5
extra_margin step and its LANCZOS4 crop, with the SAME tiny weights this test writes (write_golden_models). Here
our prepare_faces (plain-torch S3FD + DWPose) runs on the stored frames and must give identical boxes, no-face
pattern, range report, face landmarks and byte-identical crops.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

GOLDEN = Path(__file__).parent / "golden" / "pipeline_boxes"
NETWORKS = ["s3fd", "landmarks", "face_parser"]
WINDOW = (0.15, 0.85)  # SimCC bins a keypoint may land in (fraction of the 288x384 DWPose input, each axis)


def window_simcc(state: dict, window=WINDOW) -> dict:
    """Keep DWPose's 1-D classifiers (head.cls_x / head.cls_y) inside the central part of the input window.

    Random DWPose weights spread the 68 face points over the whole input window, which is 25% wider than the frame,
    so a face point almost always lands left of x=0 and the reference always falls back to the S3FD box (bbox_shift
    would then never matter). Here rows outside the window are zeroed (logit 0) and the rows inside come in
    (w, -w) pairs (the larger of the pair is >= 0), so every argmax lands inside the window while still following
    the image. Same keys and shapes as the published checkpoint.
    """
    state = dict(state)
    for key in ("head.cls_x.weight", "head.cls_y.weight"):
        w = state[key].clone()
        n = w.shape[0]
        lo, hi = int(n * window[0]), int(n * window[1])
        lo += lo % 2
        w[:lo] = 0
        w[hi:] = 0
        for i in range(lo, hi - 1, 2):
            w[i + 1] = -w[i]
        state[key] = w
    return state


def write_golden_models(folder) -> Path:
    """The tiny models both sides use: seeded S3FD (tests/tiny/s3fd.py), calibrated tiny DWPose with windowed
    SimCC classifiers, seeded BiSeNet (only our side: the crops do not depend on it)."""
    import tiny.bisenet
    import tiny.dwpose
    import tiny.s3fd

    folder = Path(folder)
    tiny.s3fd.write(folder)
    tiny.bisenet.write(folder)
    path = tiny.dwpose.write(folder, dwpose_init="calibrated")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    ckpt["state_dict"] = window_simcc(ckpt["state_dict"])
    torch.save(ckpt, path)
    return folder


def crop_hash(crop_rgb: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(crop_rgb, dtype=np.uint8).tobytes()).hexdigest()


@pytest.fixture(scope="module")
def golden():
    meta = json.loads((GOLDEN / "reference.json").read_text())
    data = np.load(GOLDEN / "frames_crops.npz")
    return meta, data


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from musetalk_core.weights.loading import load_models

    folder = write_golden_models(tmp_path_factory.mktemp("pipeline_boxes_models"))
    v15 = load_models([folder], "v15", precision="fp32", device="cpu", networks=NETWORKS)
    return {"v15": v15, "v1": dataclasses.replace(v15, version="v1")}  # same networks, v1 box rules


@pytest.fixture
def no_parsing(monkeypatch):
    """Blend-mask parsing is not part of this comparison (tests/test_parsing.py and test_faces.py cover it) and is
    the slowest step on CPU: a stand-in returns the expanded crop box and an empty mask per face."""
    from musetalk_core.faces import parsing

    def face_masks(parser, frames, boxes, mode, left, right, device=None, **_):
        cboxes = [parsing.crop_box(b)[0] for b in boxes]
        return cboxes, [np.zeros((c[3] - c[1], c[2] - c[0]), np.uint8) for c in cboxes]

    monkeypatch.setattr(parsing, "face_masks", face_masks)


def test_golden_is_a_real_case(golden):
    meta, data = golden
    frames = data["frames"]
    assert frames.dtype == np.uint8 and frames.ndim == 4 and len(frames) == len(meta["runs"][0]["coords"])
    for run in meta["runs"]:
        face = [c != [0, 0, 0, 0] for c in run["coords"]]
        assert 0 < sum(face) < len(face)  # faces and at least one frame without one
    # bbox_shift changes boxes of frames that use the landmark box (not only the S3FD fallback)
    by_shift = {r["bbox_shift"]: r["coords"] for r in meta["runs"] if r["version"] == "v1"}
    assert len(by_shift) == 2 and by_shift[0] != by_shift[max(by_shift, key=abs)]
    # the face landmarks differ from frame to frame (the tiny DWPose follows the image)
    lms = [np.asarray(lm) for lm in meta["landmarks"] if lm is not None]
    assert len({lm.tobytes() for lm in lms}) == len(lms) >= 3


# Logits of the face points move by up to ~2e-4 with the CPU kernels, thread count and batch size (measured);
# the SimCC argmax is exact only where the two best bins are further apart than that.
MIN_MARGIN = 1e-3


def test_face_points_are_clear_of_ties(models, golden):
    """The comparison below is exact because none of the 68 face points is a near-tie: in every face frame the two
    best SimCC bins (x and y) of each point are at least MIN_MARGIN apart (5x what rounding moves them). One frame
    per call, as mmpose ran it for the golden (our one-frame logits equal mmpose's bit for bit:
    test_boxes_landmarks.py). A re-recording whose frames have a tie fails here, not as a flaky mismatch below."""
    from musetalk_core.models.dwpose import FACE_SLICE, simcc_logits, warp_inputs

    meta, data = golden
    net = models["v15"].network("landmarks")
    face = [i for i, lm in enumerate(meta["landmarks"]) if lm is not None]
    inputs, _, _ = warp_inputs(data["frames"][face], None)  # landmark_region="full_frame", as the reference
    margins = []
    for i in range(len(face)):
        for logits in simcc_logits(net, inputs[i:i + 1]):
            top2 = torch.topk(logits[0, FACE_SLICE], 2, dim=-1).values
            margins.append(float((top2[:, 0] - top2[:, 1]).min()))
    assert min(margins) >= MIN_MARGIN, margins


def test_boxes_and_crops_match_reference(models, golden, no_parsing):
    from musetalk_core.faces.prepare import prepare_faces

    meta, data = golden
    frames = torch.from_numpy(data["frames"])
    h = frames.shape[1]
    stats = {"runs": 0, "face_frames": 0, "no_face_frames": 0, "crops": 0, "full_crops": 0, "landmark_boxes": 0}
    for run in meta["runs"]:
        version, shift = run["version"], run["bbox_shift"]
        faces, _, bbox_range = prepare_faces(models[version], frames, bbox_shift=shift, extra_margin=10)
        label = f"{version} bbox_shift={shift}"
        ref_face = [c != [0, 0, 0, 0] for c in run["coords"]]
        assert faces.has_face.tolist() == ref_face, label
        for i, coords in enumerate(run["coords"]):
            if not ref_face[i]:
                assert faces.boxes[i].tolist() == [0, 0, 0, 0]
                stats["no_face_frames"] += 1
                continue
            x1, y1, x2, y2 = coords
            if version == "v15":  # scripts/inference.py: y2 + extra_margin, clipped at the frame height
                y2 = min(y2 + 10, h)
            assert faces.boxes[i].tolist() == [x1, y1, x2, y2], f"{label} frame {i}"
            assert crop_hash(faces.crops[i].numpy()) == run["crop_sha256"][i], f"{label} frame {i}: crop differs"
            stats["face_frames"] += 1
            stats["crops"] += 1
            stats["landmark_boxes"] += int(run["fallback"][i] is False)
        key = f"crops_{version}_shift{shift}"
        if key in data.files:
            idx = [i for i, f in enumerate(ref_face) if f]
            assert np.array_equal(faces.crops[idx].numpy(), data[key]), label
            stats["full_crops"] += len(idx)
        assert bbox_range == run["range_text"], label
        if run["version"] == "v1" and shift == 0:  # 68 face points (before the bbox_shift mutation)
            for i, lm in enumerate(meta["landmarks"]):
                if lm is not None and ref_face[i]:
                    assert faces.landmarks[i].tolist() == lm, f"frame {i}: landmarks differ from mmpose DWPose"
        stats["runs"] += 1
    assert stats["runs"] == 4 and stats["landmark_boxes"] >= 4 and stats["no_face_frames"] >= 4
    print(f"pipeline boxes vs reference: {stats}")
