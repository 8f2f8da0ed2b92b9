"""Tiny LatentSync UNet3D checkpoints in the published ``latentsync_unet.pt`` format, and the golden's inputs.

The checkpoint is ``{"global_step": 0, "state_dict": {...}}`` (what upstream's train_unet.py saves and
UNet3DConditionModel.from_pretrained reads). Every parameter gets seeded noise from a CPU generator (upstream
zero-initialises conv_in, conv_out and the motion modules' proj_out, which would hide most of the network), so the
same file comes out on every machine. tools/golden/record_latentsync.py feeds the same file and inputs to the reference.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import torch

from musetalk_core.models.checkpoints import on_meta
from musetalk_core.generators.latentsync.config import tiny_config
from musetalk_core.generators.latentsync.layers import sinusoid_table
from musetalk_core.generators.latentsync.unet3d import UNet3DConditionModel

SEED = 0


def seeded_state(config=None, seed: int = SEED) -> dict:
    """Key -> tensor for ``config`` (tiny by default): 1/sqrt(fan_in) weights, norms near 1, small biases."""
    return {k: v.clone() for k, v in _seeded_state(config or tiny_config(), seed).items()}


@functools.lru_cache(maxsize=2)
def _seeded_state(config, seed: int) -> dict:
    model = on_meta(lambda: UNet3DConditionModel(config))
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for name, value in sorted(model.state_dict().items()):
        if name.endswith("pos_encoder.pe"):  # a constant of the config, saved as upstream saves it
            state[name] = sinusoid_table(value.shape[2], value.shape[1])
        elif value.ndim > 1:
            state[name] = torch.randn(value.shape, generator=gen) * (1.0 / value[0].numel()) ** 0.5
        elif "norm" in name and name.endswith("weight"):
            state[name] = 1.0 + 0.1 * torch.randn(value.shape, generator=gen)
        else:
            state[name] = 0.05 * torch.randn(value.shape, generator=gen)
    return state


def write_checkpoint(path: Path, config=None, seed: int = SEED, fmt: str = "pt") -> Path:
    """Write the seeded UNet3D as upstream publishes it (.pt wrapper dict) or as a bare .safetensors twin."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = seeded_state(config, seed)
    if fmt == "safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save({"global_step": 0, "state_dict": state}, str(path))
    return path


def golden_inputs() -> dict:
    """The fixed inputs of the UNet3D forward goldens (CPU generator: the same numbers everywhere)."""
    gen = torch.Generator().manual_seed(1234)
    a_sample = torch.randn(2, 13, 16, 12, 12, generator=gen)
    a_audio = torch.randn(32, 50, 384, generator=gen)
    a_audio[:16] = 0  # classifier-free guidance: the first half is the null (all-zero) audio, as upstream
    b_sample = torch.randn(1, 13, 5, 12, 12, generator=gen)  # short window, size not a multiple of 8
    b_audio = torch.randn(1, 5, 50, 384, generator=gen)  # (b, f, s, d) form
    return {"a_sample": a_sample, "a_t": 981, "a_audio": a_audio, "b_sample": b_sample, "b_t": 1, "b_audio": b_audio}


# Latents of at least 12 x 12 keep the tiny net well conditioned: at 1 x 1 in the deepest block, the motion modules'
# GroupNorm (32 groups of 2 channels) divides by the spread of two numbers and amplifies float noise.
# The sampler golden: 10 video frames of 96 x 96 faces (12 x 12 latents), 36 Whisper frames (upstream makes 20 audio
# windows of them: the video ping-pongs once, the second window holds 4 frames), 3 DDIM steps, guidance 1.5, seed 1247.
SAMPLER = {"frames": 10, "size": 96, "whisper_frames": 36, "steps": 3, "guidance": 1.5, "seed": 1247}


