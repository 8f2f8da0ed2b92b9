"""prepare_faces / FaceDetectAndParse: crops, masks, no-face frames, smoothing, preview, bad input."""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest
import torch

from musetalk_core.faces import locate as face_locate
from musetalk_core.faces import prepare as faces_mod
from musetalk_core.faces.smoothing import smooth_boxes
from musetalk_core.faces import parsing
from musetalk_core.errors import InputError
from musetalk_core.io.frames import frames_fingerprint
from musetalk_core.hooks import RunHooks
from musetalk_core.weights.loading import load_models

H, W = 120, 100


def synthetic_video(n=7, seed=3):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W]
    frames = np.empty((n, H, W, 3), np.uint8)
    for i in range(n):
        img = np.stack([(xx * 2 + i) % 256, (yy * 2) % 256, np.full_like(xx, 80)], -1).astype(np.uint8)
        cv2.ellipse(img, (50 + i % 3, 60), (28, 36), 0, 0, 360, (210, 170, 140), -1)
        cv2.ellipse(img, (50, 80), (12, 4), 0, 0, 360, (150, 40, 50), -1)
        frames[i] = np.clip(img.astype(int) + rng.integers(-8, 9, img.shape), 0, 255)
    return frames


# per frame: a box or None (no face); frame 5 touches the right and bottom edges (x2 > W, y2 > H)
BOXES = [(22, 24, 78, 100), (23, 25, 79, 101), None, None, (21, 24, 77, 99), (60, 70, 110, 130), (22, 26, 78, 102)]


def fake_locations(n, boxes):
    has = torch.tensor([b is not None for b in boxes])
    bx = torch.tensor([b if b is not None else (0, 0, 0, 0) for b in boxes], dtype=torch.int64)
    lm = torch.full((n, 68, 2), -1, dtype=torch.int64)
    for i, b in enumerate(boxes):
        if b is not None:
            lm[i, :, 0] = torch.linspace(b[0], b[2], 68).long()
            lm[i, :, 1] = torch.linspace(b[1] + 20, b[3], 68).long()
    rm = [3] * int(has.sum())
    return face_locate.FaceLocations((H, W), has, bx, lm, torch.zeros(n, 68), bx.clone(), torch.zeros(n, dtype=bool),
                                     rm, rm, 0, {"landmark_backend": "fake"})


@pytest.fixture(scope="module")
def parser_models(tiny_models_factory):
    folder = tiny_models_factory("v15", ["face_parser"])
    return load_models([folder], "v15", precision="fp32", device="cpu", networks=["face_parser"])


@pytest.fixture
def fake_locate(monkeypatch):
    calls = {}

    def install(boxes):
        def locate(models, frames_u8, **kw):
            calls.update(kw, frames=frames_u8)
            return fake_locations(int(frames_u8.shape[0]), boxes)

        monkeypatch.setattr(face_locate, "locate_faces", locate)
        return calls

    return install


def reference_crop(frame_rgb, box):
    x1, y1, x2, y2 = box
    bgr = np.ascontiguousarray(frame_rgb[:, :, ::-1])
    return cv2.resize(bgr[y1:y2, x1:x2], (256, 256), interpolation=cv2.INTER_LANCZOS4)[:, :, ::-1]


def test_prepare_faces_keeps_every_frame(parser_models, fake_locate):
    frames = synthetic_video()
    calls = fake_locate(BOXES)
    steps = []
    hooks = RunHooks(advance=steps.append)
    images = torch.from_numpy(frames).float() / 255
    faces, preview, text = faces_mod.prepare_faces(parser_models, images, batch_size=3, hooks=hooks,
                                                   left_cheek_width=80, right_cheek_width=100)
    n = len(BOXES)
    assert faces.num_frames == n and faces.frame_size == (H, W)
    assert faces.has_face.tolist() == [b is not None for b in BOXES]
    assert calls["version"] == "v15" and calls["extra_margin"] == 10 and calls["batch_size"] == 3
    assert sum(steps) == n  # the parse stage (locate_faces, faked here, reports the other N)
    assert faces.frames_fingerprint == frames_fingerprint(torch.from_numpy(frames))
    assert faces.settings["parsing_mode"] == "jaw"
    assert "Manually adjust range" in text and faces.bbox_range == text
    assert preview.shape == (n, H, W, 3) and preview.dtype == torch.uint8
    for i, box in enumerate(BOXES):
        if box is None:
            assert faces.masks[i] is None
            assert not faces.crops[i].any() and not faces.boxes[i].any()
            assert torch.equal(preview[i], torch.from_numpy(frames[i]))
            continue
        assert faces.boxes[i].tolist() == list(box)
        # crops: identical bytes to cv2 LANCZOS4 on the BGR frame (x2/y2 beyond the frame clipped by slicing)
        assert np.array_equal(faces.crops[i].numpy(), reference_crop(frames[i], box))
        cbox, s = parsing.crop_box(box)
        assert faces.crop_boxes[i].tolist() == cbox
        assert faces.masks[i].dtype == torch.uint8 and faces.masks[i].shape == (2 * s, 2 * s)
        assert faces.masks[i].any() and not faces.masks[i].is_inference() and not faces.crops.is_inference()
        if i in (0, 5):  # the masks are the parsing module's (golden-tested) material; edge case 5 included
            _, masks = parsing.face_masks(parser_models.network("face_parser"), [frames[i]], [list(box)], "jaw",
                                          80, 100)
            assert np.array_equal(faces.masks[i].numpy(), masks[0])
        assert not torch.equal(preview[i], torch.from_numpy(frames[i]))


