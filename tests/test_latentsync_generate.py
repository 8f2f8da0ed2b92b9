"""The LatentSync generator as a whole: frame pairing, windows, the full generation against the reference's golden,
face-less frames, and the affine restore inside BlendAndAssemble."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import tiny_latentsync as tl
from musetalk_core.errors import InputError
from musetalk_core.frame_mapping import source_indices
from musetalk_core.hooks import RunHooks
from musetalk_core.generators.latentsync import align
from musetalk_core.generators.latentsync import audio as ls_audio
from musetalk_core.generators.latentsync.config import tiny_config
from musetalk_core.generators.latentsync.generate import (SamplingSettings, count_steps, face_windows, generate_windows,
                                               to_uint8_faces)
from musetalk_core.generators.latentsync.landmarks import dwpose_points
from musetalk_core.generators.latentsync.video_align import align_frames, frames_to_align
from musetalk_core.generators.latentsync.weights import load_unet3d

GOLDEN = Path(__file__).parent / "golden" / "latentsync" / "latentsync.npz"
LOOP_ATOL = 5e-4  # as test_latentsync: 3 DDIM steps on the tiny seeded UNet3D
DRAW_ATOL = 2e-4  # VAE posterior draws (torch.randn's last bits depend on the CPU kernel)


@pytest.fixture(scope="module")
def golden():
    return dict(np.load(GOLDEN))


@pytest.fixture(scope="module")
def tiny_unet(tmp_path_factory):
    return load_unet3d(tl.write_checkpoint(tmp_path_factory.mktemp("ls") / "latentsync_unet.pt"), tiny_config())


@pytest.fixture(scope="module")
def tiny_vae():
    from tiny.unet_vae import seeded_vae

    return seeded_vae().eval()


# --- pairing and windows ---------------------------------------------------------------------------------------

def test_ping_pong_pairs_output_and_source_frames_as_reference(golden):
    """upstream's loop_video (frames, crops and matrices reversed together on odd loops) is our ping_pong."""
    t, n = len(golden["source_index"]), tl.SAMPLER["frames"]
    np.testing.assert_array_equal(source_indices(t, n, "ping_pong").numpy(), golden["source_index"])


def test_windows_are_upstreams_with_every_face_and_cut_at_gaps():
    assert face_windows(np.ones(20, bool), 16) == [(0, 16), (16, 20)]  # upstream: ceil(T / 16) windows in order
    flags = np.ones(40, bool)
    flags[[5, 6, 30]] = False
    assert face_windows(flags, 16) == [(0, 5), (7, 23), (23, 30), (31, 40)]
    assert face_windows(np.zeros(4, bool), 16) == []
    assert count_steps(torch.from_numpy(flags), SamplingSettings(steps=3, window=16)) == 12


def test_settings_are_checked():
    with pytest.raises(InputError, match="window_length"):
        SamplingSettings(window=25).check()
    with pytest.raises(InputError, match="inference_steps"):
        SamplingSettings(steps=0).check()
    with pytest.raises(InputError, match="scheduler.*ddim"):
        SamplingSettings(scheduler="dpm").check()


# --- the whole generator against the reference ------------------------------------------------------------------

