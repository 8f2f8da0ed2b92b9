"""Tiny DWPose checkpoint in the published format: dwpose/dw-ll_ucoco_384.pth, an mmengine checkpoint
{"meta": ..., "state_dict": {backbone.*, head.*}} with the real key names.

The published model is CSPNeXt-P5 (widen 1.0, deepen 1.0) + RTMCC head (GAU 256 / s 128). Both our loader and the
mmpose backend read width/depth from the checkpoint's shapes, so this writes the same format at widen 0.125,
deepen 1/3, GAU 32 / s 16 (about 0.4 M parameters instead of 33.6 M). 133 keypoints, 7x7 final layer and the
384x288 input (9x12 feature map) are kept.

Options (``write(..., dwpose_init=...)``; the file format and key names are the same for all):
- "plain" (default): independent seeded values. Cheap, but the BatchNorm running statistics do not match the
  activations, so much of the network's output is constant and many keypoints barely move with the image.
- "calibrated": the same seeded weights, then every BatchNorm's running mean/var is set to the statistics its input
  actually has on a fixed set of seeded synthetic 384x288 images (one train-mode pass with cumulative averaging),
  so activations stay near zero mean / unit variance through the whole backbone instead of collapsing or
  blowing up, and the GAU output projection is scaled by 0.1 so the SimCC logits stay moderate (scores ~10).
  With it the keypoints (all 133 and the 68 face points) clearly follow the image content; the DWPose-vs-mmpose
  parity tests in tests/test_boxes_landmarks.py and the pipeline golden use it.

Every value is the same bits on every machine: the weights come from tests/tiny/rng.py (no torch.randn), and the
measured statistics (a forward pass, whose last bits depend on the CPU's kernels) are read from
dwpose_bn_stats.npz next to this file (33 KB), made once by ``measure_bn_stats``:

    python tests/tiny/dwpose.py          # rewrites tests/tiny/dwpose_bn_stats.npz; then re-record the goldens
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

if __package__ in (None, ""):  # run as a script: make ``tiny`` and ``musetalk_core`` importable
    sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parents[2])]

from tiny.rng import Draw  # noqa: E402

TINY = dict(widen=0.125, deepen=1 / 3, hidden=32, s=16, expansion=2.0, kernel=7)
DEFAULT_SEED = 7
BN_STATS_FILE = Path(__file__).with_name("dwpose_bn_stats.npz")


def seeded_state(seed: int = DEFAULT_SEED, **arch) -> dict:
    from musetalk_core.models.dwpose import DWPose, DWPoseConfig

    cfg = DWPoseConfig(**{**TINY, **arch})
    net = DWPose(cfg)
    draw = Draw(seed)
    state = {}
    for name, t in net.state_dict().items():
        if name.endswith("num_batches_tracked"):
            state[name] = torch.zeros((), dtype=torch.long)
        elif name.endswith("running_var"):
            state[name] = draw.uniform(t.shape, 0.5, 1.5)
        elif name.endswith("running_mean"):
            state[name] = draw.noise(t.shape, 0.1)
        elif name.endswith("bn.weight"):
            state[name] = draw.noise(t.shape, 0.2, mean=1.0)
        elif t.ndim >= 2:
            state[name] = draw.noise(t.shape, (2.0 / t[0].numel()) ** 0.5)
        elif name.endswith(".g") or name.endswith("res_scale.scale") or name.endswith("gamma"):
            state[name] = draw.noise(t.shape, 0.2, mean=1.0)
        else:
            state[name] = draw.noise(t.shape, 0.1)
    return state


def synthetic_images(n: int, height: int, width: int, seed: int) -> "np.ndarray":
    """(n, H, W, 3) uint8: a random flat colour with six random filled circles (seeded, deterministic)."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(seed)
    out = np.empty((n, height, width, 3), np.uint8)
    short = min(height, width)
    for i in range(n):
        out[i] = rng.integers(0, 255, 3)
        for _ in range(6):
            colour = tuple(int(v) for v in rng.integers(0, 255, 3))
            centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
            cv2.circle(out[i], centre, int(rng.integers(short // 10 + 1, short // 3 + 2)), colour, -1)
    return out


def measure_bn_stats(seed: int = DEFAULT_SEED, calib_seed: int = 123, n_images: int = 8, **arch) -> dict:
    """Every BatchNorm's running mean/var measured on synthetic images: {state key: tensor} (a forward pass)."""
    from musetalk_core.models.dwpose import INPUT_H, INPUT_W, DWPose, DWPoseConfig

    net = DWPose(DWPoseConfig(**{**TINY, **arch}))
    net.load_state_dict(seeded_state(seed, **arch))
    for bn in (m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average: after one pass, exactly that batch's statistics
    images = torch.from_numpy(synthetic_images(n_images, INPUT_H, INPUT_W, calib_seed)).permute(0, 3, 1, 2).float()
    net.train()
    with torch.no_grad():
        net((images - net.mean) / net.std)
    return {k: v.detach().clone() for k, v in net.state_dict().items()
            if k.endswith("running_mean") or k.endswith("running_var")}


def calibrated_state(seed: int = DEFAULT_SEED, **arch) -> dict:
    """seeded_state with the measured BatchNorm statistics and the GAU output scaled by 0.1 (see top)."""
    state = seeded_state(seed, **arch)
    if seed == DEFAULT_SEED and not arch:
        with np.load(BN_STATS_FILE) as stored:
            stats = {k: torch.from_numpy(stored[k]) for k in stored.files}
    else:  # only the default weights have stored statistics: measure here (float result depends on the CPU)
        stats = measure_bn_stats(seed, **arch)
    assert set(stats) == {k for k in state if k.endswith(("running_mean", "running_var"))}, "run tests/tiny/dwpose.py"
    state.update(stats)
    state["head.gau.o.weight"] = state["head.gau.o.weight"] * 0.1
    return state


def write(models_dir, version="v15", name="landmarks", seed: int = DEFAULT_SEED, dwpose_init: str = "plain",
          **options) -> Path:
    if dwpose_init not in ("plain", "calibrated"):
        raise ValueError(f"dwpose_init must be 'plain' or 'calibrated', not {dwpose_init!r}")
    path = Path(models_dir) / "dwpose" / "dw-ll_ucoco_384.pth"
    path.parent.mkdir(parents=True, exist_ok=True)
    state = seeded_state(seed) if dwpose_init == "plain" else calibrated_state(seed)
    ckpt = {"meta": {"mmengine_version": "0.7.4", "epoch": 270, "iter": 0, "note": "tiny test checkpoint"},
            "state_dict": state}
    torch.save(ckpt, path)
    return path


if __name__ == "__main__":
    stats = {k: v.numpy().astype(np.float32) for k, v in measure_bn_stats().items()}
    np.savez_compressed(BN_STATS_FILE, **stats)
    print("wrote", BN_STATS_FILE, len(stats), "tensors")
