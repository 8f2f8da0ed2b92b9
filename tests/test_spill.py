"""Per-frame material on disk: indexing like the tensors it replaces, removal on close / garbage collection, and a
clear error when the disk is full."""

from __future__ import annotations

import errno
import gc

import numpy as np
import pytest
import torch

from musetalk_core.errors import InputError
from musetalk_core.io.spill import SpilledArray, SpilledMasks, SpillFolder, mask_shape


def test_array_reads_back_what_was_written_in_any_order(tmp_path):
    folder = SpillFolder(tmp_path)
    a = SpilledArray(folder, "crops.u8", (9, 4, 4, 3))
    data = torch.randint(0, 256, (9, 4, 4, 3), dtype=torch.uint8)
    a[torch.tensor([0, 1, 2])] = data[:3]
    a[[5, 3]] = data[[5, 3]]
    a[8] = data[8]
    assert torch.equal(a[torch.tensor([3, 5, 0, 1, 2, 8])], data[[3, 5, 0, 1, 2, 8]])
    assert torch.equal(a[8], data[8]) and not a[4].any()  # never written: zeros, like a fresh tensor
    assert a.shape == (9, 4, 4, 3) and a.ndim == 4 and a.dtype == torch.uint8
    assert torch.equal(a[torch.tensor([True] + [False] * 8)], data[:1])


def test_masks_keep_size_and_none(tmp_path):
    m = SpilledMasks(SpillFolder(tmp_path), "masks.u8", 4)
    a, b = np.arange(9, dtype=np.uint8).reshape(3, 3), np.full((5, 5), 7, np.uint8)
    m[0], m[2] = a, b
    assert np.array_equal(m[0].numpy(), a) and np.array_equal(m[2].numpy(), b) and m[1] is None and m[3] is None
    assert mask_shape(m, 2) == (5, 5) and mask_shape(m, 1) is None and len(m) == 4


def test_folder_removed_on_close_and_when_unused(tmp_path):
    folder = SpillFolder(tmp_path)
    a = SpilledArray(folder, "x.u8", (2, 3))
    a[0] = torch.ones(3, dtype=torch.uint8)
    path = folder.path
    assert path.exists()
    folder.close()
    assert not path.exists()
    b = SpilledArray(SpillFolder(tmp_path), "y.u8", (2, 3))
    path = b.folder.path
    del b
    gc.collect()
    assert not path.exists()


def test_disk_full_is_a_clear_error_and_removes_the_folder(tmp_path, monkeypatch):
    a = SpilledArray(SpillFolder(tmp_path), "x.u8", (2, 3))

    def full(data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(a._file._fh, "write", full)
    with pytest.raises(InputError, match="is full"):
        a[0] = torch.ones(3, dtype=torch.uint8)
    assert not a.folder.path.exists()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.int64])
def test_any_dtype_round_trips_exactly(tmp_path, dtype):
    from musetalk_core.io.spill import spill_tensor

    x = (torch.randn(5, 3, 2) * 100).to(dtype)
    a = spill_tensor(SpillFolder(tmp_path), "x.bin", x)
    assert a.dtype == dtype and torch.equal(a[[4, 0, 2]], x[[4, 0, 2]]) and torch.equal(a.to("cpu"), x)