def test_generator_matches_reference_window_by_window(golden, tiny_unet, tiny_vae):
    """LipsyncPipeline.__call__ on the golden's inputs: 10 aligned faces ping-ponged over 20 audio windows, 2 windows,
    3 DDIM steps, guidance 1.5, seed 1247: our generator draws, denoises, decodes and pastes as the reference."""
    s = tl.SAMPLER
    crops = tl.sampler_faces().permute(0, 2, 3, 1)  # (10, 96, 96, 3) uint8, the aligned crops
    source = source_indices(len(golden["source_index"]), s["frames"])
    features = tl.sampler_features()
    audio = ls_audio.audio_windows(features, ls_audio.reference_window_count(len(features)))
    mask = torch.from_numpy(golden["mask_image"])
    seen, finals, faces, exact, progress = [], {}, {}, {}, []

    def on_window(start, stop, latents, generated, unclamped):
        finals[start] = latents
        faces.update({start + k: generated[k] for k in range(stop - start)})
        exact.update({start + k: unclamped[k] for k in range(stop - start)})

    generate_windows(tiny_unet, tiny_vae, mask, lambda rows: crops[source[rows]], audio, torch.ones(20, dtype=bool),
                     SamplingSettings(s["steps"], s["guidance"], s["seed"], 16), device=torch.device("cpu"),
                     hooks=RunHooks(advance=progress.append),
                     on_step=lambda w, j, t, raw, lat: seen.append((w, j, t, raw, lat)), on_window=on_window)
    assert [t for _, _, t, _, _ in seen] == list(golden["timesteps"])
    for w, j, _, raw, lat in seen:
        np.testing.assert_allclose(raw.numpy(), golden[f"w{w}_s{j}_unet"], rtol=0, atol=LOOP_ATOL, err_msg=f"w{w}s{j}")
        np.testing.assert_allclose(lat.numpy(), golden[f"w{w}_s{j}_latents"], rtol=0, atol=LOOP_ATOL)
    assert sorted(finals) == [0, 16] and sum(progress) == 2 * s["steps"]
    # the decoded, mouth-pasted faces (float16 in the golden) -> the uint8 faces the restore reads
    for k, i in enumerate(golden["pixel_frames"]):
        want = to_uint8_faces(torch.from_numpy(golden["restored"][k:k + 1].astype(np.float32)))[0]
        diff = (faces[int(i)].int() - want.int()).abs()
        assert diff.max() <= 2 and (diff > 0).float().mean() < 0.05, (i, diff.max())
        # the faces the restore reads: the same values, unclamped, float32 (the decoder's dtype here)
        assert exact[int(i)].dtype == torch.float32
        np.testing.assert_allclose(exact[int(i)].permute(2, 0, 1).numpy(), golden["restored"][k].astype(np.float32),
                                   rtol=0, atol=2e-2)


class _VAESpy(torch.nn.Module):
    """The VAE as the generator sees it, recording every encoder input."""

    def __init__(self, vae):
        super().__init__()
        self.vae, self.inputs = vae, []

    @property
    def dtype(self):
        return self.vae.dtype

    def encode(self, x):
        self.inputs.append(x)
        return self.vae.encode(x)

    def decode(self, z):
        return self.vae.decode(z)


def test_vae_gets_contiguous_pixels_as_reference(golden, tiny_unet, tiny_vae):
    """Upstream stacks per-frame tensors, so its VAE input is contiguous; a channels-last-strided one (the permuted
    (f, H, W, 3) crops) takes other CPU convolution kernels: the real VAEs' latents then move by 0.026 (1.5) and
    0.44 (1.6), the faces by 1-2 levels. Both encoder inputs must be contiguous and equal the reference's pixels."""
    s = tl.SAMPLER
    crops = tl.sampler_faces().permute(0, 2, 3, 1).contiguous()  # (10, 96, 96, 3) as the aligned crops are stored
    mask = torch.from_numpy(golden["mask_image"])
    spy = _VAESpy(tiny_vae)
    generate_windows(tiny_unet, spy, mask, lambda rows: crops[rows], torch.zeros(4, 50, 384),
                     torch.ones(4, dtype=bool), SamplingSettings(1, 1.0, s["seed"], 16), device=torch.device("cpu"))
    assert len(spy.inputs) == 2  # masked faces, then the whole faces
    pixels = (tl.sampler_faces()[:4].float() / 255.0 - 0.5) / 0.5  # ImageProcessor, contiguous (f, 3, H, W)
    for x, want in zip(spy.inputs, ((pixels.double() * mask.double()).float(), pixels)):
        assert x.is_contiguous(), x.stride()
        torch.testing.assert_close(x, want, rtol=0, atol=0)


# --- alignment driver -------------------------------------------------------------------------------------------

