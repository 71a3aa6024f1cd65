"""The pixel grid a pair is aligned to: CRS, affine transform, shape, and what follows from them.

Every output raster and every polygon of one analysis lives on one `Grid` (the BEFORE grid).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from affine import Affine
from rasterio.crs import CRS

from geodelta.contracts import SECTORS

# Sector names row-major from the top-left; the frame is north-up (row 0 is north).
SECTOR_NAMES = (SECTORS[0:3], SECTORS[3:6], SECTORS[6:9])  # contracts.SECTORS as three rows


@dataclass(frozen=True)
class Grid:
    """A raster grid. `crs` is None for images without georeference (PNG, a bare TIFF)."""

    width: int
    height: int
    transform: Affine = Affine.identity()
    crs: CRS | None = None

    @property
    def georeferenced(self) -> bool:
        return self.crs is not None

    @property
    def shape(self) -> tuple[int, int]:
        return (self.height, self.width)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in CRS units (pixels when not georeferenced)."""
        t = self.transform
        x0, y0 = t * (0, 0)
        x1, y1 = t * (self.width, self.height)
        return (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))

    @property
    def resolution(self) -> tuple[float, float]:
        return (abs(self.transform.a), abs(self.transform.e))

    @cached_property
    def is_geographic(self) -> bool:
        return bool(self.crs is not None and self.crs.is_geographic)

    @cached_property
    def pixel_area_m2(self) -> float | None:
        """Area of one pixel in m² for projected CRSs in metres; None when geographic or unreferenced.

        Geographic grids need geodesic areas per polygon (see describe.py), not a constant.
        """
        if self.crs is None or self.is_geographic:
            return None
        factor = self.crs.linear_units_factor[1] if self.crs.linear_units_factor else 1.0
        return abs(self.transform.a * self.transform.e - self.transform.b * self.transform.d) * factor * factor

    def sector_of(self, col: float, row: float) -> str:
        """Which of the nine sectors a pixel position (col, row) falls in."""
        c = min(2, max(0, int(3 * col / self.width)))
        r = min(2, max(0, int(3 * row / self.height)))
        return SECTOR_NAMES[r][c]

    def sector_window(self, sector: str) -> tuple[int, int, int, int]:
        """Pixel box (col0, row0, col1, row1) of a sector."""
        for r, names in enumerate(SECTOR_NAMES):
            if sector in names:
                c = names.index(sector)
                return (
                    c * self.width // 3,
                    r * self.height // 3,
                    (c + 1) * self.width // 3 if c < 2 else self.width,
                    (r + 1) * self.height // 3 if r < 2 else self.height,
                )
        raise ValueError(f"unknown sector {sector!r}")

    def to_profile(self, **extra) -> dict:
        """A rasterio write profile for a raster on this grid."""
        profile = {
            "driver": "GTiff",
            "width": self.width,
            "height": self.height,
            "transform": self.transform,
            "crs": self.crs,
            "tiled": True,
            "blockxsize": 256,
            "blockysize": 256,
            "compress": "deflate",
        }
        profile.update(extra)
        return profile
