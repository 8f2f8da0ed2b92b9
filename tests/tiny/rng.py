"""Seeded weight noise that is the same bits on every machine.

torch.randn is not: for 16 values and more it takes a vectorised path (AVX2 / AVX-512) whose log/cos differ in the
last bits from the scalar path that ATEN_CPU_CAPABILITY=default (or an older CPU) takes, so the tiny weights, and
every golden recorded from them, would depend on the CPU. Here numpy's PCG64 gives uniform doubles from integer
operations alone, and each value is shifted and scaled in float64 (correctly rounded IEEE operations), then
rounded once to float32. Uniform noise with the requested standard deviation stands in for Gaussian noise.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch


class Draw:
    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)

    def uniform(self, shape: Sequence[int], low: float, high: float) -> torch.Tensor:
        u = self.rng.random(tuple(shape))
        return torch.from_numpy((low + (high - low) * u).astype(np.float32))

    def noise(self, shape: Sequence[int], std: float, mean: float = 0.0) -> torch.Tensor:
        """Zero-mean (or ``mean``) uniform noise with standard deviation ``std``."""
        half = math.sqrt(3.0) * std
        return self.uniform(shape, mean - half, mean + half)