def _ibug_face(cx: float, cy: float, scale: float) -> np.ndarray:
    """68 landmarks: eyebrows and nose bridge placed like the mean face shape, the rest at the centre."""
    lmk = np.tile([cx, cy], (68, 1))
    brow_x = np.linspace(-0.35, -0.07, 5)
    lmk[17:22] = np.c_[cx + scale * brow_x, np.full(5, cy - 0.3 * scale)]
    lmk[22:27] = np.c_[cx - scale * brow_x[::-1], np.full(5, cy - 0.3 * scale)]
    lmk[27:31] = np.c_[np.full(4, cx), cy + scale * np.linspace(-0.2, 0.2, 4)]
    return lmk.astype(np.int64)


def test_dwpose_points_are_eyebrow_centres_and_nose_bridge():
    lmk = _ibug_face(100, 80, 100)
    points = dwpose_points(lmk)
    np.testing.assert_array_equal(points, np.round([lmk[17:22].mean(0), lmk[22:27].mean(0), lmk[27:31].mean(0)]))
    assert points[0, 0] < points[2, 0] < points[1, 0] and points[0, 1] < points[2, 1]  # left, right, below
    assert dwpose_points(np.full((68, 2), -1)) is None  # MUSETALK_FACES' "unknown" row
    assert dwpose_points(np.full((68, 2), 40)) is None  # one point: no similarity fits
    border = lmk - 90  # a face partly outside the frame still gives its points
    np.testing.assert_array_equal(dwpose_points(border), points - 90)


def test_alignment_driver_smooths_in_order_and_restarts_after_a_gap():
    """Frames aligned in source order with the smoothing state carried over; a face-less frame is marked (zeros)
    and the state restarts after it. Crops are the warped crops resized with cv2 LANCZOS4, as upstream."""
    import cv2

    inputs = tl.align_inputs()
    frames = np.concatenate([inputs["frames"], inputs["frames"][:2]])  # 5 frames
    p = inputs["points"]
    points = [p[0], None, p[2], p[1], p[0]]  # frame 1 has no face
    aligned = align_frames(lambda idx: frames[idx], 5, lambda i, f: points[i], 128, chunk=2)
    assert aligned.has_face.tolist() == [True, False, True, True, True]
    assert aligned.crops.shape == (5, 128, 128, 3) and not aligned.crops[1].any() and not aligned.matrices[1].any()
    expected = {}
    for run in ([0], [2, 3, 4]):  # one smoothing state per run of faces
        state = align.SmoothState()
        for i in run:
            expected[i] = align.align_face(frames[i], points[i], 128, state)
    for i, (crop, matrix) in expected.items():
        torch.testing.assert_close(aligned.matrices[i], matrix, rtol=0, atol=0)
        resized = cv2.resize(crop, (128, 128), interpolation=cv2.INTER_LANCZOS4)
        np.testing.assert_array_equal(aligned.crops[i].numpy(), resized)
    # the state really carries: frame 3 aligned alone would get another matrix
    alone = align.similarity(points[3], align.face_template(128)[0], align.SmoothState())
    assert not torch.allclose(aligned.matrices[3], alone)


def test_frames_to_align_follow_runs_and_the_last_used_frame():
    """A used frame needs its run of face frames up to it (the smoothing carries); nothing after the last used
    frame of a run; unknown faces (InsightFace) mean every frame up to the last used one."""
    has_face = np.array([1, 1, 1, 0, 1, 1, 1, 1, 0, 1], bool)
    wanted = np.array([0, 1, 0, 0, 0, 0, 1, 0, 0, 0], bool)
    assert frames_to_align(10, wanted, has_face) == [0, 1, 4, 5, 6]
    assert frames_to_align(10, wanted, None) == list(range(7))
    assert frames_to_align(10, None, has_face) == [0, 1, 2, 4, 5, 6, 7, 9]
    assert frames_to_align(10, np.zeros(10, bool), None) == []