def sampler_features() -> torch.Tensor:
    """Whisper encoder features (T, 5 layers, 384) as Audio2Feature.audio2feat returns them (seeded noise)."""
    gen = torch.Generator().manual_seed(99)
    return torch.randn(SAMPLER["whisper_frames"], 5, 384, generator=gen)


def sampler_faces() -> torch.Tensor:
    """Aligned face crops, uint8 (frames, 3, size, size): smooth gradients with a per-frame offset."""
    n, s = SAMPLER["frames"], SAMPLER["size"]
    yy, xx = torch.meshgrid(torch.linspace(0, 1, s), torch.linspace(0, 1, s), indexing="ij")
    faces = []
    for i in range(n):
        rgb = torch.stack([0.3 + 0.5 * xx, 0.2 + 0.6 * yy, 0.5 + 0.3 * (xx - yy) + 0.02 * i])
        faces.append((rgb.clamp(0, 1) * 255).round().to(torch.uint8))
    return torch.stack(faces)


# The alignment golden: 3 frames of 180 x 240 with a drifting, slightly rotating "face" (three points), face
# resolution 128 (crop 105 x 140), and a generated face to restore.
ALIGN = {"resolution": 128, "height": 180, "width": 240}


def align_inputs() -> dict:
    gen = torch.Generator().manual_seed(7)
    h, w = ALIGN["height"], ALIGN["width"]
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    frames, points = [], []
    for i in range(3):
        base = torch.stack([0.4 + 0.4 * xx, 0.3 + 0.5 * yy, 0.6 - 0.3 * xx * yy])
        texture = 0.08 * torch.sin(xx * (23 + i) + yy * 17) + 0.03 * torch.randn(3, h, w, generator=gen)
        frames.append(((base + texture).clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy())
        angle = 0.05 * (i - 1)
        centre = torch.tensor([120.0 + 4 * i, 85.0 - 2 * i])
        offsets = torch.tensor([[-30.0, -15.0], [30.0, -15.0], [1.0, 20.0]])
        rot = torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        points.append(torch.round(centre + offsets @ rot.T).numpy().astype(np.float64))
    r = ALIGN["resolution"]
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, r), torch.linspace(-1, 1, r), indexing="ij")
    face = torch.stack([0.6 * xx, 0.5 * yy, 0.4 * torch.cos(3 * xx * yy)]) + 0.05 * torch.randn(3, r, r, generator=gen)
    return {"frames": np.stack(frames), "points": np.stack(points), "face": face.clamp(-1, 1)}


# Inputs of restore.npz / insightface_align.npz (issue 22): numpy integer draws and exact float64 arithmetic only,
# so they are the same bits on every CPU (torch.randn is not, see tests/tiny/rng.py).
PARITY = {"resolution": 64, "height": 96, "width": 128}


