"""iter_windows: cores tile the grid exactly once; halos are clipped; slices cut the core out of the read."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geodelta.perception.io.grid import Grid
from geodelta.perception.io.tiling import count_windows, iter_windows


@settings(max_examples=40, deadline=None)
@given(
    width=st.integers(1, 200),
    height=st.integers(1, 200),
    tile=st.integers(8, 128),
    halo=st.integers(0, 40),
)
def test_cores_cover_grid_once_and_slices_match(width: int, height: int, tile: int, halo: int) -> None:
    grid = Grid(width, height)
    cover = np.zeros((height, width), np.int32)
    scene = np.arange(width * height).reshape(height, width)
    n = 0
    for read, core, (rs, cs) in iter_windows(grid, tile, halo):
        n += 1
        r0, c0, h, w = int(read.row_off), int(read.col_off), int(read.height), int(read.width)
        assert r0 >= 0 and c0 >= 0 and r0 + h <= height and c0 + w <= width
        assert int(core.width) <= tile and int(core.height) <= tile
        # the halo is `halo` px wide except where the grid ends
        assert int(core.row_off) - r0 == min(halo, int(core.row_off))
        assert int(core.col_off) - c0 == min(halo, int(core.col_off))
        block = scene[r0 : r0 + h, c0 : c0 + w][rs, cs]
        cr, cc = int(core.row_off), int(core.col_off)
        np.testing.assert_array_equal(block, scene[cr : cr + int(core.height), cc : cc + int(core.width)])
        cover[cr : cr + int(core.height), cc : cc + int(core.width)] += 1
    assert (cover == 1).all()
    assert n == count_windows(grid, tile)


def test_rejects_bad_tile_and_halo() -> None:
    with pytest.raises(ValueError):
        list(iter_windows(Grid(10, 10), 0))
    with pytest.raises(ValueError):
        list(iter_windows(Grid(10, 10), 4, halo=-1))


def test_example_window_layout() -> None:
    read, core, (rs, cs) = list(iter_windows(Grid(10, 7), 4, halo=1))[4]  # second row, second column
    assert (core.col_off, core.row_off, core.width, core.height) == (4, 4, 4, 3)
    assert (read.col_off, read.row_off, read.width, read.height) == (3, 3, 6, 4)
    assert (rs, cs) == (slice(1, 4), slice(1, 5))