def test_aligning_only_the_needed_frames_gives_the_same_crops():
    """A short audio on a longer video: only the frames the plan names are read, and the frames the output uses
    get exactly the crops and matrices of aligning every frame."""
    inputs = tl.align_inputs()
    frames = np.concatenate([inputs["frames"]] * 3)  # 9 frames
    p = inputs["points"]
    points = [p[0], p[1], p[2], None, p[2], p[1], p[0], p[1], p[2]]
    has_face = np.array([q is not None for q in points])
    wanted = np.zeros(9, bool)
    wanted[[1, 5]] = True
    read = []

    def reader(idx):
        read.extend(idx)
        return frames[idx]

    full = align_frames(lambda idx: frames[idx], 9, lambda i, f: points[i], 128, chunk=2)
    plan = frames_to_align(9, wanted, has_face)
    part = align_frames(reader, 9, lambda i, f: points[i], 128, chunk=2, frames=plan)
    assert read == plan == [0, 1, 4, 5]
    assert part.has_face.tolist() == [i in plan for i in range(9)]
    for i in (1, 5):  # frame 5 carries the state from frame 4, as in the full pass
        torch.testing.assert_close(part.matrices[i], full.matrices[i], rtol=0, atol=0)
        np.testing.assert_array_equal(part.crops[i].numpy(), full.crops[i].numpy())
    # skipping into the middle of a run restarts the smoothing: frame 5 alone differs from the full pass
    alone = align_frames(lambda idx: frames[idx], 9, lambda i, f: points[i], 128, frames=[5])
    assert not torch.equal(alone.matrices[5], full.matrices[5])


# --- the affine restore inside BlendAndAssemble -------------------------------------------------------------------

def test_blend_and_assemble_restores_through_the_inverse_affine_as_reference():
    """BlendAndAssemble with a LatentSync result whose restore has no float faces (the uint8 path, as for
    replacement faces): the golden's restore (align.npz, upstream's restore_img on a face within [-1, 1]) within one
    grey level; a face-less output frame passes through; the output has T frames in the source_index order."""
    from musetalk_core.blend.blender import blend_frames
    from musetalk_core.generators.latentsync.restore import AffineRestore
    from musetalk_core.types import MuseTalkFaces, MuseTalkGenerated

    golden = dict(np.load(Path(__file__).parent / "golden" / "latentsync" / "align.npz"))
    inputs, res = tl.align_inputs(), tl.ALIGN["resolution"]
    frames = torch.from_numpy(inputs["frames"])  # (3, 180, 240, 3)
    n, h, w = frames.shape[:3]
    faces = MuseTalkFaces(frame_size=(h, w), has_face=torch.tensor([True, True, False]),
                          boxes=torch.zeros((n, 4), dtype=torch.long), landmarks=torch.full((n, 68, 2), -1),
                          crop_boxes=torch.zeros((n, 4), dtype=torch.long), masks=(None,) * n,
                          crops=torch.zeros((n, 256, 256, 3), dtype=torch.uint8))
    face_u8 = to_uint8_faces(inputs["face"][None])  # the generated face as the generator hands it on
    source = torch.tensor([0, 1, 2, 1])
    generated = MuseTalkGenerated(faces=face_u8.expand(4, res, res, 3).clone(), source_index=source,
                                  has_face=torch.tensor([True, True, False, True]), fps=25.0,
                                  restore=AffineRestore(torch.from_numpy(golden["matrices"]), res))
    out, audio, fps, count = blend_frames(frames.float() / 255, faces, generated, chunk_size=3)
    out = (out * 255).round().to(torch.uint8).numpy()
    assert count == 4 and out.shape == (4, h, w, 3) and fps == 25.0
    np.testing.assert_array_equal(out[2], inputs["frames"][2])  # no face: the source frame
    for i, j in ((0, 0), (1, 1), (3, 1)):
        diff = np.abs(out[i].astype(int) - golden["restored"][j].astype(int))
        # measured: 1 level at most, on 3.9-4.1 % of the values (the uint8 rounding of the face before the warp)
        assert diff.max() <= 1 and (diff > 0).mean() < 0.06, (i, diff.max(), (diff > 0).mean())
    with pytest.raises(InputError, match="128x128"):  # replacement faces must be the generator's size
        blend_frames(frames.float() / 255, faces, generated, replacement_faces=torch.zeros(4, 256, 256, 3))


