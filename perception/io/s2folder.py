"""Sentinel-2 band folders: one folder of per-band files (…_B02.jp2/.tif …) read as one date.

Split from perception/io/reader.py (which dispatches here for directories) so that module keeps to the
single-file readers and the aligned pair.
"""

from __future__ import annotations

from pathlib import Path

from geodelta.errors import InputError
from geodelta.perception.io.bands import S2_BANDS, S2_FILE, date_from_dates_txt, date_from_tags, infer_roles
from geodelta.perception.io.checksum import file_sha256
from geodelta.perception.io.rasters import grid_of, has_valid_pixel, open_raster, probe_blocks
from geodelta.perception.io.reader import ImageSource

__all__ = ["open_s2_folder"]


def open_s2_folder(folder: Path) -> ImageSource:
    """Open a folder of Sentinel-2 band files (one per band, names ending in _B01.._B12/_B8A) as one date.

    The native grid, nodata and dtype come from B02 (10 m); the other bands are reprojected onto it at
    read time. The date comes from a `dates.txt` beside the folder, else from B02's tags or file name."""
    files: dict[str, Path] = {}
    for f in sorted(folder.iterdir()):
        if f.is_file() and (m := S2_FILE.search(f.name)):
            band = m.group(1).upper()
            if band in files:
                raise InputError(f"{folder} holds two files for Sentinel-2 band {band} ({files[band].name}, {f.name}): "
                                 "keep one file per band")
            files[band] = f
    if not files:
        raise InputError(f"{folder} is a folder without Sentinel-2 band files (names ending in _B01.._B12 or _B8A): "
                         "pass a raster file (GeoTIFF, PNG, JPEG, BMP, ENVI) or a folder of Sentinel-2 bands")
    if "B02" not in files:
        raise InputError(f"{folder} has no B02 band file: the 10 m grid is taken from B02, add it to the folder")
    names = [b for b in S2_BANDS if b in files]
    for band in names:
        with open_raster(files[band]) as src:
            probe_blocks(src, files[band])
            if band == "B02":
                grid, nodata, dtype, tags = grid_of(src), src.nodata, src.dtypes[0], src.tags()
                if not has_valid_pixel(src):
                    raise InputError(f"{files[band]} holds no valid pixel: pass a folder with data")
    dates_txt = folder.parent / "dates.txt"
    date = date_from_dates_txt(dates_txt.read_text(), folder.name) if dates_txt.is_file() else None
    paths = sorted(files.values())
    return ImageSource(
        paths=paths, kind="s2folder", grid=grid, band_names=names,
        band_roles=infer_roles(names, [], dtype, True, "s2folder"), nodata=nodata,
        date=date or date_from_tags(tags, files["B02"].name), dtype=dtype,
        sha256=[file_sha256(p) for p in paths], band_files=[(files[b], 1) for b in names],
    )
