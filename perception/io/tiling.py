"""Square windows over a grid, with an optional halo, so peak memory follows the tile size.

Core windows tile the grid exactly once (row-major from the top-left, north up); the read window adds
`halo` pixels on every side, clipped to the grid, so neighbourhood filters see real context at tile
seams and no context past the scene edge.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from rasterio.windows import Window

from geodelta.perception.io.grid import Grid


def iter_windows(grid: Grid, tile: int, halo: int = 0) -> Iterator[tuple[Window, Window, tuple[slice, slice]]]:
    """Yield (read window incl. halo clipped to the grid, core window, (row slice, col slice) of the core
    inside the array read with the read window). Windows are in pixels of `grid`, integer offsets."""
    if tile < 1:
        raise ValueError(f"tile must be >= 1 pixel, got {tile}")
    if halo < 0:
        raise ValueError(f"halo must be >= 0 pixels, got {halo}")
    for row0 in range(0, grid.height, tile):
        row1 = min(row0 + tile, grid.height)
        r0, r1 = max(0, row0 - halo), min(grid.height, row1 + halo)
        for col0 in range(0, grid.width, tile):
            col1 = min(col0 + tile, grid.width)
            c0, c1 = max(0, col0 - halo), min(grid.width, col1 + halo)
            read = Window(c0, r0, c1 - c0, r1 - r0)
            core = Window(col0, row0, col1 - col0, row1 - row0)
            yield read, core, (slice(row0 - r0, row1 - r0), slice(col0 - c0, col1 - c0))


def usable_cpus() -> int:
    """CPUs this process may use (its affinity mask, else every CPU): how many windows to read at once."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def in_strips(windows: list[tuple[Window, Window, tuple[slice, slice]]], strip: int) -> list[tuple[Window, Window, tuple[slice, slice]]]:
    """`iter_windows`' windows in vertical strips `strip` px wide (by the core's column), left to right, each strip
    top to bottom: a reader then needs a strip's width of file blocks cached, not the scene's (engines.STRIP_PX)."""
    if strip < 1:
        raise ValueError(f"strip must be >= 1 pixel, got {strip}")
    return sorted(windows, key=lambda w: (int(w[1].col_off) // strip, int(w[1].row_off), int(w[1].col_off)))


def count_windows(grid: Grid, tile: int) -> int:
    """How many windows `iter_windows(grid, tile)` yields (for progress bars)."""
    return -(-grid.height // tile) * -(-grid.width // tile)