def test_raw_mode_for_v1_and_explicit(parser_models, fake_locate):
    frames = synthetic_video(2)
    fake_locate(BOXES[:2])
    faces, _, _ = faces_mod.prepare_faces(parser_models, torch.from_numpy(frames), parsing_mode="raw")
    net = parser_models.network("face_parser")
    _, masks = parsing.face_masks(net, list(frames), [list(b) for b in BOXES[:2]], "raw")
    assert all(np.array_equal(a.numpy(), b) for a, b in zip(faces.masks, masks))
    assert faces.settings["parsing_mode"] == "raw"


def test_no_face_anywhere_passes_through(parser_models, fake_locate, caplog):
    frames = synthetic_video(3)
    fake_locate([None, None, None])
    with caplog.at_level(logging.WARNING):
        faces, preview, text = faces_mod.prepare_faces(parser_models, torch.from_numpy(frames))
    assert "no face was found in any of the 3 frames" in caplog.text
    assert faces.num_frames == 3 and not faces.has_face.any() and faces.masks == (None, None, None)
    assert torch.equal(preview, torch.from_numpy(frames))
    assert isinstance(text, str)


def test_box_outside_frame_is_marked_no_face(parser_models, fake_locate, caplog):
    frames = synthetic_video(2)
    fake_locate([(120, 10, 150, 60), BOXES[0]])  # starts right of the frame: nothing to crop
    with caplog.at_level(logging.WARNING):
        faces, _, _ = faces_mod.prepare_faces(parser_models, torch.from_numpy(frames))
    assert faces.has_face.tolist() == [False, True] and faces.masks[0] is None and not faces.boxes[0].any()
    assert "outside the frame" in caplog.text


def test_smooth_boxes():
    has = torch.tensor([True] * 5 + [False] + [True] * 4)
    boxes = torch.tensor([[10, 10, 50, 60], [14, 9, 54, 61], [9, 12, 49, 58], [13, 10, 53, 62], [10, 11, 50, 60],
                          [0, 0, 0, 0], [100, 100, 140, 150], [100, 100, 140, 150], [100, 100, 140, 150],
                          [100, 100, 140, 150]])
    assert torch.equal(smooth_boxes(boxes, has, 0.0), boxes)
    out = smooth_boxes(boxes, has, 0.5)
    assert out.dtype == torch.int64
    assert not out[5].any()  # no-face frames stay zero
    assert torch.equal(out[6:], boxes[6:])  # the next run is not pulled toward the previous one
    assert out[:5, 0].float().std() < boxes[:5, 0].float().std() / 2  # jitter reduced
    assert (out[:5, 2] > out[:5, 0]).all()


@pytest.mark.parametrize("n", [1, 3, 7, 30])
def test_smoothing_neighbours_of_a_short_video(n):
    """The frames a smoothed box reads keep the video's length when the window (2r + 1) is longer than the video
    (numpy's convolve 'same' gave the window's length: a 7-frame video with box_smoothing 0.4 and short audio
    asked the decoder for frames 7 and 8)."""
    from musetalk_core.faces.material import dilate_frames, smoothing_radius

    radius = smoothing_radius(0.4)
    assert 2 * radius + 1 > 7
    wanted = np.zeros(n, dtype=bool)
    wanted[0] = True
    got = dilate_frames(wanted, radius)
    assert got.shape == (n,) and got.tolist() == [i <= radius for i in range(n)]
    assert dilate_frames(np.ones(n, dtype=bool), radius).all() and not dilate_frames(np.zeros(n, bool), 3).any()


