"""Cloud-Optimized GeoTIFF writers for the output rasters (change.tif, change_prob.tif).

The change engines write tiled GeoTIFFs window by window (GDAL's COG driver cannot be written
block by block); `finalise_change_rasters` then rewrites both as COGs in place with GDAL's COG driver
(internal 512 px tiles, overviews down to one tile, ZSTD level 9, compression on every CPU; a
horizontal predictor for the score, none for the mask, whose class codes it only makes bigger:
measured on a 4000 px NAIP mosaic, mask 1.36 MB without / 1.45 MB with, score 12.2 MB with /
14.9 MB without, DEFLATE 15.2 MB).

change_prob becomes uint8 in 64 steps: stored = round(63 p), and the band's scale (1/63) and offset (0) say so
(GDAL / QGIS / rasterio show p = stored * scale + offset). A step of 1/63 (at most 0.008 off) is far below what
the masks are cut at (0.5) and below a change model's calibration error; on the 4000 px NAIP mosaic (learned
model, 4,729 regions) it moved region confidences by at most 0.005 (mean 0.0008) against 256 steps, and made the
score COG 6.8 instead of 10.8 MiB (the whole detect output 1.32 -> 1.07 bytes per input pixel).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.errors import NotGeoreferencedWarning

PROB_LEVELS = 63  # change_prob.tif stores round(63 p): 64 steps (see module docstring)
PROB_SCALE = 1.0 / PROB_LEVELS  # p = stored * PROB_SCALE (offset 0), as the band's scale says
_BLOCK = 512  # px, COG tile size (GDAL's default)


def cog_options(resampling: str, predictor: bool, threads: str = "ALL_CPUS") -> dict[str, str]:
    """GDAL COG creation options: ZSTD (optionally with a predictor), overviews with `resampling`, `threads`
    compression threads (default every CPU).

    NEAREST keeps the class codes of a mask exact in the overviews (1 change / 0 / 255 nodata);
    AVERAGE suits a continuous score."""
    return {
        "COMPRESS": "ZSTD",
        "PREDICTOR": "YES" if predictor else "NO",
        "LEVEL": "9",
        "BLOCKSIZE": str(_BLOCK),
        "OVERVIEWS": "IGNORE_EXISTING",
        "OVERVIEW_RESAMPLING": resampling,
        "RESAMPLING": resampling,
        "NUM_THREADS": threads,
        "BIGTIFF": "IF_SAFER",
    }


def to_cog(src: Path, dst: Path, *, resampling: str = "NEAREST", predictor: bool = False, threads: str = "ALL_CPUS") -> Path:
    """Copy raster `src` to `dst` as a COG (GDAL COG driver; `dst` may be `src`: written aside, then renamed)."""
    src, dst = Path(src), Path(dst)
    tmp = dst.with_name(f".{dst.name}.cog.tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        rasterio.shutil.copy(src, tmp, driver="COG", **cog_options(resampling, predictor, threads))
    os.replace(tmp, dst)
    return dst


def quantise_prob(p: np.ndarray) -> np.ndarray:
    """float probabilities (0..1, NaN as 0) -> uint8 round(63 p): what change_prob.tif stores."""
    return np.rint(np.clip(np.nan_to_num(p), 0.0, 1.0) * PROB_LEVELS).astype(np.uint8)


def prob_to_uint8(src: Path, dst: Path, tile: int = 2048) -> Path:
    """float32 probabilities (0..1) -> uint8 round(63 p) on the same grid, scale/offset set, window by window."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(src) as s:
            profile = s.profile | {"dtype": "uint8", "nodata": None, "compress": "none", "tiled": True,
                                   "blockxsize": _BLOCK, "blockysize": _BLOCK}
            with rasterio.open(dst, "w", **profile) as d:
                d.scales, d.offsets = (PROB_SCALE,), (0.0,)
                for r0 in range(0, s.height, tile):
                    win = rasterio.windows.Window(0, r0, s.width, min(tile, s.height - r0))
                    p = s.read(1, window=win)
                    d.write(quantise_prob(p), 1, window=win)
    return dst


def is_uint8_prob(path: Path) -> bool:
    with rasterio.open(path) as ds:
        return ds.dtypes[0] == "uint8"


def finalise_change_rasters(change_tif: Path, prob_tif: Path, to: tuple[Path, Path] | None = None,
                            threads: str = "ALL_CPUS") -> tuple[Path, Path]:
    """The engine's change.tif and change_prob.tif as COGs (prob as scaled uint8): in place, or written to the
    paths `to` (the sources stay as they are), with `threads` compression threads."""
    dst_change, dst_prob = to or (change_tif, prob_tif)
    to_cog(change_tif, dst_change, resampling="NEAREST", threads=threads)
    if is_uint8_prob(prob_tif):
        to_cog(prob_tif, dst_prob, resampling="AVERAGE", predictor=True, threads=threads)
    else:
        work = Path(dst_prob).with_name(f".{Path(dst_prob).name}.u8.tif")
        try:
            prob_to_uint8(prob_tif, work)
            to_cog(work, dst_prob, resampling="AVERAGE", predictor=True, threads=threads)
        finally:
            work.unlink(missing_ok=True)
    return Path(dst_change), Path(dst_prob)


def cog_layout_errors(path: Path) -> list[str]:
    """What keeps `path` from being a valid COG, in GDAL's own terms (empty list: valid).

    GDAL >= 3.8 reports the COG layout check in the image structure metadata (LAYOUT=COG), and
    warns in `gdalinfo` when the IFDs or tiles are out of order; here: LAYOUT, tiling, overviews."""
    errors = []
    with rasterio.open(path) as ds:
        layout = ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT")
        if layout != "COG":
            errors.append(f"IMAGE_STRUCTURE LAYOUT is {layout!r}, not 'COG'")
        if not ds.profile.get("tiled"):
            errors.append("not tiled")
        if max(ds.width, ds.height) > _BLOCK and not ds.overviews(1):
            errors.append("no overviews")
    return errors


__all__ = ["PROB_LEVELS", "PROB_SCALE", "cog_layout_errors", "cog_options", "finalise_change_rasters", "prob_to_uint8", "quantise_prob", "to_cog"]
