"""Videos with a display matrix (every portrait phone video): frames are read as displayed, faces are found on
upright frames, and the output (written without a matrix) displays like the source, on the command line and on the
graph's VIDEO path."""

from __future__ import annotations

import struct
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from media import face_frames, tone, write_video, write_wav
from musetalk_core import cli
from musetalk_core.io import video_read, video_write
from musetalk_core.io.orientation import Orientation, from_display_matrix
from musetalk_core.io.sources import VideoFileSource
from nodes.video_types import FileVideo
from test_bad_input import faceless_models_dir  # noqa: F401 - the fixture: a detector that never finds a face

ONE = 1 << 16
# every right-angle display matrix (a, b, c, d of QuickTime's [a b u; c d v; x y w], 16.16 fixed point)
MATRICES = [(a, b, c, d) for a, b, c, d in [(1, 0, 0, 1), (0, 1, -1, 0), (-1, 0, 0, -1), (0, -1, 1, 0),
                                            (-1, 0, 0, 1), (1, 0, 0, -1), (0, 1, 1, 0), (0, -1, -1, 0)]]


def displayed_by_the_matrix(img: np.ndarray, a: int, b: int, c: int, d: int) -> np.ndarray:
    """The QuickTime / ISO 14496-12 definition, pixel by pixel: the stored pixel centred at (x, y) is shown at
    (x', y') = (a x + c y + tx, b x + d y + ty), translated so that the picture starts at (0, 0)."""
    h, w = img.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w]
    xc, yc = xs + 0.5, ys + 0.5
    xd, yd = a * xc + c * yc, b * xc + d * yc
    xd, yd = xd - xd.min() + 0.5, yd - yd.min() + 0.5  # centres of the displayed pixels
    out_w, out_h = int(round(xd.max() + 0.5)), int(round(yd.max() + 0.5))
    out = np.zeros((out_h, out_w) + img.shape[2:], img.dtype)
    out[np.floor(yd).astype(int), np.floor(xd).astype(int)] = img
    return out


@pytest.mark.parametrize("abcd", MATRICES)
def test_display_matrix_turns_as_the_matrix_says(abcd):
    a, b, c, d = abcd
    img = np.arange(5 * 3 * 2, dtype=np.int32).reshape(5, 3, 2)  # every pixel different, not square
    matrix = [a * ONE, b * ONE, 0, c * ONE, d * ONE, 0, 0, 0, 1 << 30]
    orientation = from_display_matrix(matrix)
    got = orientation.apply(img)
    assert np.array_equal(got, displayed_by_the_matrix(img, a, b, c, d))
    assert orientation.size(5, 3) == got.shape[:2]
    assert orientation.identity == (abcd == (1, 0, 0, 1))


def tkhd_matrix(path: Path):
    """(a, b, c, d) of the first track header's matrix in an mp4 (version 0 tkhd)."""
    data = path.read_bytes()
    at = data.index(b"tkhd") + 4
    assert data[at] == 0, "a version-0 tkhd"
    m = struct.unpack(">9i", data[at + 40:at + 76])
    return m[0] // ONE, m[1] // ONE, m[3] // ONE, m[4] // ONE


def clockwise(frames: np.ndarray, quarters: int) -> np.ndarray:
    return np.rot90(frames, -quarters, axes=(1, 2))


# PyAV's set_display_rotation(degrees counter-clockwise) -> the clockwise quarter turns a player shows; -90 is what
# a phone writes for portrait video (the mp4 "rotate=90" tag: matrix (0, 1, -1, 0))
ROTATIONS = {-90: 1, 180: 2, 90: 3}


@pytest.mark.parametrize("rotation", sorted(ROTATIONS))
def test_rotated_file_is_read_as_displayed(tmp_path, rotation):
    stored = face_frames(5, 48, 32)
    plain = write_video(tmp_path / "plain.mp4", stored, Fraction(25))
    turned = write_video(tmp_path / "turned.mp4", stored, Fraction(25), rotation=rotation)
    quarters = ROTATIONS[rotation]
    a, b, c, d = tkhd_matrix(turned)
    if rotation == -90:
        assert (a, b, c, d) == (0, 1, -1, 0)  # a phone's portrait matrix
    shown = clockwise(np.arange(6).reshape(1, 2, 3, 1), quarters)[0]
    assert np.array_equal(shown, displayed_by_the_matrix(np.arange(6).reshape(2, 3, 1), a, b, c, d))

    decoded = VideoFileSource(plain).read(range(5)).numpy()  # the stored frames, as the decoder hands them out
    expected = np.ascontiguousarray(clockwise(decoded, quarters))
    source = VideoFileSource(turned)
    try:
        assert source.frame_size == expected.shape[1:3]
        assert np.array_equal(source.read([4, 0, 2]).numpy(), expected[[4, 0, 2]])  # seeks too
    finally:
        source.close()
    assert np.array_equal(video_read.read_video(turned, with_audio=False).frames.numpy(), expected)
    assert FileVideo(turned).get_dimensions() == (expected.shape[2], expected.shape[1])