def test_smoothing_applies_to_crops(parser_models, fake_locate):
    frames = synthetic_video(5)
    jitter = [(22, 24, 78, 100), (27, 20, 83, 96), (20, 26, 76, 102), (26, 22, 82, 98), (22, 24, 78, 100)]
    fake_locate(jitter)
    faces, _, _ = faces_mod.prepare_faces(parser_models, torch.from_numpy(frames), box_smoothing=1.0)
    smoothed = smooth_boxes(torch.tensor(jitter), torch.ones(5, dtype=bool), 1.0)
    assert torch.equal(faces.boxes, smoothed) and not torch.equal(faces.boxes, torch.tensor(jitter))
    assert np.array_equal(faces.crops[1].numpy(), reference_crop(frames[1], smoothed[1].tolist()))


@pytest.mark.parametrize("kwargs, match", [
    (dict(parsing_mode="lips"), "parsing_mode"),
    (dict(left_cheek_width=300), "left_cheek_width"),
    (dict(box_smoothing=1.5), "box_smoothing"),
    (dict(batch_size=0), "batch_size"),
])
def test_bad_settings(parser_models, fake_locate, kwargs, match):
    fake_locate([None])
    with pytest.raises(InputError, match=match):
        faces_mod.prepare_faces(parser_models, torch.zeros(1, 8, 8, 3), **kwargs)


def test_bad_images(parser_models, fake_locate):
    fake_locate([None])
    with pytest.raises(InputError, match="empty batch"):
        faces_mod.prepare_faces(parser_models, torch.zeros(0, 8, 8, 3))
    with pytest.raises(InputError, match="different sizes"):
        faces_mod.prepare_faces(parser_models, [torch.zeros(1, 8, 8, 3), torch.zeros(1, 9, 8, 3)])


@pytest.fixture(scope="module")
def full_models(tiny_models_factory):
    folder = tiny_models_factory("v15", ["s3fd", "landmarks", "face_parser"])
    return load_models([folder], "v15", precision="fp32", device="cpu", networks=["s3fd", "landmarks", "face_parser"])


def test_node_on_tiny_real_format_models(pack, full_models):
    node_cls = pack.NODE_CLASS_MAPPINGS["FaceDetectAndParse"]
    names = list(node_cls.INPUT_TYPES()["required"])
    assert list(node_cls.INPUT_TYPES()["optional"]) == ["images", "video", "speaker_audio", "speaker_selection"]  # images or video
    assert names == ["musetalk_models", "bbox_shift", "extra_margin", "parsing_mode", "left_cheek_width",
                     "right_cheek_width", "face_selection", "landmark_region", "box_smoothing", "detector_scale",
                     "batch_size"]
    frames = synthetic_video(4)
    images = torch.from_numpy(frames).float() / 255
    faces, preview, text = node_cls().prepare(full_models, images, 0, 10, "auto", 90, 90, "highest_score",
                                              "full_frame", 0.0, 1.0, 3)
    assert preview.shape == images.shape and preview.dtype == torch.float32
    assert faces.num_frames == 4 and isinstance(text, str)
    # boxes are locate_faces' own (no smoothing) and crops are cv2 LANCZOS4 of exactly those boxes
    loc = face_locate.locate_faces(full_models, torch.from_numpy(frames), batch_size=3)
    assert torch.equal(faces.has_face, loc.has_face) and torch.equal(faces.boxes, loc.boxes)
    for i in range(4):
        if faces.has_face[i]:
            assert np.array_equal(faces.crops[i].numpy(), reference_crop(frames[i], loc.boxes[i].tolist()))
            assert faces.masks[i].shape[0] == faces.crop_boxes[i, 2] - faces.crop_boxes[i, 0]
        else:
            assert faces.masks[i] is None and torch.equal(preview[i], images[i])


def test_node_face_less_stretch(pack, parser_models, fake_locate):
    node_cls = pack.NODE_CLASS_MAPPINGS["FaceDetectAndParse"]
    frames = synthetic_video(5)
    fake_locate([None, BOXES[0], None, None, None])
    images = torch.from_numpy(frames).float() / 255
    faces, preview, _ = node_cls().prepare(parser_models, images, 0, 10, "auto", 90, 90, "highest_score",
                                           "full_frame", 0.0, 1.0, 2)
    assert faces.num_frames == 5 and preview.shape == images.shape
    assert faces.has_face.tolist() == [False, True, False, False, False]
    assert torch.equal(preview[2], images[2]) and not torch.equal(preview[1], images[1])
