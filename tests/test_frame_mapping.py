"""Output -> source frame mapping: equals the reference's datagen + cycle lists; loop / once_hold / offset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from musetalk_core.errors import InputError
from musetalk_core.frame_mapping import source_indices

GOLDEN = Path(__file__).parent / "golden" / "generator" / "generator.npz"


@pytest.mark.parametrize("n", [1, 2, 5])
@pytest.mark.parametrize("t", [1, 7, 23])
def test_ping_pong_equals_reference_datagen_and_cycle(n, t):
    golden = np.load(GOLDEN)
    ours = source_indices(t, n, "ping_pong", 0)
    assert ours.dtype == torch.int64 and ours.shape == (t,)
    np.testing.assert_array_equal(ours.numpy(), golden[f"map_latent_n{n}_t{t}"])
    np.testing.assert_array_equal(ours.numpy(), golden[f"map_frame_n{n}_t{t}"])


def test_ping_pong_repeats_both_ends():
    assert source_indices(12, 3).tolist() == [0, 1, 2, 2, 1, 0, 0, 1, 2, 2, 1, 0]


def test_loop_and_once_hold():
    assert source_indices(7, 3, "loop").tolist() == [0, 1, 2, 0, 1, 2, 0]
    assert source_indices(6, 3, "once_hold").tolist() == [0, 1, 2, 2, 2, 2]


def test_offset_shifts_the_source_position():
    base = source_indices(40, 5, "ping_pong", 0)
    shifted = source_indices(37, 5, "ping_pong", 3)
    assert torch.equal(shifted, base[3:])
    assert source_indices(4, 3, "ping_pong", -1).tolist() == [0, 0, 1, 2]  # position -1 = last of the cycle
    assert source_indices(5, 3, "loop", -2).tolist() == [1, 2, 0, 1, 2]
    assert source_indices(5, 3, "once_hold", -2).tolist() == [0, 0, 0, 1, 2]
    assert source_indices(3, 3, "once_hold", 10).tolist() == [2, 2, 2]


def test_empty_output_and_bad_input():
    assert source_indices(0, 4).shape == (0,)
    with pytest.raises(InputError, match="source frames"):
        source_indices(5, 0)
    with pytest.raises(InputError, match="frame_mapping"):
        source_indices(5, 2, "zigzag")