def _faces_material(n, h, w):
    from musetalk_core.types import MuseTalkFaces

    return MuseTalkFaces(frame_size=(h, w), has_face=torch.ones(n, dtype=torch.bool),
                         boxes=torch.zeros((n, 4), dtype=torch.long), landmarks=torch.full((n, 68, 2), -1),
                         crop_boxes=torch.zeros((n, 4), dtype=torch.long), masks=(None,) * n,
                         crops=torch.zeros((n, 256, 256, 3), dtype=torch.uint8))


def test_restore_clamps_after_the_warp_as_reference():
    """restore.npz: upstream's restore_video on decoded faces reaching +-1.45 (the decoder overshoots [-1, 1]):
    resize, inverse warp, THEN clamp. BlendAndAssemble reads AffineRestore.faces (unclamped float) and matches
    within one grey level on a few values (float kernels); clamping and rounding to uint8 first, as the pack did
    before, is tens of levels off."""
    from musetalk_core.blend.blender import blend_frames
    from musetalk_core.generators.latentsync.restore import AffineRestore
    from musetalk_core.types import MuseTalkGenerated

    golden = dict(np.load(Path(__file__).parent / "golden" / "latentsync" / "restore.npz"))
    inputs, res = tl.restore_inputs(), tl.PARITY["resolution"]
    state = align.SmoothState()  # our matrices are upstream's (align.npz tests the steps; here the smoothing too)
    ours = [align.similarity(p, align.face_template(res)[0], state) for p in inputs["points"]]
    np.testing.assert_allclose(torch.stack(ours).numpy(), golden["matrices"], rtol=0, atol=1e-4)
    frames = torch.from_numpy(inputs["frames"])
    n, h, w = frames.shape[:3]
    faces = torch.from_numpy(inputs["faces"]).permute(0, 2, 3, 1)  # (2, 64, 64, 3) as the generator keeps them
    matrices = torch.from_numpy(golden["matrices"])

    def restored(exact):
        generated = MuseTalkGenerated(faces=to_uint8_faces(faces.permute(0, 3, 1, 2)), source_index=torch.arange(n),
                                      has_face=torch.ones(n, dtype=torch.bool), fps=25.0,
                                      restore=AffineRestore(matrices, res, exact))
        out, _, _, _ = blend_frames(frames.float() / 255, _faces_material(n, h, w), generated, chunk_size=2)
        return (out * 255).round().to(torch.uint8).numpy().astype(int)

    diff = np.abs(restored(faces) - golden["restored"].astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01, (diff.max(), (diff > 0).mean())
    clamped_first = np.abs(restored(None) - golden["restored"].astype(int))  # the uint8 faces: clamp, round, warp
    assert clamped_first.max() > 20, clamped_first.max()


def test_affine_restore_shares_the_blend_loop_silence_and_streaming():
    """AffineBlender is a ChunkBlender: with silence handling a silent output frame is its source frame bit for bit
    (float values unrounded), a face-less one too, a frame next to silence is faded, and the streamed uint8 frames
    (command line, VIDEO path) are the IMAGE path's rounded."""
    from musetalk_core.blend.blender import blend_frames, generated_faces_reader, make_blender, to_uint8
    from musetalk_core.blend.chunk_loop import ChunkBlender
    from musetalk_core.generators.latentsync.restore import AffineBlender, AffineRestore
    from musetalk_core.io.sources import TensorSource
    from musetalk_core.types import MuseTalkAudio, MuseTalkGenerated

    inputs, res = tl.restore_inputs(), tl.PARITY["resolution"]
    matrices = torch.from_numpy(dict(np.load(Path(__file__).parent / "golden" / "latentsync" / "restore.npz"))
                                ["matrices"])
    frames = torch.from_numpy(inputs["frames"])
    n, h, w = frames.shape[:3]
    source = torch.tensor([0, 1, 1, 0, 1, 0])
    exact = torch.from_numpy(inputs["faces"]).permute(0, 2, 3, 1)[source].contiguous()
    silent = torch.tensor([0, 0, 1, 0, 0, 0], dtype=torch.bool)
    audio = MuseTalkAudio(features=torch.zeros((6, 50, 384)), fps=25.0, silent=silent,
                          audio={"waveform": torch.zeros((1, 1, 3840)), "sample_rate": 16000})
    generated = MuseTalkGenerated(faces=to_uint8_faces(exact.permute(0, 3, 1, 2)), source_index=source,
                                  has_face=torch.tensor([1, 1, 1, 1, 0, 1], dtype=torch.bool), fps=25.0, audio=audio,
                                  restore=AffineRestore(matrices, res, exact))
    images = frames.float() / 255 + 0.001  # off the uint8 grid: a pass-through frame keeps these values
    faces = _faces_material(n, h, w)
    out = blend_frames(images, faces, generated, silence_handling=True, silence_fade_frames=1, chunk_size=4)[0]
    plain = blend_frames(images, faces, generated, chunk_size=4)[0]
    assert torch.equal(out[2], images[1]) and torch.equal(out[4], images[1])  # silent; no generated face
    assert not torch.equal(plain[2], images[1])
    assert torch.equal(out[0], plain[0]) and torch.equal(out[5], plain[5])  # away from the silence: full weight
    for i in (1, 3):  # half way between the source frame and the restored one
        assert not torch.equal(out[i], plain[i]) and not torch.equal(out[i], images[source[i]])
    blender = make_blender(faces, generated, "cpu", 0.05, 0.5, True, 1)
    assert isinstance(blender, AffineBlender) and isinstance(blender, ChunkBlender)
    assert blender.rows(0, 6) == [0, 1, 3, 5]
    faces_of = generated_faces_reader(generated, None, torch.device("cpu"))
    streamed = torch.cat([o for _, _, o in blender.stream(TensorSource(frames), 4, faces_of)])
    assert torch.equal(streamed, to_uint8(blend_frames(frames.float() / 255, faces, generated, silence_handling=True,
                                                       silence_fade_frames=1)[0]))


def test_insightface_alignment_matches_reference(monkeypatch, tmp_path):
    """insightface_align.npz: upstream's ImageProcessor.affine_transform with its own FaceDetector (filters, landmark
    rounding) over the same FaceAnalysis detections: our 'insightface' backend (align_video) gives the same three
    points, matrices (smoothing carried) and LANCZOS-resized crops."""
    import sys
    import types

    from musetalk_core.generators.latentsync.video_align import align_video
    from musetalk_core.io.sources import TensorSource

    golden = dict(np.load(Path(__file__).parent / "golden" / "latentsync" / "insightface_align.npz"))
    inputs, res = tl.insightface_inputs(), tl.PARITY["resolution"]
    detections = {id(f): d for f, d in zip(inputs["frames"], inputs["detections"])}
    pending = list(inputs["detections"])

    app = tl.insightface_stand_in(pending)
    monkeypatch.setitem(sys.modules, "insightface", types.ModuleType("insightface"))
    monkeypatch.setitem(sys.modules, "insightface.app", app)
    (tmp_path / "models" / "buffalo_l").mkdir(parents=True)
    (tmp_path / "models" / "buffalo_l" / "2d106det.onnx").write_bytes(b"")
    frames = torch.from_numpy(inputs["frames"])
    aligned = align_video(TensorSource(frames.float() / 255, "images"), None, res, "insightface",
                          insightface_root=tmp_path)
    assert not pending and detections and aligned.has_face.all()
    np.testing.assert_allclose(aligned.matrices.numpy(), golden["matrices"], rtol=0, atol=1e-4)
    diff = np.abs(aligned.crops.numpy().astype(int) - golden["crops"].astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01, (diff.max(), (diff > 0).mean())
