"""perception/io/tile_mosaic: window tiles plus a VRT read back as the one raster they came from."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window

from geodelta.perception.io import tile_mosaic
from geodelta.perception.io.grid import Grid
from geodelta.perception.io.tiling import iter_windows


@pytest.mark.parametrize("grid", [
    # OSCD's kind: EPSG:4326, whose authority axis order (lat, lon) a VRT must not swap
    Grid(300, 200, Affine(0.0001, 0, 54.3, 0, -0.0001, 24.5), CRS.from_epsg(4326)),
    Grid(300, 200, Affine(5.0, 0, 500_000.0, 0, -5.0, 5_200_000.0), CRS.from_epsg(26914)),
    Grid(300, 200),  # a PNG: pixel coordinates, no CRS
], ids=["lonlat", "utm", "pixels"])
def test_tiles_and_vrt_read_back_as_the_whole_raster(grid: Grid, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    whole = rng.integers(0, 64, size=grid.shape, dtype=np.uint8)
    cores = [core for _, core, _ in iter_windows(grid, 128, halo=0)]
    assert len(cores) == 6  # edge windows are narrower: the VRT places each by its own size
    for win in cores[::-1]:  # any order, as tasks finish
        tile_mosaic.write_tile(tmp_path / "t", grid, win, whole[win.toslices()], None)
    vrt = tile_mosaic.write_vrt(tmp_path / "x.tif", grid, tmp_path / "t", cores, "uint8", None, scale=1 / 63)
    with rasterio.open(vrt) as src:
        assert src.driver == "VRT" and src.shape == grid.shape and src.scales == (1 / 63,)
        assert src.crs == grid.crs and (grid.crs is None or src.transform == grid.transform)
        assert np.array_equal(src.read(1), whole)
        assert np.array_equal(src.read(1, window=Window(100, 50, 100, 100)), whole[50:150, 100:200])


def test_a_missing_tile_is_an_error_not_a_hole(tmp_path: Path) -> None:
    grid = Grid(256, 128)
    cores = [Window(0, 0, 128, 128), Window(128, 0, 128, 128)]
    tile_mosaic.write_tile(tmp_path / "t", grid, cores[0], np.ones((128, 128), np.uint8), 255)
    vrt = tile_mosaic.write_vrt(tmp_path / "x.vrt", grid, tmp_path / "t", cores, "uint8", 255)
    with rasterio.open(vrt) as src, pytest.raises(rasterio.errors.RasterioIOError):
        src.read(1)