def raw_frames(path: Path):
    """Decoded frames as stored, and whether any carries a display matrix (plain PyAV, no turning)."""
    import av

    frames, matrices = [], 0
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24"))
            matrices += frame.side_data.get("DISPLAYMATRIX") is not None
    return np.stack(frames), matrices


@pytest.mark.parametrize("rotation", sorted(ROTATIONS))
def test_cli_output_displays_like_the_source(rotation, faceless_models_dir, tmp_path, capsys):  # noqa: F811
    stored = face_frames(4, 64, 48)
    video = write_video(tmp_path / "phone.mp4", stored, Fraction(25), rotation=rotation)
    audio = write_wav(tmp_path / "speech.wav", tone(0.16, 16000), 16000)  # 4 frames: each source frame once
    out = tmp_path / "out.mp4"
    code = cli.main(["lipsync", "--video", str(video), "--audio", str(audio), "--output", str(out),
                     "--models-dir", str(faceless_models_dir), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    written, matrices = raw_frames(out)
    assert matrices == 0  # upright pixels, no matrix to apply
    upright = clockwise(raw_frames(video)[0], ROTATIONS[rotation])
    assert written.shape == upright.shape
    assert np.abs(written.astype(float) - upright).mean() < 4.0  # two lossy encodes of the same picture


def test_video_path_finds_faces_on_upright_frames(pack, tiny_models_factory, tmp_path, monkeypatch):
    """A portrait phone video (stored sideways, matrix "rotate 90") through the graph's VIDEO path equals the IMAGE
    path on its upright frames, frame for frame: the faces were found on upright frames and the clip is upright."""
    from musetalk_core.blend.blender import to_uint8
    from musetalk_core.weights.loading import load_models
    from test_faces import synthetic_video

    nodes = pack.NODE_CLASS_MAPPINGS
    models = load_models([tiny_models_factory("v15")], "v15", precision="fp32", device="cpu")
    upright_content = synthetic_video(5)
    sideways = np.ascontiguousarray(np.rot90(upright_content, 1, axes=(1, 2)))  # what the phone's sensor stores
    path = write_video(tmp_path / "phone.mp4", sideways, Fraction(25), rotation=-90)
    upright = torch.from_numpy(np.ascontiguousarray(clockwise(raw_frames(path)[0], 1)))
    audio = {"waveform": torch.from_numpy(tone(0.2, 16000))[None], "sample_rate": 16000}
    (features,) = nodes["WhisperAudioEncode"]().encode(models, audio, 25.0, 2, 2, "reference", -45.0)[:1]
    face_args = dict(bbox_shift=0, extra_margin=10, parsing_mode="auto", left_cheek_width=90, right_cheek_width=90,
                     face_selection="highest_score", landmark_region="full_frame", box_smoothing=0.0,
                     detector_scale=1.0, batch_size=4)

    encoded = []
    real_write = video_write.VideoWriter.write
    monkeypatch.setattr(video_write.VideoWriter, "write",
                        lambda self, frames, advance=None: (encoded.append(frames.clone()),
                                                            real_write(self, frames, advance))[1])

    def run(**source):
        faces, _, _ = nodes["FaceDetectAndParse"]().prepare(models, **source, **face_args)
        (latents,) = nodes["VAEEncodeMasked"]().encode(models, faces, "sample", 0, 4)
        generated, _ = nodes["MuseTalkUNetInpaint"]().generate(models, latents, features, "ping_pong", 0, 4)
        return faces, nodes["BlendAndAssemble"]().blend(faces=faces, generated=generated, **source)

    ref_faces, (ref_images, *_) = run(images=upright.float() / 255.0)
    faces, (_, _, _, count, out_video) = run(video=FileVideo(path))
    assert bool(ref_faces.has_face.any())
    assert torch.equal(faces.boxes, ref_faces.boxes) and torch.equal(faces.has_face, ref_faces.has_face)
    assert tuple(faces.frame_size) == tuple(upright.shape[1:3])
    assert torch.equal(torch.cat(encoded), to_uint8(ref_images))  # the frames handed to the encoder
    written, matrices = raw_frames(Path(out_video.get_stream_source()))
    assert matrices == 0 and written.shape == tuple(ref_images.shape) and count == ref_images.shape[0]


def test_identity_is_untouched():
    img = np.zeros((3, 2, 3), np.uint8)
    assert Orientation().apply(img) is img and Orientation().identity
