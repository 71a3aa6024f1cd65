"""Time series: N > 2 dates -> pairwise change per consecutive interval, and when each pixel first changed.

Interval k (1..N-1) is date k -> date k+1, analysed by `run_detect` into `out_dir/interval_k/` (every
output of a pairwise `geodelta detect`, on date k's grid). `first_change.tif` is on the FIRST date's
grid (interval 1's grid): uint8 k = the first interval whose change.tif marks the pixel as changed
(nearest-neighbour resampled onto that grid), 0 = no interval marks it and all were observed there,
255 = never changed but not observed in every interval (nodata). Windowed throughout.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.warp import transform_geom
from rasterio.windows import Window

from geodelta.contracts import DetectOptions, Progress
from geodelta.errors import InputError
from geodelta.perception.describe import regions as describe
from geodelta.perception.io.grid import Grid
from geodelta.perception.io.rasters import ReaderCache, grid_of, read_side
from geodelta.perception.io.reader import ImageSource, open_image
from geodelta.perception.io.tiling import iter_windows
from geodelta.perception.render import outputs as render

NEVER, NODATA_U8 = 0, 255
MAX_SERIES_REGIONS = 50  # regions listed in summary.json (largest first); the raster holds them all
SERIES_OPTIONS = DetectOptions(method="irmad")  # a series defaults to IR-MAD on every interval (as before)


def parse_dates(text: str | None) -> list[str] | None:
    """'2009-08-18,2012-07-31,...' -> ISO dates; None when not given."""
    if not text:
        return None
    out = []
    for part in text.split(","):
        try:
            out.append(dt.date.fromisoformat(part.strip()).isoformat())
        except ValueError:
            raise InputError(f"--dates: {part.strip()!r} is not a date; give YYYY-MM-DD values separated by commas, "
                             "one per image, oldest first") from None
    return out


def series_dates(sources: list[ImageSource], dates: list[str] | None = None) -> list[str]:
    """One ISO date per image: `dates` if given, else each image's metadata date; must increase strictly."""
    if dates is not None and len(dates) != len(sources):
        raise InputError(f"--dates gives {len(dates)} dates for {len(sources)} images: give one per image, oldest first")
    found = list(dates) if dates is not None else [s.date for s in sources]
    missing = [s.name for s, d in zip(sources, found) if not d]
    if missing:
        raise InputError(f"no acquisition date found for {', '.join(missing)} (no date tag, no YYYYMMDD in the name): "
                         "pass --dates 2009-08-18,2012-07-31,... one per image, oldest first")
    ordered = [str(d) for d in found]  # every date is set (checked just above)
    for (d0, s0), (d1, s1) in zip(zip(ordered, sources), zip(ordered[1:], sources[1:])):
        if not d0 < d1:
            raise InputError(f"dates must increase: {s0.name} ({d0}) is not before {s1.name} ({d1}); "
                             "pass the images oldest first (or fix --dates)")
    return ordered


def first_change_raster(change_tifs: list[Path], grid: Grid, out_path: Path, tile: int = 1024) -> np.ndarray:
    """Write first_change.tif on `grid` from the intervals' change.tif files (any grids, nearest).

    Returns int64 (N,) pixel counts: [never, first changed in interval 1, ..., interval N-1] (nodata excluded)."""
    n = len(change_tifs)
    counts = np.zeros(n + 1, np.int64)
    cache = ReaderCache()
    try:
        with render.write_geotiff(out_path, grid, "uint8", NODATA_U8) as dst:
            for win, _, _ in iter_windows(grid, tile):
                h, w = int(win.height), int(win.width)
                first = np.zeros((h, w), np.uint8)
                observed = np.ones((h, w), bool)
                for k, tif in enumerate(change_tifs, start=1):
                    chg, valid = read_side([(tif, 1)], grid, win, Resampling.nearest, cache)
                    hit = valid & (chg[0] == 1) & (first == 0)
                    first[hit] = k
                    observed &= valid
                out = np.where((first == 0) & ~observed, NODATA_U8, first).astype(np.uint8)
                dst.write(out, 1, window=win)
                counts += np.bincount(out[out != NODATA_U8].ravel(), minlength=256)[: n + 1]
    finally:
        cache.close()
    return counts


def _ever_changed(first_tif: Path, grid: Grid, out_path: Path, tile: int = 1024) -> Path:
    """change-style raster (1 changed in some interval / 0 never / 255 nodata) for polygonising."""
    with rasterio.open(first_tif) as src, render.write_geotiff(out_path, grid, "uint8", NODATA_U8) as dst:
        for win, _, _ in iter_windows(grid, tile):
            f = src.read(1, window=win)
            dst.write(np.where(f == NODATA_U8, NODATA_U8, (f > 0)).astype(np.uint8), 1, window=win)
    return out_path


