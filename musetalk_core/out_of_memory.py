"""Running out of memory, recognised and explained instead of a traceback.

Memory runs out in many shapes, depending on who asked for it: Python's ``MemoryError``, torch's
"DefaultCPUAllocator: can't allocate memory" / "CUDA out of memory" (RuntimeError, torch.OutOfMemoryError), a
shared library that cannot be mapped while it is imported ("failed to map segment from shared object"), ENOMEM
from FFmpeg (av.error.MemoryError), and EAGAIN from FFmpeg when the threads of its scaler or codec cannot get their
stacks (av.error.BlockingIOError: "Resource temporarily unavailable"). ``is_out_of_memory`` tells them apart from
other failures; ``out_of_memory_error`` makes the user's message: that memory ran out, at which stage, and what to
lower there. Nothing here imports torch or PyAV (it is used where an import itself failed).
"""

from __future__ import annotations

import errno
from typing import Optional

from .errors import MuseTalkError

_MESSAGES = ("can't allocate memory", "cannot allocate memory", "out of memory", "failed to map segment",
             "std::bad_alloc", "can't start new thread",
             "could not create a primitive")  # oneDNN (CPU convolutions) when its buffers cannot be allocated


class OutOfMemory(MuseTalkError, MemoryError):
    """Memory (or the threads that need it) ran out; the message names the stage and what to lower."""


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it was raised from) is memory running out."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if _is_oom(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, OutOfMemory) or isinstance(exc, MemoryError):  # av.error.MemoryError (ENOMEM) too
        return True
    if type(exc).__name__ == "OutOfMemoryError":  # torch.OutOfMemoryError / torch.cuda.OutOfMemoryError
        return True
    if isinstance(exc, OSError) and exc.errno == errno.ENOMEM:
        return True
    if isinstance(exc, BlockingIOError) and type(exc).__module__.startswith("av"):
        return True  # FFmpeg's EAGAIN outside a read loop: its worker threads could not be created
    if isinstance(exc, (RuntimeError, ImportError, OSError)):
        text = str(exc).lower()
        return any(m in text for m in _MESSAGES)
    return False


# what to lower, per stage (the CLI's progress stage names, the batch worker's task kinds, and the steps before)
_ADVICE = {
    "imports": "free memory (close other programs) or run on a machine with more memory: the libraries alone "
               "(torch, FFmpeg) need about 1 GB",
    "inputs": "free memory or use a shorter audio file (the audio track is held whole)",
    "models": "free memory (close other programs); on a GPU, --precision fp16 halves the networks",
    "audio": "free memory or use a shorter audio file",
    "faces": "lower --face-batch-size (e.g. 2) and --detector-scale (0.5 for 1080p/4K)",
    "vae encode": "lower --vae-batch-size (e.g. 2)",
    "lip-sync": "lower --batch-size (the UNet batch, e.g. 2) and --chunk-size (blend chunk, e.g. 4)",
    "prepare": "lower the job's face_batch_size / vae_batch_size and detector_scale",
    "render": "lower the job's batch_size and chunk_size",
    "join": "free memory (the job's audio track is held whole while the segments are joined)",
}
_STAGE_NAMES = {"imports": "loading the libraries", "inputs": "reading the inputs", "models": "loading the models",
                "audio": "encoding the audio", "faces": "face detection", "vae encode": "VAE encoding",
                "lip-sync": "lip-syncing (UNet, blend, H.264 encode)", "prepare": "preparing the job",
                "render": "rendering", "join": "joining the segments"}
_GENERAL = ("lower --batch-size, --face-batch-size, --vae-batch-size and --chunk-size (e.g. 2), and "
            "--detector-scale (0.5)")


def out_of_memory_error(stage: Optional[str], exc: BaseException, nothing_written: bool = True) -> OutOfMemory:
    """The user's message for ``exc`` (out of memory) during ``stage`` (a stage name above, or any text)."""
    where = _STAGE_NAMES.get(stage, stage) if stage else "the run"
    advice = _ADVICE.get(stage, _GENERAL)
    detail = _detail(exc)
    tail = " Nothing was written." if nothing_written else ""
    return OutOfMemory(f"memory ran out during {where} ({detail}). To fit: {advice}.{tail}")


def _detail(exc: BaseException) -> str:
    """A short account of the failed request: the size torch asked for, else the exception's first line."""
    import re

    text = str(exc).strip()
    asked = re.search(r"tried to allocate (\d+(?:\.\d+)?) ?(bytes|[KMGT]i?B)", text)
    if asked:
        number, unit = float(asked.group(1)), asked.group(2)
        if unit == "bytes":
            number, unit = number / 2 ** 20, "MiB"
        return f"{type(exc).__name__}: an allocation of {number:.0f} {unit} failed"
    line = (text.splitlines() or [""])[0]
    if len(line) > 160:
        line = line[:157] + "..."
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__
