"""Per-frame material of long videos kept on disk instead of in RAM (issue 13: bounded memory).

A 10-minute video has 15 000 frames; its 256x256 face crops alone are 2.9 GB and its blend masks several more. The
streaming pipeline writes them once, in order, to files in a private temporary folder and reads back the few rows a
batch needs. Plain reads and writes (not mmap), so the data sits in the OS page cache and never counts as the
process's memory.

- ``SpillFolder``: the temporary folder (ComfyUI's temp/ inside ComfyUI, ``tempfile``'s elsewhere). It is removed
  by ``close()``, when the last object using it is garbage-collected (ComfyUI dropping a cached node output), and at
  interpreter exit; a failed or interrupted stage closes it at once. ``SpillFolder(path=...)`` is a folder the caller
  owns instead (batch jobs keep per-video material there for other jobs and other worker processes): never removed
  by this object, and material spilled there can be pickled (only its file names travel; the receiving process
  reopens the files read-only, so a shared filesystem carries it between machines).
- ``SpilledArray``: a fixed-shape uint8 array of N rows on disk, indexed like a tensor (``a[idx]``, ``a[idx] = x``).
- ``SpilledMasks``: N variable-size square masks (or None), indexed like the list of tensors it replaces.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
import threading
import weakref
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..errors import InputError


class SpillFolder:
    """A private temporary folder for one stage's material; removed on close, garbage collection or exit.

    With ``path`` the folder is that one (created if needed) and belongs to the caller: it is never removed here,
    and the material in it can be pickled to another process."""

    def __init__(self, parent: Optional[os.PathLike] = None, prefix: str = "musetalk-", *,
                 path: Optional[os.PathLike] = None):
        if path is not None:
            self.path = Path(path)
            self.path.mkdir(parents=True, exist_ok=True)
            self._finalizer = None
            return
        if parent is not None:
            os.makedirs(parent, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
        self._finalizer = weakref.finalize(self, shutil.rmtree, str(self.path), True)

    def close(self) -> None:
        if self._finalizer is not None:
            self._finalizer()

    @property
    def closed(self) -> bool:
        return self._finalizer is not None and not self._finalizer.alive

    def __getstate__(self):
        if self._finalizer is not None:  # the owner would delete the files under the receiver's feet
            raise TypeError("material in a temporary SpillFolder cannot be pickled; spill it to "
                            "SpillFolder(path=...) to share it with other processes")
        return {"path": str(self.path)}

    def __setstate__(self, state) -> None:
        self.path = Path(state["path"])
        self._finalizer = None


def _indices(key: Any, n: int) -> List[int]:
    if isinstance(key, torch.Tensor):
        key = key.detach().cpu()
        if key.dtype == torch.bool:
            key = torch.nonzero(key, as_tuple=False).flatten()
        return [int(v) for v in key.reshape(-1).tolist()]
    if isinstance(key, slice):
        return list(range(*key.indices(n)))
    if isinstance(key, (list, tuple, np.ndarray, range)):
        return [int(v) for v in key]
    raise TypeError(f"unsupported index {type(key).__name__}")


def _runs(rows: Sequence[int]) -> List[Tuple[int, int, int]]:
    """(position in rows, first row, count) for each run of consecutive rows: one read per run."""
    out, i = [], 0
    while i < len(rows):
        j = i + 1
        while j < len(rows) and rows[j] == rows[j - 1] + 1:
            j += 1
        out.append((i, rows[i], j - i))
        i = j
    return out


class _File:
    """A read/write file with positioned I/O under a lock; disk-full becomes a clear InputError."""

    def __init__(self, folder: SpillFolder, name: str, mode: str = "w+b"):
        self.folder = folder  # keeps the folder alive while this file is in use
        self.name = name
        self.path = folder.path / name
        self._fh = open(self.path, mode)
        self._lock = threading.Lock()
        weakref.finalize(self, self._fh.close)

    def __getstate__(self):
        with self._lock:
            self._fh.flush()  # the receiver reads the file: everything written so far must be in it
        return {"folder": self.folder, "name": self.name}

    def __setstate__(self, state) -> None:
        try:
            self.__init__(state["folder"], state["name"], "rb")  # a receiver only reads the material
        except FileNotFoundError:
            raise InputError(f"Spilled material '{state['folder'].path / state['name']}' is gone: it lives in a "
                             "folder that every worker must see (a shared filesystem on a cluster).") from None

    def write(self, offset: int, data: bytes) -> None:
        with self._lock:
            try:
                self._fh.seek(offset)
                self._fh.write(data)
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    self.folder.close()
                    raise InputError(f"The disk holding the temporary folder '{self.folder.path.parent}' is full "
                                     "(MuseTalk keeps per-frame material of long videos there). Free some space "
                                     "or point TMPDIR (ComfyUI: --temp-directory) at a larger disk.") from None
                raise

    def read(self, offset: int, size: int) -> bytes:
        with self._lock:
            self._fh.flush()
            self._fh.seek(offset)
            data = self._fh.read(size)
        if len(data) < size:  # rows never written read as zeros, like a fresh tensor
            data = data + bytes(size - len(data))
        return data

    def resize(self, size: int) -> None:
        with self._lock:
            self._fh.truncate(size)


class SpilledArray:
    """(N, *row_shape) of one dtype on disk; ``a[indices]`` -> CPU tensor, ``a[indices] = values``.

    Rows are raw bytes, so any dtype round-trips exactly (uint8 crops and faces, float latents and audio windows
    in the model dtype, bfloat16 included)."""

    device = torch.device("cpu")

    def __init__(self, folder: SpillFolder, name: str, shape: Sequence[int], dtype: torch.dtype = torch.uint8):
        self.shape = torch.Size(int(v) for v in shape)
        self.dtype = dtype
        self.row_shape = tuple(self.shape[1:])
        self.itemsize = torch.empty((), dtype=dtype).element_size()
        self.row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * self.itemsize if self.row_shape \
            else self.itemsize
        self._file = _File(folder, name)
        self._file.resize(self.shape[0] * self.row_bytes)  # sparse: unwritten rows cost no disk

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def folder(self) -> SpillFolder:
        return self._file.folder

    def __len__(self) -> int:
        return int(self.shape[0])

    def numel(self) -> int:
        return int(np.prod(tuple(self.shape), dtype=np.int64))

    def __getitem__(self, key) -> torch.Tensor:
        single = isinstance(key, (int, np.integer))
        rows = [int(key)] if single else _indices(key, len(self))
        raw = bytearray(len(rows) * self.row_bytes)
        view = memoryview(raw)
        for pos, first, count in _runs(rows):
            if first < 0 or first + count > len(self):
                raise IndexError(f"row {first} out of range for {len(self)} rows")
            view[pos * self.row_bytes:(pos + count) * self.row_bytes] = \
                self._file.read(first * self.row_bytes, count * self.row_bytes)
        flat = torch.frombuffer(raw, dtype=torch.uint8) if raw else torch.empty(0, dtype=torch.uint8)
        tensor = flat.view(self.dtype).reshape(len(rows), *self.row_shape)
        return tensor[0] if single else tensor

    def __setitem__(self, key, value) -> None:
        single = isinstance(key, (int, np.integer))
        rows = [int(key)] if single else _indices(key, len(self))
        values = torch.as_tensor(value).detach().to("cpu", self.dtype).contiguous()
        values = values.reshape(len(rows), -1).view(torch.uint8)
        for pos, first, count in _runs(rows):
            self._file.write(first * self.row_bytes, values[pos:pos + count].numpy().tobytes())

    def to(self, *args, **kwargs) -> torch.Tensor:
        """The whole array as a tensor (for code written for tensors; avoid on long videos)."""
        return self[slice(None)].to(*args, **kwargs)


def store_in(folder: Optional[SpillFolder], name: str):
    """A ``store(shape, dtype)`` callable for the stages that accept one: a SpilledArray in ``folder``; None when
    there is no folder (the material stays in memory: the stages' default)."""
    if folder is None:
        return None
    return lambda shape, dtype: SpilledArray(folder, name, shape, dtype)


def spill_tensor(folder: SpillFolder, name: str, tensor: torch.Tensor) -> SpilledArray:
    """A tensor written to disk in chunks of rows (its memory can then be freed)."""
    out = SpilledArray(folder, name, tuple(tensor.shape), tensor.dtype)
    for start in range(0, int(tensor.shape[0]), 256):
        out[slice(start, start + 256)] = tensor[start:start + 256]
    return out


class SpilledMasks:
    """N square uint8 masks of varying side (or None) on disk, indexed like a list of tensors."""

    def __init__(self, folder: SpillFolder, name: str, n: int):
        self._file = _File(folder, name)
        self._offset = np.full(int(n), -1, dtype=np.int64)
        self._side = np.zeros(int(n), dtype=np.int64)
        self._end = 0

    def __len__(self) -> int:
        return int(self._offset.shape[0])

    def __setitem__(self, j: int, mask) -> None:
        if mask is None:
            self._offset[j] = -1
            return
        arr = np.ascontiguousarray(torch.as_tensor(mask).detach().cpu().numpy().astype(np.uint8, copy=False))
        if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
            raise ValueError(f"mask of frame {j} must be square, got {arr.shape}")
        self._file.write(self._end, arr.tobytes())
        self._offset[j], self._side[j] = self._end, arr.shape[0]
        self._end += arr.size

    def shape_of(self, j: int) -> Optional[Tuple[int, int]]:
        """The mask's shape without reading it (None when the frame has no mask)."""
        if self._offset[j] < 0:
            return None
        return (int(self._side[j]), int(self._side[j]))

    def __getitem__(self, j: int) -> Optional[torch.Tensor]:
        j = int(j)
        if self._offset[j] < 0:
            return None
        side = int(self._side[j])
        data = self._file.read(int(self._offset[j]), side * side)
        return torch.from_numpy(np.frombuffer(data, dtype=np.uint8).reshape(side, side).copy())

    def __iter__(self):
        return (self[j] for j in range(len(self)))


def mask_shape(masks, j: int) -> Optional[Tuple[int, ...]]:
    """Shape of masks[j] for a list of tensors or SpilledMasks, reading nothing from disk."""
    if isinstance(masks, SpilledMasks):
        return masks.shape_of(j)
    m = masks[j] if j < len(masks) else None
    return None if m is None else tuple(m.shape)
