"""BlendAndAssemble: reference parity on recorded goldens, pass-through, audio length, silence handling, errors."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch

from musetalk_core.blend.blender import assemble_audio, audio_length, blend_frames, silence_weights
from musetalk_core.errors import InputError
from musetalk_core.io.frames import frames_fingerprint
from musetalk_core.hooks import RunHooks
from musetalk_core.types import MuseTalkAudio, MuseTalkFaces, MuseTalkGenerated

GOLDEN = Path(__file__).resolve().parent / "golden" / "blend" / "blend_reference.npz"


# ------------------------------------------------------------------------------------------------- builders

def make_faces(frames_u8, boxes, crops, masks, has_face=None, fingerprint=True):
    n, h, w = frames_u8.shape[:3]
    has = torch.ones(n, dtype=torch.bool) if has_face is None else torch.as_tensor(has_face, dtype=torch.bool)
    return MuseTalkFaces(
        frame_size=(h, w), has_face=has, boxes=torch.as_tensor(np.asarray(boxes), dtype=torch.long),
        landmarks=torch.full((n, 68, 2), -1, dtype=torch.long),
        crop_boxes=torch.as_tensor(np.asarray(crops), dtype=torch.long),
        masks=tuple(None if m is None else torch.as_tensor(m) for m in masks),
        crops=torch.zeros((n, 256, 256, 3), dtype=torch.uint8),
        frames_fingerprint=frames_fingerprint(torch.as_tensor(frames_u8)) if fingerprint else None)


def make_generated(faces256, source_index, fps=25.0, audio=None, has_face=None, fingerprint=None):
    t = len(source_index)
    has = torch.ones(t, dtype=torch.bool) if has_face is None else torch.as_tensor(has_face, dtype=torch.bool)
    return MuseTalkGenerated(faces=torch.as_tensor(faces256), source_index=torch.as_tensor(source_index).long(),
                             has_face=has, fps=fps, audio=audio, frames_fingerprint=fingerprint)


def make_audio(t, fps=25.0, silent=None, seconds=None, rate=16000, channels=2):
    seconds = t / fps if seconds is None else seconds
    wav = torch.randn((1, channels, int(round(seconds * rate))), generator=torch.Generator().manual_seed(5))
    sil = torch.zeros(t, dtype=torch.bool) if silent is None else torch.as_tensor(silent, dtype=torch.bool)
    return MuseTalkAudio(features=torch.zeros((t, 50, 384)), fps=fps, silent=sil,
                         audio={"waveform": wav, "sample_rate": rate})


def to_image(u8):
    return torch.as_tensor(u8).float() / 255.0


def to_u8(img):
    return (img * 255.0).round().clamp(0, 255).to(torch.uint8).numpy()


def synthetic_video(n=4, h=72, w=96, seed=0):
    """Frames, and faces with square crops (some leaving the frame) and binary-ish masks."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
    boxes, crops, masks = [], [], []
    for i in range(n):
        bw, bh = int(rng.integers(20, 40)), int(rng.integers(20, 44))
        x, y = int(rng.integers(-8, w - bw + 8)), int(rng.integers(-8, h - bh + 8))
        box = (x, y, x + bw, y + bh)
        xc, yc = (x + x + bw) // 2, (y + y + bh) // 2
        s = int(max(bw, bh) // 2 * 1.5)
        crop = (xc - s, yc - s, xc + s, yc + s)
        m = np.zeros((2 * s, 2 * s), np.uint8)
        m[y - crop[1]: y - crop[1] + bh, x - crop[0]: x - crop[0] + bw] = 255
        m[rng.random(m.shape) < 0.2] = 0
        boxes.append(box)
        crops.append(crop)
        masks.append(m)
    return frames, boxes, crops, masks


# ------------------------------------------------------------------------------------------------- golden parity

@pytest.fixture(scope="module")
def golden():
    return np.load(GOLDEN)


def _golden_groups(g):
    groups = defaultdict(list)
    for i in range(int(g["num_cases"])):
        fi, gi, ratio, blur, _ = (int(v) for v in g[f"params_{i}"])
        groups[(fi, ratio, blur)].append(i)
    return groups


def _golden_clip(g, fi, cases):
    """One golden group as a clip: (frame, frames, faces, ping-pong source indices (each source frame used twice),
    uint8 generated faces per output frame)."""
    frame = g[f"frame_{fi}"]
    n = len(cases)
    frames = np.stack([frame] * n)
    faces = make_faces(frames, [g[f"box_{i}"] for i in cases], [g[f"crop_{i}"] for i in cases],
                       [g[f"mask_{i}"] for i in cases])
    src = list(range(n)) + list(range(n - 1, -1, -1))
    gen_faces = torch.from_numpy(np.stack([g["faces"][int(g[f"params_{cases[j]}"][1])] for j in src]))
    return frame, frames, faces, src, gen_faces


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("use_replacement", [False, True])
def test_matches_reference_compositing(golden, use_replacement, device):
    """Every recorded case (all crops partly outside the frame, 18 boxes too), ping-pong repeats, mixed chunks."""
    g = golden
    checked = composited = 0
    for (fi, ratio, blur), cases in _golden_groups(g).items():
        frame, frames, faces, src, gen_faces = _golden_clip(g, fi, cases)
        n = len(cases)
        gen_faces = gen_faces.to(device)  # generated faces live on the compute device
        if use_replacement:
            generated = make_generated(torch.zeros_like(gen_faces), src, fingerprint=faces.frames_fingerprint)
            kwargs = {"replacement_faces": to_image(gen_faces.cpu())}
        else:
            generated = make_generated(gen_faces, src, fingerprint=faces.frames_fingerprint)
            kwargs = {}
        out, _, _, t = blend_frames(to_image(frames), faces, generated, blur_factor=blur / 1000,
                                    upper_boundary_ratio=ratio / 1000, chunk_size=3, output_device="cpu", **kwargs)
        assert t == 2 * n and out.device.type == "cpu"
        got = to_u8(out)
        for k, j in enumerate(src):
            want = g[f"out_{cases[j]}"]
            diff = np.abs(got[k].astype(int) - want.astype(int))
            assert (diff == 0).mean() >= 0.999 and diff.max() <= 2, f"case {cases[j]}"
            assert diff.max() == 0, f"case {cases[j]}: {(diff > 0).sum()} pixels differ (max {diff.max()})"
            composited += bool((want != frame).any())
            checked += 1
    assert checked == 2 * int(g["num_cases"]) >= 40
    assert composited >= 40  # ratio 1.0 cases legitimately change nothing; the others composite


@pytest.mark.parametrize("device", DEVICES)
def test_streamed_uint8_blend_matches_reference_and_moves_only_the_squares(golden, device, monkeypatch):
    """The streaming blend (CLI, VIDEO path) of uint8 frames: every recorded case bit for bit, while the device
    only sees the blend squares (crop box within the frame), never whole frames."""
    from musetalk_core.blend import kernels as blend_ops
    from musetalk_core.blend.blender import make_blender
    from musetalk_core.io.sources import TensorSource

    g = golden
    seen = []
    real_compose = blend_ops.compose

    def compose(frames_sel, *args):
        seen.append(tuple(frames_sel.shape[1:3]))
        return real_compose(frames_sel, *args)

    monkeypatch.setattr(blend_ops, "compose", compose)
    checked = 0
    for (fi, ratio, blur), cases in _golden_groups(g).items():
        frame, frames, faces, src, gen = _golden_clip(g, fi, cases)
        n = len(cases)
        generated = make_generated(gen.to(device), src, fingerprint=faces.frames_fingerprint)
        blender = make_blender(faces, generated, device, blur / 1000, ratio / 1000, False, 3)
        seen.clear()
        out = torch.cat([o for _, _, o in blender.stream(TensorSource(torch.from_numpy(frames)), 3,
                                                         lambda rows: generated.faces[rows])])
        assert out.dtype == torch.uint8 and out.device.type == "cpu" and out.shape[0] == 2 * n
        for k, j in enumerate(src):
            assert np.array_equal(out[k].numpy(), g[f"out_{cases[j]}"]), f"case {cases[j]}"
            checked += 1
        sides = [int(c[2] - c[0]) for c in (g[f"crop_{i}"] for i in cases)]
        assert seen and all(h <= max(sides) and w <= max(sides) for h, w in seen)
        assert all((h, w) != tuple(frame.shape[:2]) for h, w in seen)
    assert checked == 2 * int(g["num_cases"])


def test_streamed_blend_with_a_crop_box_outside_the_frame():
    """A blend square of nothing (a crop box wholly outside its frame) next to a normal one: the streamed way gives
    the whole-frame way's pixels, the outside one changes nothing."""
    from musetalk_core.blend.blender import make_blender, to_uint8
    from musetalk_core.io.sources import TensorSource

    frames, boxes, crops, masks = synthetic_video(n=2, seed=11)
    boxes[1], crops[1] = (200, 10, 230, 40), (190, 0, 240, 50)  # the frame is 96 wide
    masks[1] = np.full((50, 50), 255, np.uint8)
    faces = make_faces(frames, boxes, crops, masks)
    gen = np.random.default_rng(12).integers(0, 256, (2, 256, 256, 3), dtype=np.uint8)
    generated = make_generated(gen, [0, 1])
    whole = to_uint8(blend_frames(to_image(frames), faces, generated)[0])
    blender = make_blender(faces, generated, "cpu", 0.05, 0.5, False, 3)
    out = torch.cat([o for _, _, o in blender.stream(TensorSource(torch.from_numpy(frames)), 4,
                                                     lambda rows: generated.faces[rows])])
    assert torch.equal(out, whole) and torch.equal(out[1], torch.from_numpy(frames[1]))
    assert not torch.equal(out[0], torch.from_numpy(frames[0]))


# ------------------------------------------------------------------------------------------------- behaviour

def test_no_face_frames_and_unmasked_pixels_are_the_input_bit_for_bit():
    frames, boxes, crops, masks = synthetic_video(n=3)
    images = torch.rand((3, 72, 96, 3), generator=torch.Generator().manual_seed(1))  # not multiples of 1/255
    faces = make_faces(to_u8(images), boxes, crops, [masks[0], None, masks[2]], has_face=[True, False, True])
    gen = np.random.default_rng(2).integers(0, 256, (5, 256, 256, 3), dtype=np.uint8)
    gen[4] = gen[0]
    generated = make_generated(gen, [0, 1, 2, 1, 0], has_face=[True, False, True, False, True])
    out, _, _, t = blend_frames(images, faces, generated)
    assert t == 5 and out.shape == (5, 72, 96, 3) and out.dtype == torch.float32
    assert torch.equal(out[1], images[1]) and torch.equal(out[3], images[1])
    changed = (out[0] != images[0]).any(-1)
    assert changed.any()
    # only pixels inside the crop can change
    x0, y0, x1, y1 = crops[0]
    outside = torch.ones_like(changed)
    outside[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = False
    assert not changed[outside].any()
    assert torch.equal(out[0][~changed], images[0][~changed])
    assert torch.equal(out[0], out[4])  # same source frame and same face -> same output


def test_chunk_size_does_not_change_the_result_and_progress_counts_frames():
    frames, boxes, crops, masks = synthetic_video(n=5, seed=3)
    faces = make_faces(frames, boxes, crops, masks)
    src = [0, 1, 2, 3, 4, 4, 3, 2, 1, 0, 0]
    gen = np.random.default_rng(4).integers(0, 256, (len(src), 256, 256, 3), dtype=np.uint8)
    generated = make_generated(gen, src)
    steps = []
    a = blend_frames(to_image(frames), faces, generated, chunk_size=1, hooks=RunHooks(advance=steps.append))[0]
    b = blend_frames(to_image(frames), faces, generated, chunk_size=4)[0]
    assert torch.equal(a, b)
    assert sum(steps) == len(src) and len(steps) == len(src)


def test_interrupt_stops_between_chunks():
    frames, boxes, crops, masks = synthetic_video(n=2)
    faces = make_faces(frames, boxes, crops, masks)
    generated = make_generated(np.zeros((6, 256, 256, 3), np.uint8), [0, 1, 0, 1, 0, 1])
    calls = []

    def check():
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        blend_frames(to_image(frames), faces, generated, chunk_size=2, hooks=RunHooks(check_interrupt=check))
    assert len(calls) == 2


@pytest.mark.parametrize("t,fps,rate", [(7, 25.0, 16000), (30, 29.97, 44100), (11, 23.976, 48000), (1, 240.0, 8000)])
def test_audio_is_exactly_t_over_fps(t, fps, rate):
    assert abs(audio_length(t, fps, rate) - t / fps * rate) <= 0.5
    # longer audio is trimmed (content kept), shorter is zero-padded
    for seconds in (t / fps + 0.3, t / fps * 0.5):
        a = make_audio(t, fps=fps, seconds=seconds, rate=rate)
        res = assemble_audio(a.audio, t, fps)
        n = res["waveform"].shape[-1]
        assert res["sample_rate"] == rate and abs(n - t / fps * rate) <= 1 and res["waveform"].device.type == "cpu"
        src = a.audio["waveform"]
        keep = min(n, src.shape[-1])
        assert torch.equal(res["waveform"][..., :keep], src[..., :keep])
        assert not res["waveform"][..., keep:].any()


def test_blend_outputs_audio_fps_and_silence_without_audio():
    frames, boxes, crops, masks = synthetic_video(n=2)
    faces = make_faces(frames, boxes, crops, masks)
    gen = np.zeros((3, 256, 256, 3), np.uint8)
    _, audio, fps, t = blend_frames(to_image(frames), faces, make_generated(gen, [0, 1, 0], fps=29.97,
                                                                           audio=make_audio(3, fps=29.97)))
    assert fps == 29.97 and t == 3 and audio["waveform"].shape == (1, 2, round(3 / 29.97 * 16000))
    _, audio, _, _ = blend_frames(to_image(frames), faces, make_generated(gen, [0, 1, 0], fps=25.0))
    assert audio["sample_rate"] == 44100 and audio["waveform"].shape == (1, 1, 5292) and not audio["waveform"].any()


def test_silence_weights_fade_in_and_out():
    w = silence_weights(torch.tensor([0, 0, 0, 0, 1, 1, 0, 0, 0, 0], dtype=torch.bool), 2)
    np.testing.assert_allclose(w, [1, 1, 2 / 3, 1 / 3, 0, 0, 1 / 3, 2 / 3, 1, 1])
    assert (silence_weights(torch.zeros(4, dtype=torch.bool), 3) == 1).all()
    np.testing.assert_allclose(silence_weights(torch.tensor([1, 0, 0], dtype=torch.bool), 0), [0, 1, 1])


def test_silence_handling_changes_only_silent_frames_and_their_fades():
    n, t = 3, 14
    frames, boxes, crops, masks = synthetic_video(n=n, seed=7)
    faces = make_faces(frames, boxes, crops, masks)
    src = [i % n for i in range(t)]
    gen = np.random.default_rng(8).integers(0, 256, (t, 256, 256, 3), dtype=np.uint8)
    silent = np.zeros(t, bool)
    silent[[6, 7]] = True
    generated = make_generated(gen, src, audio=make_audio(t, silent=silent))
    images = to_image(frames)
    base = blend_frames(images, faces, generated)[0]
    off = blend_frames(images, faces, generated, silence_handling=False, silence_fade_frames=2)[0]
    quiet = blend_frames(images, faces, generated, silence_handling=True, silence_fade_frames=2)[0]
    assert torch.equal(base, off)
    differs = [i for i in range(t) if not torch.equal(quiet[i], base[i])]
    assert differs == [4, 5, 6, 7, 8, 9]
    for i in (6, 7):
        assert torch.equal(quiet[i], images[src[i]])  # silent: the original mouth
    for near, far in ((5, 4), (8, 9)):  # closer to the silence -> closer to the original frame
        d_near = (quiet[near] - images[src[near]]).abs().sum() / (base[near] - images[src[near]]).abs().sum()
        d_far = (quiet[far] - images[src[far]]).abs().sum() / (base[far] - images[src[far]]).abs().sum()
        assert 0.2 < d_near < 0.45 and 0.55 < d_far < 0.8


# ------------------------------------------------------------------------------------------------- bad input

def _basic(n=3):
    frames, boxes, crops, masks = synthetic_video(n=n)
    faces = make_faces(frames, boxes, crops, masks)
    generated = make_generated(np.zeros((4, 256, 256, 3), np.uint8), [0, 1, 2, 1],
                               fingerprint=faces.frames_fingerprint)
    return frames, faces, generated


def test_rejects_other_frames():
    frames, faces, generated = _basic()
    with pytest.raises(InputError, match="not the frames the faces were computed from"):
        blend_frames(to_image(frames[:2]), faces, generated)
    with pytest.raises(InputError, match="not the frames the faces were computed from"):
        blend_frames(to_image(frames[:, :70]), faces, generated)
    other = frames.copy()
    other[:, ::3] = 255 - other[:, ::3]
    with pytest.raises(InputError, match="not the frames the faces were computed from"):
        blend_frames(to_image(other), faces, generated)


def test_rejects_generated_from_another_video():
    frames, faces, generated = _basic()
    foreign = make_generated(generated.faces, [0, 1, 2, 1], fingerprint="3x72x96:0123456789abcdef")
    with pytest.raises(InputError, match="another video"):
        blend_frames(to_image(frames), faces, foreign)
    out_of_range = make_generated(generated.faces, [0, 1, 5, 1])
    with pytest.raises(InputError, match="source frames 0..5"):
        blend_frames(to_image(frames), faces, out_of_range)


def test_rejects_bad_replacement_faces():
    frames, faces, generated = _basic()
    with pytest.raises(InputError, match="'replacement_faces' must hold 4 faces"):
        blend_frames(to_image(frames), faces, generated, replacement_faces=torch.zeros((3, 256, 256, 3)))
    with pytest.raises(InputError, match="'replacement_faces' must hold 4 faces"):
        blend_frames(to_image(frames), faces, generated, replacement_faces=torch.zeros((4, 512, 512, 3)))


def test_rejects_bad_masks_and_settings():
    frames, boxes, crops, masks = synthetic_video(n=2)
    bad = make_faces(frames, boxes, crops, [masks[0], masks[1][:-1]])
    generated = make_generated(np.zeros((2, 256, 256, 3), np.uint8), [0, 1])
    with pytest.raises(InputError, match="blend mask"):
        blend_frames(to_image(frames), bad, generated)
    faces = make_faces(frames, boxes, crops, masks)
    with pytest.raises(InputError, match="upper_boundary_ratio"):
        blend_frames(to_image(frames), faces, generated, upper_boundary_ratio=1.5)
    with pytest.raises(InputError, match="chunk_size"):
        blend_frames(to_image(frames), faces, generated, chunk_size=0)


# ------------------------------------------------------------------------------------------------- node

def test_node_interface_and_run():
    from nodes.blend import BlendAndAssemble

    spec = BlendAndAssemble.INPUT_TYPES()
    assert list(spec["required"]) == ["faces", "generated", "blur_factor", "upper_boundary_ratio",
                                      "silence_handling", "silence_fade_frames", "chunk_size"]
    assert list(spec["optional"]) == ["images", "video", "replacement_faces", "more_speakers"]  # exactly one of images / video
    for group in spec.values():
        for name, (_, opts) in group.items():
            assert opts.get("tooltip"), name
    assert spec["required"]["blur_factor"][1]["default"] == 0.05
    assert spec["required"]["upper_boundary_ratio"][1]["default"] == 0.5
    assert spec["required"]["silence_handling"][1]["default"] is False
    assert spec["required"]["silence_fade_frames"][1]["default"] == 3
    assert spec["required"]["chunk_size"][1]["default"] == 16
    assert BlendAndAssemble.RETURN_TYPES == ("IMAGE", "AUDIO", "FLOAT", "INT", "VIDEO")
    assert BlendAndAssemble.RETURN_NAMES == ("images", "audio", "fps", "frame_count", "video")
    assert BlendAndAssemble.CATEGORY == "MuseTalk"

    frames, faces, generated = _basic()
    generated = make_generated(generated.faces, [0, 1, 2, 1], audio=make_audio(4))
    node = BlendAndAssemble()
    images, audio, fps, count, video = getattr(node, BlendAndAssemble.FUNCTION)(
        to_image(frames), faces, generated, 0.05, 0.5, False, 3, 16)
    direct = blend_frames(to_image(frames), faces, generated)[0]
    assert torch.equal(images, direct) and images.device.type == "cpu"
    assert video.get_components().images is images and float(video.get_frame_rate()) == 25.0
    assert count == 4 and fps == 25.0 and audio["waveform"].shape[-1] == 2560


def test_rejects_nan_frames_under_the_mask():
    frames, boxes, crops, masks = synthetic_video(n=2)
    faces = make_faces(frames, boxes, crops, masks, fingerprint=False)
    generated = make_generated(np.zeros((2, 256, 256, 3), np.uint8), [0, 1])
    images = to_image(frames)
    images[:, :, :] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        blend_frames(images, faces, generated)


def test_pixel_budgets_bound_each_pass_without_changing_a_pixel(monkeypatch):
    """Blender.stream (the VIDEO / command-line blend) limits frame pixels per chunk, mask pixels per compose call
    and bytes of cached masks (very large frames and close-ups); none of the limits changes an output pixel."""
    from musetalk_core.blend import kernels as blend_ops
    from musetalk_core.blend.blender import Blender, make_blender, to_uint8
    from musetalk_core.io.sources import TensorSource

    frames, boxes, crops, masks = synthetic_video(n=5, seed=3)
    faces = make_faces(frames, boxes, crops, masks)
    src = [0, 1, 2, 3, 4, 4, 3, 2, 1, 0, 0]
    gen = np.random.default_rng(4).integers(0, 256, (len(src), 256, 256, 3), dtype=np.uint8)
    generated = make_generated(gen, src, audio=make_audio(len(src), silent=[0] * 4 + [1] * 2 + [0] * 5))
    ref = to_uint8(blend_frames(to_image(frames), faces, generated, silence_handling=True, silence_fade_frames=2)[0])
    reads, batches = [], []
    real_compose = blend_ops.compose

    class Recording(TensorSource):
        def read(self, indices):
            reads.append(len(indices))
            return super().read(indices)

    def compose(frames_sel, resized, boxes, crops, mask_batch):
        batches.append(int(mask_batch.shape[0]))
        return real_compose(frames_sel, resized, boxes, crops, mask_batch)

    monkeypatch.setattr(blend_ops, "compose", compose)

    def run():
        reads.clear()
        batches.clear()
        blender = make_blender(faces, generated, "cpu", 0.05, 0.5, True, 2)
        out = [o for _, _, o in blender.stream(Recording(torch.from_numpy(frames)), 16,
                                               lambda rows: generated.faces[rows])]
        return torch.cat(out), blender

    out, _ = run()
    assert torch.equal(out, ref) and reads == [len(src)] and max(batches) > 1
    monkeypatch.setattr(Blender, "CHUNK_PIXELS", 3 * 72 * 96)  # 3 frames of this size per chunk
    monkeypatch.setattr(Blender, "COMPOSE_PIXELS", 1)  # one face per compose call
    monkeypatch.setattr(Blender, "MASK_CACHE_BYTES", 1)  # only the masks in use stay
    out, blender = run()
    assert torch.equal(out, ref)
    assert reads == [3, 3, 3, 2] and set(batches) == {1} and len(batches) == len(blender.rows(0, len(src))) == 9
    assert len(blender._blurred) == 1 and blender._blurred_bytes == next(iter(blender._blurred.values())).numel()


def test_image_and_video_sinks_take_the_chunks_of_one_loop(monkeypatch):
    """blend_frames (IMAGE) and the VIDEO path run the same chunk loop (ChunkBlender.blend_into), bounded by the
    same frame-pixel budget; the IMAGE sink keeps float pixels no face touches unrounded, the video sink gets those
    frames as uint8 and keeps previews of them."""
    from musetalk_core.blend.blender import Blender, make_blender, to_uint8
    from musetalk_core.blend.sinks import ImageFrames, VideoSink
    from musetalk_core.io.previews import sample_indices, strip
    from musetalk_core.io.sources import TensorSource

    frames, boxes, crops, masks = synthetic_video(n=4, seed=7)
    images = to_image(frames) * 0.999 + 0.0005  # off the uint8 grid
    faces = make_faces(to_u8(images), boxes, crops, masks, has_face=[True, True, False, True])
    src = [0, 1, 2, 3, 3, 2, 1]
    gen = np.random.default_rng(6).integers(0, 256, (len(src), 256, 256, 3), dtype=np.uint8)
    generated = make_generated(gen, src, audio=make_audio(len(src), silent=[0, 0, 0, 0, 1, 0, 0]))
    monkeypatch.setattr(Blender, "CHUNK_PIXELS", 2 * 72 * 96)  # 2 frames per chunk whatever chunk_size says
    steps = []
    out = blend_frames(images, faces, generated, silence_handling=True, silence_fade_frames=1, chunk_size=16,
                       hooks=RunHooks(advance=steps.append))[0]
    assert steps == [2, 2, 2, 1]
    assert torch.equal(out[2], images[2]) and torch.equal(out[4], images[3])  # no face; silent
    assert not torch.equal(out[0], images[0])

    class Writer:
        def __init__(self):
            self.frames = []

        def write(self, chunk):
            self.frames.append(chunk.clone())

    writer, blender = Writer(), make_blender(faces, generated, "cpu", 0.05, 0.5, True, 1)
    sink = VideoSink(writer, len(src))
    blender.blend_into(sink, ImageFrames(images), 16, lambda rows: generated.faces[rows])
    assert [len(c) for c in writer.frames] == [2, 2, 2, 1]
    assert torch.equal(torch.cat(writer.frames), to_uint8(out))
    assert torch.equal(sink.preview(), strip({i: to_uint8(out[i]).numpy() for i in range(len(src))},
                                             sample_indices(len(src))))
    u8 = torch.from_numpy(to_u8(images))  # the uint8 way (command line, VIDEO): the blend squares only
    streamed = torch.cat([o for _, _, o in blender.stream(TensorSource(u8), 3, lambda rows: generated.faces[rows])])
    assert torch.equal(streamed, to_uint8(blend_frames(u8, faces, generated, silence_handling=True,
                                                       silence_fade_frames=1)[0]))


def test_preview_frames_are_kept_at_preview_size():
    """The VIDEO paths keep their 16 preview frames already downscaled (and copied, never views of a chunk): the
    strip is the same as from full-size frames."""
    from musetalk_core.io.previews import PREVIEW_SIDE, Downscaled, strip

    rng = np.random.default_rng(9)
    big = rng.integers(0, 256, (900, 1600, 3), dtype=np.uint8)
    chunk = rng.integers(0, 256, (3, 40, 60, 3), dtype=np.uint8)
    kept = Downscaled()
    kept[0] = big
    kept[1] = chunk[1]
    assert kept[0].shape == (432, PREVIEW_SIDE, 3) and not np.shares_memory(kept[1], chunk)
    assert torch.equal(strip(kept, [0]), strip({0: big}, [0]))
    assert torch.equal(strip(kept, [1]), strip({1: chunk[1]}, [1]))
