"""Timing with warm-up, repetitions, median and spread, and peak memory (process RSS sampled; CUDA peak allocated)."""

from __future__ import annotations

import os
import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch


def _rss_bytes() -> int:
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except Exception:  # noqa: BLE001 - psutil is optional: fall back to /proc
        try:
            with open("/proc/self/statm") as fh:
                return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            return 0


class RSSPeak:
    """Samples the process RSS in a thread every ``interval`` s and keeps the maximum."""

    def __init__(self, interval: float = 0.005):
        self.interval = interval
        self.start = self.peak = 0
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def __enter__(self):
        self.start = self.peak = _rss_bytes()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, _rss_bytes())

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak = max(self.peak, _rss_bytes())
        return False


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps" and hasattr(torch, "mps"):
        torch.mps.synchronize()


@dataclass
class Measurement:
    units: int  # frames processed per call
    times_s: list = field(default_factory=list)
    peak_rss_mb: float = 0.0
    rss_increase_mb: float = 0.0
    peak_vram_mb: Optional[float] = None
    error: Optional[str] = None

    @property
    def median_s(self) -> Optional[float]:
        return statistics.median(self.times_s) if self.times_s else None

    @property
    def fps(self) -> Optional[float]:
        m = self.median_s
        return self.units / m if m else None

    def as_dict(self) -> dict:
        m = self.median_s
        d = {"frames": self.units, "median_s": m, "fps": self.fps,
             "min_s": min(self.times_s) if self.times_s else None,
             "max_s": max(self.times_s) if self.times_s else None,
             "spread_pct": (100.0 * (max(self.times_s) - min(self.times_s)) / m) if m else None,
             "repeats": len(self.times_s), "times_s": self.times_s,
             "peak_rss_mb": round(self.peak_rss_mb, 1), "rss_increase_mb": round(self.rss_increase_mb, 1),
             "peak_vram_mb": None if self.peak_vram_mb is None else round(self.peak_vram_mb, 1)}
        if self.error:
            d["error"] = self.error
        return d


def measure(fn: Callable[[], object], units: int, device: torch.device, warmup: int = 1, repeats: int = 3) -> Measurement:
    """Run ``fn`` ``warmup`` times untimed, then ``repeats`` times timed (synchronised); memory peaks over the timed runs."""
    result = Measurement(units=int(units))
    for _ in range(warmup):
        fn()
        synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base_vram = torch.cuda.memory_allocated(device)
    with RSSPeak() as rss:
        for _ in range(repeats):
            synchronize(device)
            t0 = time.perf_counter()
            out = fn()
            synchronize(device)
            result.times_s.append(time.perf_counter() - t0)
            del out
    result.peak_rss_mb = rss.peak / 2**20
    result.rss_increase_mb = max(0, rss.peak - rss.start) / 2**20
    if device.type == "cuda":
        result.peak_vram_mb = torch.cuda.max_memory_allocated(device) / 2**20
        result.vram_increase = (torch.cuda.max_memory_allocated(device) - base_vram) / 2**20
    return result