def interval_histograms(regions: list, first_tif: Path, grid: Grid) -> list[np.ndarray]:
    """Per region, int64 pixel counts of first_change values 0..254 inside it (nodata excluded).

    Regions may come from any analysis on any grid: their polygons (EPSG:4326, or pixels of `grid` when
    not georeferenced) are moved to first_tif's grid and rasterised over their bounding window."""
    from rasterio.features import geometry_mask
    from rasterio.windows import from_bounds
    from rasterio.windows import transform as window_transform
    from shapely.geometry import shape

    out = []
    with rasterio.open(first_tif) as src:
        full = Window(0, 0, src.width, src.height)
        for r in regions:
            geom = transform_geom("EPSG:4326", src.crs, r.polygon) if grid.georeferenced else r.polygon
            if grid.georeferenced:
                win = from_bounds(*shape(geom).bounds, transform=src.transform)
            else:
                c0, r0, c1, r1 = shape(geom).bounds
                win = Window(c0, r0, c1 - c0, r1 - r0)
            win = win.round_lengths(op="ceil").round_offsets(op="floor")
            try:
                win = win.intersection(full)
            except rasterio.errors.WindowError:  # outside the first date's footprint
                out.append(np.zeros(255, np.int64))
                continue
            vals = src.read(1, window=win)
            tr = window_transform(win, src.transform) if grid.georeferenced else Affine.translation(win.col_off, win.row_off)
            inside = geometry_mask([geom], out_shape=vals.shape, transform=tr, invert=True)
            v = vals[inside & (vals != NODATA_U8)]
            out.append(np.bincount(v, minlength=255)[:255].astype(np.int64))
    return out


def region_first_intervals(regions: list, first_tif: Path, grid: Grid) -> list[int]:
    """The most common first-change interval (1..N-1) inside each region; 0 when none."""
    return [int(h[1:].argmax()) + 1 if h[1:].any() else 0 for h in interval_histograms(regions, first_tif, grid)]


def run_series(
    images: Sequence[str | Path],
    out_dir: str | Path,
    options: DetectOptions = SERIES_OPTIONS,
    *,
    dates: list[str] | None = None,
    aoi: tuple[float, float, float, float] | None = None,
    bands: str | list[str] | None = None,
    progress: Progress | None = None,
    engine_opts: dict | None = None,
) -> dict[str, Any]:
    """`geodelta detect D1 D2 ... DN` (N > 2, oldest first): interval_k/ outputs, first_change.tif,
    timeline.png and summary.json in `out_dir`; returns the summary dict. Arguments as `run_detect`."""
    from geodelta.perception.pipeline.detect import run_detect
    from geodelta.perception.render.timeline import timeline_png

    if len(images) < 3:
        raise InputError(f"a time series needs at least three images, got {len(images)}: use `geodelta detect BEFORE AFTER` for two")
    out_dir = Path(out_dir)
    sources = [open_image(p) for p in images]
    iso = series_dates(sources, dates)
    intervals: list[dict[str, Any]] = []
    with ExitStack() as stack:
        opts = dict(engine_opts or {})
        if options.engine == "dask":  # one cluster for every interval
            from geodelta.perception.change.engines import dask_client

            opts = {"client": stack.enter_context(dask_client(**opts))}
        for k in range(1, len(sources)):
            sub = out_dir / f"interval_{k}"
            s = run_detect(sources[k - 1], sources[k], sub, options, aoi=aoi, bands=bands, progress=progress,
                           engine_opts=opts)
            intervals.append({
                "interval": k, "start": iso[k - 1], "end": iso[k], "dir": sub.name,
                "change": s["change"], "n_regions": len(s["regions"]), "quadruples": s["quadruples"], "caption": s["caption"],
            })
            if progress:
                progress("intervals", k, len(sources) - 1)

    change_tifs = [out_dir / iv["dir"] / "change.tif" for iv in intervals]
    with rasterio.open(change_tifs[0]) as src:
        grid = grid_of(src)
    first_tif = out_dir / "first_change.tif"
    counts = first_change_raster(change_tifs, grid, first_tif, options.tile)
    px_m2 = grid.pixel_area_m2
    for iv in intervals:
        k = iv["interval"]
        iv["first_change_px"] = int(counts[k])
        if px_m2:
            iv["first_change_m2"] = round(float(counts[k]) * px_m2, 2)

    ever_tif = _ever_changed(first_tif, grid, out_dir / "changed_any.tif", options.tile)
    regions = describe.regions_from_rasters(ever_tif, None, grid, min_area_m2=options.min_area_m2,
                                            min_area_px=options.min_area_px)
    firsts = region_first_intervals(regions[:MAX_SERIES_REGIONS], first_tif, grid)
    region_rows = [{
        "id": r.id, "area_m2": r.area_m2, "area_px": r.area_px, "sector": r.sector,
        "centroid_lonlat": r.centroid_lonlat, "first_interval": f,
        "between": [iso[f - 1], iso[f]] if f else None,
    } for r, f in zip(regions, firsts)]

    main = max(intervals, key=lambda iv: iv["first_change_px"])
    summary: dict[str, Any] = {
        "dates": iso,
        "images": [s.name for s in sources],
        "method": options.method,
        "engine": options.engine,
        "options": options.model_dump(mode="json"),
        "grid": {"crs": grid.crs.to_string() if grid.crs else None, "transform": list(grid.transform)[:6],
                 "width": grid.width, "height": grid.height},
        "intervals": intervals,
        "first_change": {
            "path": first_tif.name,
            "never_px": int(counts[0]),
            "by_interval_px": [int(c) for c in counts[1:]],
            "main_interval": main["interval"] if main["first_change_px"] else None,
            "n_regions": len(regions),
            "regions": region_rows,
        },
        "outputs": {"first_change": first_tif.name, "changed_any": ever_tif.name, "timeline": "timeline.png",
                    "intervals": [iv["dir"] for iv in intervals]},
    }
    timeline_png(summary, first_tif, out_dir / "timeline.png")
    render.summary_json(out_dir / "summary.json", summary)
    return summary
