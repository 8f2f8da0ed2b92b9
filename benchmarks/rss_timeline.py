"""Resident memory over time, by stage, inside a benchmark's child process (``benchmarks/memory.py --timeline``).

A daemon thread reads ``VmRSS`` from /proc/self/status every ``MUSETALK_RSS_EVERY`` seconds (default 0.5) and
appends ``seconds stage rss_mb`` lines to the file named by ``MUSETALK_RSS_TIMELINE``; without that variable
nothing runs. Stages are named by ``mark(name)`` (the graph script calls it before each node) or, for the command
line, by the streaming core's progress stages (``mark_stages``). The parent summarises the file per stage: which
stage sets the peak, and whether memory grows while a stage runs over a long video.
"""

from __future__ import annotations

import os
import threading
import time

_state = {"stage": "start", "write": None}


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def mark(stage: str) -> None:
    """Name the stage that runs from now on; a sample is taken at once, so even a stage shorter than the sampling
    interval appears in the timeline."""
    _state["stage"] = stage.replace(" ", "_")
    if _state["write"] is not None:
        _state["write"]()


def start():
    """Start sampling when MUSETALK_RSS_TIMELINE names a file; returns ``mark``."""
    path = os.environ.get("MUSETALK_RSS_TIMELINE")
    if not path:
        return mark
    every = float(os.environ.get("MUSETALK_RSS_EVERY", "0.5"))
    t0 = time.perf_counter()
    out = open(path, "w", buffering=1)
    lock = threading.Lock()

    def write() -> None:
        with lock:
            out.write(f"{time.perf_counter() - t0:.1f} {_state['stage']} {_rss_mb():.1f}\n")

    def sample() -> None:
        while True:
            write()
            time.sleep(every)

    _state["write"] = write
    threading.Thread(target=sample, name="rss-timeline", daemon=True).start()
    return mark


def mark_stages() -> None:
    """Name the command line's stages after the streaming core's progress stages (audio, faces, ..., lip-sync)."""
    from musetalk_core import pipeline as streaming

    original = streaming._hooks

    def hooks(progress, stage, total):
        mark(stage)
        return original(progress, stage, total)

    streaming._hooks = hooks


def summarise(path: str) -> list:
    """Per stage, in order of first appearance: samples, seconds, first / max / last RSS (MB)."""
    stages: dict = {}
    with open(path) as fh:
        for line in fh:
            parts = line.split()
            if len(parts) != 3:
                continue
            t, stage, rss = float(parts[0]), parts[1], float(parts[2])
            row = stages.setdefault(stage, {"stage": stage, "from_s": t, "first_mb": rss, "max_mb": rss,
                                            "samples": 0})
            row["to_s"], row["last_mb"] = t, rss
            row["max_mb"] = max(row["max_mb"], rss)
            row["samples"] += 1
    return list(stages.values())
