"""Tiny DWPose checkpoint in the published format: dwpose/dw-ll_ucoco_384.pth, an mmengine checkpoint
{"meta": ..., "state_dict": {backbone.*, head.*}} with the real key names.

The published model is CSPNeXt-P5 (widen 1.0, deepen 1.0) + RTMCC head (GAU 256 / s 128). Both our loader and the
mmpose backend read width/depth from the checkpoint's shapes, so this writes the same format at widen 0.125,
deepen 1/3, GAU 32 / s 16 (about 0.4 M parameters instead of 33.6 M). 133 keypoints, 7x7 final layer and the
384x288 input (9x12 feature map) are kept.
"""

from __future__ import annotations

from pathlib import Path

import torch

TINY = dict(widen=0.125, deepen=1 / 3, hidden=32, s=16, expansion=2.0, kernel=7)


def seeded_state(seed: int = 7, **arch) -> dict:
    from musetalk_core.models.dwpose import DWPose, DWPoseConfig

    cfg = DWPoseConfig(**{**TINY, **arch})
    net = DWPose(cfg)
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for name, t in net.state_dict().items():
        if name.endswith("num_batches_tracked"):
            state[name] = torch.zeros((), dtype=torch.long)
        elif name.endswith("running_var"):
            state[name] = 0.5 + torch.rand(t.shape, generator=gen)
        elif name.endswith("running_mean"):
            state[name] = 0.1 * torch.randn(t.shape, generator=gen)
        elif name.endswith("bn.weight"):
            state[name] = 1.0 + 0.2 * torch.randn(t.shape, generator=gen)
        elif t.ndim >= 2:
            fan_in = t[0].numel()
            state[name] = torch.randn(t.shape, generator=gen) * (2.0 / fan_in) ** 0.5
        elif name.endswith(".g") or name.endswith("res_scale.scale") or name.endswith("gamma"):
            state[name] = 1.0 + 0.2 * torch.randn(t.shape, generator=gen)
        else:
            state[name] = 0.1 * torch.randn(t.shape, generator=gen)
    return state


def write(models_dir, version="v15", name="landmarks", seed: int = 7, **options) -> Path:
    path = Path(models_dir) / "dwpose" / "dw-ll_ucoco_384.pth"
    path.parent.mkdir(parents=True, exist_ok=True)
    ckpt = {"meta": {"mmengine_version": "0.7.4", "epoch": 270, "iter": 0, "note": "tiny test checkpoint"},
            "state_dict": seeded_state(seed)}
    torch.save(ckpt, path)
    return path
