"""The refine stage: refine change.tif tile by tile with a halo and polygonise the refined mask."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import rasterio

from geodelta.contracts import NODATA_U8, Region
from geodelta.errors import InputError
from geodelta.perception.describe import regions as describe
from geodelta.perception.io.reader import AlignedPair
from geodelta.perception.io.tiling import iter_windows
from geodelta.perception.refine.registry import Refiner
from geodelta.perception.refine.scene import HALO, scene_stats
from geodelta.perception.render.outputs import write_geotiff


def refine_stage(pair: AlignedPair, change_tif: Path, prob_tif: Path | None, out_dir: Path, refiner: Refiner, *,
                 tile: int = 1024, min_area_m2: float = 0.0, min_area_px: int = 16,
                 progress: Callable[[str, int, int], None] | None = None) -> tuple[Path, list[Region]]:
    """Refine change.tif tile by tile (with a HALO), write `out_dir/change_refined.tif` (same 1/0/255
    convention and grid), re-polygonise it and stamp `refined_by` on every region (largest first)."""
    grid = pair.grid
    out_dir = Path(out_dir)
    out = out_dir / "change_refined.tif"
    roles = pair.band_roles
    rgb = (roles["red"], roles["green"], roles["blue"]) if all(r in roles for r in ("red", "green", "blue")) else None
    with rasterio.open(change_tif) as src:
        if (src.width, src.height) != (grid.width, grid.height):
            raise InputError(f"{change_tif} is {src.width}x{src.height} px but the scene is {grid.width}x{grid.height}: "
                             "refine the change raster of this scene's analysis")
    scene = scene_stats(pair, change_tif, tile)
    windows = list(iter_windows(grid, tile, halo=HALO))
    with rasterio.open(change_tif) as src, write_geotiff(out, grid, "uint8", NODATA_U8) as dst:
        for i, (read_win, core_win, core) in enumerate(windows):
            c = src.read(1, window=read_win)
            a, b, valid = pair.read(read_win)
            valid &= c != NODATA_U8
            coarse = c == 1
            if coarse[core].any():
                refined = refiner.refine_mask(a, b, coarse, valid, rgb, core=core, scene=scene)
            else:
                refined = coarse
            dst.write(np.where(valid, refined, NODATA_U8).astype(np.uint8)[core], 1, window=core_win)
            if progress:
                progress("refine", i + 1, len(windows))
    regions = describe.regions_from_rasters(out, prob_tif, grid, min_area_m2=min_area_m2,
                                            min_area_px=min_area_px)
    return out, [r.model_copy(update={"refined_by": refiner.name}) for r in regions]