def parity_frames(n: int = 3, seed: int = 22) -> np.ndarray:
    """uint8 (n, 96, 128, 3): a gradient with integer texture, different every frame."""
    rng = np.random.default_rng(seed)
    h, w = PARITY["height"], PARITY["width"]
    yy, xx = np.mgrid[0:h, 0:w]
    frames = []
    for i in range(n):
        base = np.stack([60 + xx, 40 + yy + 2 * i, 200 - (xx + yy) // 2], -1)
        frames.append(np.clip(base + rng.integers(-12, 13, (h, w, 3)), 0, 255).astype(np.uint8))
    return np.stack(frames)


def parity_points(n: int = 3) -> np.ndarray:
    """(n, 3, 2) float64 alignment points (left brow, right brow, nose), moving and tilting a little per frame."""
    base = np.array([[49.0, 38.0], [79.0, 36.0], [65.0, 56.0]])
    return np.stack([base + np.array([2.0 * i, 1.0 * i]) + np.array([[0, i], [0, -i], [i, 0]]) for i in range(n)])


def restore_inputs() -> dict:
    """Frames, points and decoded faces for the restore golden: (2, 3, 64, 64) float32 faces reaching +-1.45 (sharp
    8 px blocks of +-1.15 over a +-0.3 ramp), where the decoder's overshoot meets the clamp."""
    r = PARITY["resolution"]
    yy, xx = np.mgrid[0:r, 0:r]
    ramp = (xx - (r - 1) / 2) / ((r - 1) / 2) * 0.3
    faces = []
    for i in range(2):
        checker = np.where(((xx // 8) + (yy // 8) + i) % 2 == 0, 1.15, -1.15)
        chan = [checker + ramp, -0.5 * checker + ramp * (1 + i), np.where(yy < r // 2, 1.4, -0.2) - ramp]
        faces.append(np.stack(chan))
    return {"frames": parity_frames(2), "points": parity_points(2), "faces": np.stack(faces).astype(np.float32)}


def insightface_inputs() -> dict:
    """Frames and what InsightFace's FaceAnalysis would return on each: a list of (bbox, det_score, landmarks 106)
    with float landmarks (sub-pixel positions: the rounding matters). Frame 0 also holds a face too small for
    upstream's filter (w < 50); the kept face's eyebrow and nose landmarks spread around ``parity_points``."""
    rng = np.random.default_rng(106)
    frames = parity_frames(3)
    points = parity_points(3)
    detections = []
    for i in range(3):
        lmk = rng.uniform(30.0, 90.0, (106, 2))
        left, right, nose = points[i]
        lmk[[43, 48, 49, 51, 50]] = left + rng.uniform(-3.0, 3.0, (5, 2))
        lmk[101:106] = right + rng.uniform(-3.0, 3.0, (5, 2))
        lmk[[74, 77, 83, 86]] = nose + rng.uniform(-2.0, 2.0, (4, 2))
        faces = [((20.0, 10.0, 110.0, 95.0), 0.9, lmk)]
        if i == 0:
            faces.append(((0.0, 0.0, 40.0, 96.0), 0.99, rng.uniform(0.0, 40.0, (106, 2))))
        detections.append(faces)
    return {"frames": frames, "detections": detections}


def write_latentsync_files(root: Path, version: str = "latentsync15") -> Path:
    """The LatentSync files of ``version`` in a models folder (beside a tiny MuseTalk v15 set): the tiny UNet3D in
    the published format and a mouth mask.png (no whisper/tiny.pt: nothing reads it)."""
    import cv2

    write_checkpoint(root / version / "latentsync_unet.pt")
    (root / "latentsync").mkdir(exist_ok=True)
    mask = np.full((256, 256, 3), 255, np.uint8)
    mask[150:230, 60:196] = 0  # the mouth
    cv2.imwrite(str(root / "latentsync" / "mask.png"), mask)
    return root


def use_tiny_versions(monkeypatch) -> None:
    """The published versions with the tiny UNet3D structure (the test files hold tiny weights); resolution, repo
    and defaults stay the published ones."""
    from dataclasses import replace

    from musetalk_core.generators.latentsync import config

    for name in config.VERSIONS:
        monkeypatch.setitem(config.VERSIONS, name, replace(config.VERSIONS[name], unet=tiny_config()))


def insightface_stand_in(pending: list):
    """An ``insightface.app`` module whose FaceAnalysis returns, per call, the next entry of ``pending`` (a list of
    (bbox, det_score, landmarks 106) per frame, as insightface_inputs() gives): the recorder gives it to upstream's
    FaceDetector, the test to ours, so both sides see the same detections without the ONNX models."""
    import types

    class Face:
        def __init__(self, bbox, score, lmk):
            self.bbox, self.det_score, self.landmark_2d_106 = np.array(bbox), score, np.array(lmk)

    class FaceAnalysis:
        def __init__(self, allowed_modules, root, providers):
            pass

        def prepare(self, ctx_id, det_size):
            pass

        def get(self, frame):
            return [Face(*d) for d in pending.pop(0)]

    app = types.ModuleType("insightface.app")
    app.FaceAnalysis = FaceAnalysis
    return app
