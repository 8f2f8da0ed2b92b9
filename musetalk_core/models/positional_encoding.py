"""The sinusoidal positional encoding MuseTalk adds to the 50 audio tokens before the UNet (reference §2.4)."""

from __future__ import annotations

import math

import torch


def sinusoid_table(length: int = 5000, d_model: int = 384) -> torch.Tensor:
    """pe[p, 2i] = sin(p * exp(-2i ln(10000)/d)), pe[p, 2i+1] = cos(same); built in fp32 like the reference."""
    position = torch.arange(0, length, dtype=torch.float32).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
    table = torch.zeros(length, d_model)
    table[:, 0::2] = torch.sin(position * div_term)
    table[:, 1::2] = torch.cos(position * div_term)
    return table


class PositionalEncoding(torch.nn.Module):
    """``x + pe[:S]`` for x of shape (B, S, d_model). No learned weights; the buffer follows ``.to(dtype)``."""

    def __init__(self, d_model: int = 384, max_len: int = 5000):
        super().__init__()
        self.register_buffer("pe", sinusoid_table(max_len, d_model).unsqueeze(0), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pe[:, : x.shape[1], :].to(x.device)
