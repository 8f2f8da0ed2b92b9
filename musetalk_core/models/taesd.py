"""TAESD's decoder (madebyollin/taesd, MIT): a tiny distilled stand-in for the sd-vae decoder, opt-in.

Published as ``taesd_decoder.safetensors`` (Hugging Face madebyollin/taesd; ``taesd_decoder.pth`` in the GitHub
repository holds the same tensors). The file is the state dict of a plain ``nn.Sequential`` whose index positions
are its key names (``1.weight``, ``3.conv.0.bias``...), so the module below keeps that exact layout:

    0 soft clamp tanh(z/3)*3   1 conv 4->64   2 ReLU   3-5 three blocks
    6 upsample x2   7 conv (no bias)   8-10 blocks   11 upsample   12 conv   13-15 blocks
    16 upsample   17 conv   18 block   19 conv 64->3

A block is relu(conv-relu-conv-relu-conv(x) + x), all 3x3 convolutions at 64 channels. 1.2 M parameters, 35 GFLOP
per 256x256 image against the sd-vae decoder's 622 (torch.utils.flop_counter). It reads the latents as the UNet
produces them (TAESD's latent scale is 1, not sd-vae's 0.18215) and returns RGB in about [0, 1] (not [-1, 1]).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .checkpoints import load_strict, read_state_dict

CHANNELS = 64
LATENT_CHANNELS = 4


def _conv(c_in: int, c_out: int, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=bias)


class SoftClamp(nn.Module):
    """Squashes latents smoothly into (-3, 3)."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(z / 3) * 3


class Block(nn.Module):
    """Residual block: three 3x3 convolutions with ReLUs between, added to the input, then ReLU."""

    def __init__(self, channels: int = CHANNELS):
        super().__init__()
        self.conv = nn.Sequential(_conv(channels, channels), nn.ReLU(), _conv(channels, channels), nn.ReLU(),
                                  _conv(channels, channels))
        self.skip = nn.Identity()  # same width in and out: the published file has no skip weights
        self.fuse = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fuse(self.conv(x) + self.skip(x))


def build_taesd_decoder() -> nn.Sequential:
    layers = [SoftClamp(), _conv(LATENT_CHANNELS, CHANNELS), nn.ReLU()]
    for stage in range(3):  # 32 -> 64 -> 128 -> 256 pixels
        layers += [Block(), Block(), Block()]
        layers += [nn.Upsample(scale_factor=2, mode="nearest"), _conv(CHANNELS, CHANNELS, bias=False)]
    layers += [Block(), _conv(CHANNELS, 3)]
    return nn.Sequential(*layers)


def load_taesd_decoder(weights_path: Path, dtype: torch.dtype = torch.float32) -> nn.Sequential:
    decoder = build_taesd_decoder()
    load_strict(decoder, read_state_dict(weights_path), weights_path, "TAESD decoder (taesd_decoder.safetensors)")
    return decoder.to(dtype=dtype).eval().requires_grad_(False)
