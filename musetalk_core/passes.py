"""How many images one network pass gets, per device.

A node's batch_size is how much work is handed over at a time (progress, interrupt and memory granularity). On a
GPU one batch is one pass. On a CPU the VAE's 256x256 layers hold 32 MiB of activations per image and channel
block; a pass of several images no longer fits in the cache and gets slower per image, so the CPU splits a batch
into smaller passes. Measured on 2 cores, real-size sd-vae-ft-mse and MuseTalk v1.5 UNet, 8 images
(`python -m benchmarks.passes`; BENCHMARKS.md, "CPU: pass sizes"):

    VAE encoder  pass 1: 8.97 s   pass 2: 9.29 s   pass 8: 11.82 s   -> 1 per pass
    VAE decoder  pass 1: 17.99 s  pass 2: 15.94 s  pass 8: 18.29 s   -> 2 per pass
    UNet         pass 1: 11.58 s  pass 2: 9.21 s   pass 8: 6.42 s    -> the whole batch (weights dominate)

One image per encoder pass is also what the reference does (two batch-1 encodes per frame), so on the CPU the
latents are the reference's bit for bit.
"""

from __future__ import annotations

from typing import Callable, Iterator

import torch

CPU_PASS_SIZE = {"vae_encoder": 1, "vae_decoder": 2}


def pass_size(network: str, device: torch.device, batch: int) -> int:
    """Images per forward pass of `network` on `device` for a batch of `batch` images."""
    if torch.device(device).type == "cpu" and network in CPU_PASS_SIZE:
        return max(1, min(int(batch), CPU_PASS_SIZE[network]))
    return max(1, int(batch))


def in_passes(network: str, x: torch.Tensor, forward: Callable[[torch.Tensor], torch.Tensor]) -> Iterator:
    """forward() over x split along dim 0 into this device's passes for `network`; yields each pass's output."""
    size = pass_size(network, x.device, x.shape[0])
    for start in range(0, x.shape[0], size):
        yield forward(x[start:start + size])
