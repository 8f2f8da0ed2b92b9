"""S3FD checkpoint in the published format: s3fd/s3fd-619a316812.pth, a bare state dict with the real keys.

S3FD's architecture is fixed (VGG16 trunk), so the file is real size (22.5 M parameters, about 86 MB). Weights are
seeded He-scaled noise (tests/tiny/rng.py: the same bits on every CPU); the classification heads are then scaled
and biased so that a few cells per frame score above 0.5 on high-contrast test frames (random detectors almost
never do), which gives a known pattern of detections to compare with the reference code. The same function feeds tools/golden/record_detect.py.
"""

from __future__ import annotations

from pathlib import Path

import torch

CONF_SCALE = 4.0  # multiplies the face-class conv weights of every head
CONF_BIAS = -2.0  # added to the face logit (background logit bias stays 0)
LOC_SCALE = 0.3  # shrinks the regression heads so boxes stay near their anchors
# fc7 / conv6_2 / conv7_2 have no L2Norm, so their random activations are ~100x larger: per head, a further
# (conf scale, face-logit bias, loc scale) that keeps their softmax away from saturation (calibrated once by hand).
# Set by hand for these draws: a flat grey frame gives no face, most synthetic face frames give a few boxes.
PER_HEAD = {"conv3_3_norm": (1.0, 0.0, 1.0), "conv4_3_norm": (1.0, 0.0, 1.0), "conv5_3_norm": (1.0, 0.0, 1.0),
            "fc7": (0.01, 0.0, 0.02), "conv6_2": (0.008, 0.0, 0.02), "conv7_2": (0.01, -2.0, 0.02)}


def seeded_state(seed: int = 11) -> dict:
    from musetalk_core.models.s3fd import S3FD

    from tiny.rng import Draw

    draw = Draw(seed)  # the same bits on every CPU (torch.randn is not)
    state = {}
    for name, t in S3FD().state_dict().items():
        if name.endswith("norm.weight"):
            state[name] = t.clone()  # the L2Norm scales 10 / 8 / 5
        elif t.ndim == 4:
            state[name] = draw.noise(t.shape, (2.0 / t[0].numel()) ** 0.5)
        else:
            state[name] = draw.noise(t.shape, 0.01)
    for key in [k for k in state if "_mbox_" in k]:
        conf_scale, face_bias, loc_scale = PER_HEAD[key.split("_mbox_")[0]]
        if "_mbox_loc" in key:
            state[key] = state[key] * (LOC_SCALE * loc_scale)
        elif key.endswith("weight"):
            state[key][-1] *= CONF_SCALE
            state[key] *= conf_scale
        else:
            state[key] *= conf_scale
            state[key][-1] += CONF_BIAS + face_bias
    return state


_CACHE = {}


def write(models_dir, version="v15", name="s3fd", seed: int = 11, **options) -> Path:
    path = Path(models_dir) / "s3fd" / "s3fd-619a316812.pth"
    path.parent.mkdir(parents=True, exist_ok=True)
    if seed not in _CACHE:
        _CACHE[seed] = seeded_state(seed)
    torch.save(_CACHE[seed], path)
    return path
