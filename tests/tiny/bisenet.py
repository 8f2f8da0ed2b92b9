"""Seeded BiSeNet face-parsing weights in the published format: face-parse-bisent/79999_iter.pth, a bare state dict.

BiSeNet has one fixed architecture (~13.3 M parameters), so this is the real size. Random weights parse nothing
meaningful, so the weights are scaled to keep activations in range, and the final 1x1 classifier
(conv_out.conv_out.weight, 19 x 256) is tilted toward the classes the blend masks use (skin 1, nose 10, mouth 11,
lips 12/13, neck 14), so the label maps have large blobs of each and every mask mode produces non-trivial masks.

Everything is the same bits on every machine: the weights come from tests/tiny/rng.py (no torch.randn), and the
classifier is read from bisenet_head.npy next to this file (19 KB). That file was made once by ``calibrate_head``,
which needs a forward pass (whose last bits depend on the CPU's kernels), so it is not re-run by the tests:

    python tests/tiny/bisenet.py          # rewrites tests/tiny/bisenet_head.npy; then re-record the parsing golden

The golden recording (tools/golden/record_parsing.py) uses the very same ``seeded_state``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

if __package__ in (None, ""):  # run as a script: make ``tiny`` and ``musetalk_core`` importable
    sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parents[2])]

from tiny.rng import Draw  # noqa: E402

FILE = ("face-parse-bisent", "79999_iter.pth")
DEFAULT_SEED = 1234
HEAD_KEY = "conv_out.conv_out.weight"
HEAD_FILE = Path(__file__).with_name("bisenet_head.npy")
# per-class advantage, in spatial standard deviations of the class scores (see calibrate_head)
CLASS_TILT = {1: 2.0, 10: 1.0, 11: 0.8, 12: 1.0, 13: 1.0, 14: 0.8}


def random_state(seed: int = DEFAULT_SEED) -> dict:
    """Every tensor from the seeded draws, the classifier still random (calibrate_head replaces it)."""
    from musetalk_core.models.bisenet import BiSeNet

    draw = Draw(seed)
    state = {}
    for name, value in sorted(BiSeNet().state_dict().items()):
        if name.endswith("num_batches_tracked"):
            state[name] = torch.zeros_like(value)
        elif name.endswith("running_mean"):
            state[name] = draw.noise(value.shape, 0.05)
        elif name.endswith("running_var"):
            state[name] = draw.uniform(value.shape, 1.0, 1.1)
        elif value.ndim == 4:  # conv: He scale so activations neither vanish nor explode through 20 layers
            state[name] = draw.noise(value.shape, (2.0 / value[0].numel()) ** 0.5)
        elif name.endswith("weight"):  # BN gamma
            state[name] = draw.noise(value.shape, 0.1, mean=1.0)
        else:  # BN beta
            state[name] = draw.noise(value.shape, 0.05)
    return state


def seeded_state(seed: int = DEFAULT_SEED) -> dict:
    state = random_state(seed)
    if seed == DEFAULT_SEED:
        head = torch.from_numpy(np.load(HEAD_FILE))
        assert head.shape == state[HEAD_KEY].shape[:2], "bisenet_head.npy does not fit: run python tests/tiny/bisenet.py"
        state[HEAD_KEY] = head[:, :, None, None]
    else:  # only the default seed has a stored classifier: calibrate here (float result depends on the CPU)
        state[HEAD_KEY] = calibrate_head(state)[:, :, None, None]
    return {k: v.contiguous() for k, v in state.items()}


def calibrate_head(state: dict) -> torch.Tensor:
    """(19, 256) classifier whose 19 class scores vary across the image instead of one class winning everywhere.

    Random weights give each class a large constant offset. We run the net once on a fixed synthetic input, take the
    mean head feature f, make every class row orthogonal to f (so no class wins by offset alone) and then add
    ``CLASS_TILT[c]`` spatial standard deviations along f, so the blend classes cover large blobs.
    """
    from musetalk_core.models.bisenet import BiSeNet

    net = BiSeNet()
    net.load_state_dict(state)
    net.eval()
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 256), torch.linspace(0, 1, 256), indexing="ij")
    face = (((xx - 0.5) / 0.3) ** 2 + ((yy - 0.55) / 0.38) ** 2 < 1).float()
    rgb = torch.stack([0.3 + 0.4 * xx, 0.6 - 0.3 * yy, 0.2 + 0.5 * xx * yy], 0)
    rgb = rgb * (1 - face) + face * torch.tensor([0.86, 0.67, 0.55])[:, None, None]
    mean_rgb = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    probe = ((rgb - mean_rgb) / torch.tensor([0.229, 0.224, 0.225])[:, None, None])[None]
    with torch.no_grad():
        r8, c8, _ = net.cp(probe)
        feat = net.conv_out.conv(net.ffm(r8, c8))[0].flatten(1)  # (256, HW)
    mean = feat.mean(1)
    unit = mean / mean.norm()
    head = state[HEAD_KEY][:, :, 0, 0].clone()  # (19, 256)
    head = head - (head @ unit)[:, None] * unit[None]
    sigma = (head @ feat).std(1).mean()
    for cls, tilt in CLASS_TILT.items():
        head[cls] += tilt * sigma * mean / mean.norm() ** 2
    return head.contiguous()


def write(models_dir: Path, version: str = "v15", name: str = "face_parser", seed: int = DEFAULT_SEED,
          **options) -> Path:
    path = Path(models_dir).joinpath(*FILE)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(seeded_state(seed), str(path))
    return path


if __name__ == "__main__":
    head = calibrate_head(random_state(DEFAULT_SEED)).numpy().astype(np.float32)
    np.save(HEAD_FILE, head)
    print("wrote", HEAD_FILE, head.shape)
