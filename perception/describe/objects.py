"""How many separate objects each change region holds: "how many buildings" counts houses, not blobs.

Two new houses joined by a yard or a shadow are one connected region of the change mask. `count_objects`
reads each region's window of `change.tif`, keeps the region's own pixels (the 4-connected components of
the window's mask that its pixel polygon covers: the polygon alone, simplified to the pixel, would shave
border pixels and cut necks that are not there) and splits them with `change.objects.split_objects` (watershed on the distance transform),
the same split `bench change` scores as object F1. A region always holds at least one object.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.features import rasterize
from rasterio.windows import Window
from scipy import ndimage

from geodelta.contracts import Region
from geodelta.perception.describe.regions import pixel_polygons
from geodelta.perception.io.grid import Grid


def count_objects(regions: Sequence[Region], change_tif: Path, grid: Grid) -> list[Region]:
    """Copies of `regions` with `n_objects` set (see module docstring); one window read per region."""
    if not regions:
        return []
    # imported here: the watershed pulls in skimage.morphology / segmentation and scipy.spatial (~0.2 s), which
    # only a question about buildings needs, and tools/describe.py imports this module for every Assistant
    from geodelta.perception.change.objects import split_objects

    out = []
    with rasterio.open(change_tif) as ds:
        for r, geom in zip(regions, pixel_polygons(regions, grid), strict=True):
            c0, r0, c1, r1 = r.bbox_px
            mask = ds.read(1, window=Window(c0, r0, c1 - c0, r1 - r0)) == 1
            inside = rasterize([(geom, 1)], out_shape=mask.shape, transform=Affine.translation(c0, r0), fill=0,
                               dtype="uint8").astype(bool)
            lab, _ = ndimage.label(mask)  # 4-connected, as the polygons were traced (rasterio shapes)
            mine = np.isin(lab, np.unique(lab[inside & mask])) & mask
            # one px of background around the window: the distance transform then sees the region's edge as the whole
            # mask does (a region touches its bbox, and the edge of a window is not background to scipy)
            n = int(split_objects(np.pad(mine, 1)).max())
            out.append(r.model_copy(update={"n_objects": max(n, 1)}).with_geometry(r.geometry()))
    return out


def total_objects(regions: Sequence[Region]) -> int | None:
    """Sum of `n_objects` over the regions; None when they were not counted."""
    counts = [r.n_objects for r in regions]
    if not counts or any(c is None for c in counts):
        return None
    return sum(c for c in counts if c is not None)
