"""Seeded BiSeNet face-parsing weights in the published format: face-parse-bisent/79999_iter.pth, a bare state dict.

BiSeNet has one fixed architecture (~13.3 M parameters), so this is the real size. Random weights parse nothing
meaningful; ``seeded_state`` scales them so activations stay in range and tilts the classifier toward the classes
the blend masks use (skin 1, nose 10, mouth 11, lips 12/13, neck 14), so the label maps have large blobs of each and
every mask mode produces non-trivial masks. The golden recording uses the very same function and seed.
"""

from __future__ import annotations

from pathlib import Path

import torch

FILE = ("face-parse-bisent", "79999_iter.pth")
DEFAULT_SEED = 1234
# per-class advantage, in spatial standard deviations of the class scores (see _balance_classifier)
CLASS_TILT = {1: 2.0, 10: 1.0, 11: 0.8, 12: 1.0, 13: 1.0, 14: 0.8}


def seeded_state(seed: int = DEFAULT_SEED) -> dict:
    from musetalk_core.models.bisenet import BiSeNet

    net = BiSeNet()
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for name, value in sorted(net.state_dict().items()):
        if name.endswith("num_batches_tracked"):
            state[name] = torch.zeros_like(value)
        elif name.endswith("running_mean"):
            state[name] = 0.05 * torch.randn(value.shape, generator=gen)
        elif name.endswith("running_var"):
            state[name] = 1.0 + 0.1 * torch.rand(value.shape, generator=gen)
        elif value.ndim == 4:  # conv: He-normal so activations neither vanish nor explode through 20 layers
            fan_in = value[0].numel()
            state[name] = torch.randn(value.shape, generator=gen) * (2.0 / fan_in) ** 0.5
        elif name.endswith("weight"):  # BN gamma
            state[name] = 1.0 + 0.1 * torch.randn(value.shape, generator=gen)
        else:  # BN beta
            state[name] = 0.05 * torch.randn(value.shape, generator=gen)
    _balance_classifier(state, gen)
    return {k: v.contiguous() for k, v in state.items()}


def _balance_classifier(state: dict, gen: torch.Generator) -> None:
    """Make the 19 class scores vary across the image instead of one class winning everywhere.

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
    head = state["conv_out.conv_out.weight"][:, :, 0, 0]  # (19, 256)
    head = head - (head @ unit)[:, None] * unit[None]
    sigma = (head @ feat).std(1).mean()
    for cls, tilt in CLASS_TILT.items():
        head[cls] += tilt * sigma * mean / mean.norm() ** 2
    state["conv_out.conv_out.weight"] = head[:, :, None, None].contiguous()


def write(models_dir: Path, version: str = "v15", name: str = "face_parser", seed: int = DEFAULT_SEED,
          **options) -> Path:
    path = Path(models_dir).joinpath(*FILE)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(seeded_state(seed), str(path))
    return path
