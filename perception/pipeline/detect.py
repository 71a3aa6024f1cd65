"""The perception pipeline without the agent: pair -> change rasters -> regions -> quadruples -> maps.

`geodelta detect` runs `run_detect`; the agent's tools call the stages one by one (`detect_stage`,
`describe_stage`, `render_stage`) so each tool call produces one audited result.
"""

from __future__ import annotations

import inspect
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio

from geodelta.contracts import ChangeQuery, ChangeTotals, DetectOptions, MethodInfo, Progress, Quadruple, Region, Summary
from geodelta.perception import heap
from geodelta.perception.change import engines
from geodelta.perception.change import maskers as change
from geodelta.perception.describe import caption as captioning
from geodelta.perception.describe import regions as describe
from geodelta.perception.describe.pieces import PieceCollector
from geodelta.perception.io.grid import Grid
from geodelta.perception.io.rasters import block_cache, reader_warnings_held
from geodelta.perception.io.reader import AlignedPair, ImageSource, open_pair
from geodelta.perception.render import cog, webmap
from geodelta.perception.render import outputs as render

# progress(stage, done, total): the CLI shows it as a rich bar, the agent streams it as events.

THUMB_SIZE = 1024  # px, longest side of the overlay / map thumbnails
# Small components are removed per tile only up to the size the tile halo can see whole
# (change.halo_for(radius=1, min_pixels=24) <= change.HALO); larger minimum areas are applied
# exactly to the polygons after stitching (describe.regions_from_rasters).
MAX_TILE_MIN_PIXELS = 24
SUMMARY_REGIONS = 100  # regions (largest first) and region ids per quadruple kept in summary.json


DEFAULT_OPTIONS = DetectOptions()


@dataclass
class Detection:
    """What the change stage left on disk, plus the regions found in it."""

    out_dir: Path
    grid: Grid
    method: str
    params: dict[str, Any]
    change_tif: Path
    prob_tif: Path
    regions: list[Region]
    changed_px: int
    valid_px: int
    timings: dict[str, float] = field(default_factory=dict)
    options: DetectOptions = DEFAULT_OPTIONS  # what the detection ran with (refine re-polygonises with the same)


def detect_stage(
    pair: AlignedPair,
    out_dir: Path,
    options: DetectOptions = DEFAULT_OPTIONS,
    *,
    progress: Progress | None = None,
    engine_opts: dict | None = None,
    thumbnails: bool = False,
) -> Detection:
    """Fit the masker on a scene-wide sample, score tile by tile, write change.tif / change_prob.tif.

    Peak memory follows `options.tile` (plus the masker's halo), not the scene size. `options.engine` ("local"
    or "dask", see engines.py) runs the windows, with `engine_opts` (scheduler, workers, client);
    `options.masker_opts` go to the masker (e.g. `weights` of the learned model), `options.device`
    (auto|cpu|cuda) to maskers that run a torch model (learned, auto): passed down, never read from the environment.
    `thumbnails`: also read the pair's render thumbnails (pair.rgb) while polygonising, for a render that follows.
    GDAL's block cache is bounded to `options.gdal_cache_mb` meanwhile (contracts.GDAL_CACHE_MB says why).
    """
    with block_cache(options.gdal_cache_mb):
        return _detect_stage(pair, out_dir, options, progress, engine_opts, thumbnails)


def _detect_stage(pair: AlignedPair, out_dir: Path, options: DetectOptions, progress: Progress | None,
                  engine_opts: dict | None, thumbnails: bool) -> Detection:
    out_dir.mkdir(parents=True, exist_ok=True)
    grid = pair.grid
    masker = _masker(pair, options)
    timings: dict[str, float] = {}
    run_change = engines.get_engine(options.engine)
    # Components smaller than this are removed per tile (with halo); regions crossing tiles are
    # measured again after polygonising, so the final size filter is exact.
    min_px = _min_pixels(grid, options.min_area_m2, options.min_area_px)
    change_tif, prob_tif = out_dir / "change.tif", out_dir / "change_prob.tif"
    # The engine writes working files; a helper thread turns them into the COGs while this one polygonises them.
    work = (out_dir / ".change.work.tif", out_dir / ".change_prob.work.tif")
    # An engine that polygonises on its workers (dask) fills a collector; the regions are then only stitched here.
    collector = PieceCollector(grid.width, grid.height) if "collector" in inspect.signature(run_change).parameters else None

    def side_work() -> float:
        """COGs (GDAL compresses without the GIL), then the thumbnails render will draw (decimated reads)."""
        t = time.perf_counter()
        # change_prob as scaled uint8; one compression thread, so polygonising keeps a CPU to itself (measured on
        # the 4000 px mosaic: the COGs took as long on one thread, and detect was 0.7 s faster in 3 of 3 pairs)
        cog.finalise_change_rasters(*work, to=(change_tif, prob_tif), threads="1")
        cog_s = time.perf_counter() - t
        if thumbnails:
            pair.rgb("before", THUMB_SIZE)
            pair.rgb("after", THUMB_SIZE)
        return cog_s

    closing: list[threading.Thread] = []  # a LocalCluster closing while this thread polygonises
    try:
        with engines.started(options.engine, engine_opts, masker, closing) as resolve:  # a Dask cluster starts while the masker fits
            t0 = time.perf_counter()
            a_s, b_s = pair.sample()
            params = masker.fit(a_s, b_s)
            timings["fit_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            opts = resolve()
            timings["engine_start_s"] = time.perf_counter() - t0  # waiting for the cluster after the fit
            t0 = time.perf_counter()
            # an engine with its own processes bounds their caches too (dask: on the workers, per task)
            cache = {"cache_mb": options.gdal_cache_mb} if "cache_mb" in inspect.signature(run_change).parameters else {}
            changed, valid_total = run_change(pair, masker, params, work, options.tile, progress, **cache,
                                              min_pixels=min(min_px, MAX_TILE_MIN_PIXELS),
                                              **opts, **({"collector": collector} if collector is not None else {}))
            timings["score_s"] = time.perf_counter() - t0
        if options.engine == "local":  # the learned model's buffers are not needed for polygonising (no-op without it)
            from geodelta.perception.learned import onnx_infer

            onnx_infer.release_memory()
        # Polygonising holds the GIL most of the time and GDAL does not: measured on the 4000 px NAIP mosaic, the
        # COGs (0.65 s) and the thumbnails (0.9 s) cost no wall time beside it.
        with reader_warnings_held(), ThreadPoolExecutor(1, thread_name_prefix="geodelta-cog") as pool:
            side = pool.submit(side_work)
            t0 = time.perf_counter()
            m2, px = options.min_area_m2, options.min_area_px
            if collector is not None:
                regions = describe.regions_from_pieces(collector, grid, prob_scale=cog.PROB_SCALE,
                                                       min_area_m2=m2, min_area_px=px)
            else:
                regions = describe.regions_from_rasters(*work, grid, min_area_m2=m2, min_area_px=px)
            timings["polygonise_s"] = time.perf_counter() - t0
            timings["cog_s"] = side.result()  # its own time, on the helper thread
        heap.trim()
    finally:
        for thread in closing:
            thread.join()
        engines.remove_work(work)
    return Detection(out_dir, grid, options.method, params, change_tif, prob_tif, regions, changed, valid_total,
                     timings, options)


def _masker(pair: AlignedPair, options: DetectOptions) -> change.ChangeMasker:
    """The masker `options.method` names, given what it takes: band roles, the scene (auto), device, precision."""
    keep = change.change_band_indices(pair.band_names)  # None: compare every band
    roles = pair_roles(pair)
    if keep is not None:
        roles = {role: keep.index(i) for role, i in roles.items() if i in keep}
    # Maskers that need to know which band is red / NIR (learned, water, auto) take `roles`; `auto` also
    # takes the pixel size and the question's focus it picks by (`scene`).
    method = options.method
    sig = inspect.signature(change.masker_class(method) if method in change.MASKERS else object).parameters
    opts = dict(options.masker_opts) | ({"roles": roles} if "roles" in sig else {})  # e.g. the learned model's weights
    if "scene" in sig:
        opts["scene"] = {"pixel_m": pixel_size_m(pair.grid), "focus": options.focus}
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.values())  # auto: **learned options
    for key, value in (("device", options.device), ("precision", options.precision)):  # to the maskers that take them
        if value is not None and key not in opts and (key in sig or takes_any):
            opts[key] = value
    masker = change.get_masker(method, **opts)
    if keep is not None:
        masker = change.BandSubset(masker, keep, [pair.band_names[i] for i in keep])
    return masker


def pixel_size_m(grid: Grid) -> float | None:
    """Ground pixel size in metres (geometric mean of x and y): from a projected CRS, or for a geographic
    one (OSCD's EPSG:4326) from degrees at the grid's centre latitude (111,320 m per degree of longitude at
    the equator x cos(latitude), 110,574 m per degree of latitude); None without a georeference."""
    if grid.pixel_area_m2:
        return float(grid.pixel_area_m2) ** 0.5
    if grid.crs is None or not grid.georeferenced:
        return None
    import math

    t = grid.transform
    lat = t.f + t.e * grid.height / 2
    dx = abs(t.a) * 111_320.0 * math.cos(math.radians(lat))
    dy = abs(t.e) * 110_574.0
    return math.sqrt(dx * dy) if dx > 0 and dy > 0 else None


def _min_pixels(grid: Grid, min_area_m2: float, min_area_px: int) -> int:
    """The smallest region in pixels: `min_area_px` on every scene, or more where `min_area_m2` asks for it."""
    from_m2 = int(min_area_m2 // grid.pixel_area_m2) if grid.pixel_area_m2 else 0
    return max(int(min_area_px), from_m2)


def describe_stage(regions: list[Region], query: ChangeQuery, grid: Grid, change_tif: Path | None = None,
                   focus: str | None = None) -> tuple[list[Region], list[Quadruple], str]:
    """Keep the regions the query asks about, group them into S2M quadruples, caption them.

    A question about buildings (`focus`, default `query.focus`) also counts the separate objects in each kept
    region, from `change_tif` (touching houses are one region but several buildings)."""
    kept = describe.filter_regions(regions, query, grid)
    if (focus or query.focus) == "buildings" and change_tif is not None:
        from geodelta.perception.describe.objects import count_objects

        kept = count_objects(kept, change_tif, grid)
    quads = describe.quadruples(kept, grid)
    text = captioning.caption(quads, georeferenced=grid.georeferenced, query=query)
    return kept, quads, text


def regions_thumbnail(regions: list[Region], grid: Grid, shape: tuple[int, int]) -> np.ndarray:
    """uint8 (h, w) mask of the given regions at thumbnail size: the map shows what the answer counts."""
    from affine import Affine
    from rasterio.features import rasterize

    h, w = shape
    if not regions:
        return np.zeros(shape, np.uint8)
    geoms = describe.pixel_polygons(regions, grid)
    return rasterize(((g, 1) for g in geoms), out_shape=shape, transform=Affine.scale(grid.width / w, grid.height / h),
                     fill=0, dtype="uint8", all_touched=True)


def change_thumbnail(change_tif: Path, shape: tuple[int, int]) -> np.ndarray:
    """uint8 (h, w) change mask (1 = change) at thumbnail size: a decimated read, served by the COG's overviews."""
    from rasterio.enums import Resampling

    with rasterio.open(change_tif) as ds:
        return (ds.read(1, out_shape=shape, resampling=Resampling.nearest) == 1).astype(np.uint8)


def render_stage(pair: AlignedPair, det: Detection, regions: list[Region], out_dir: Path, *, title: str = "",
                 source: str | None = None) -> dict[str, str]:
    """Write overlay.png, map.html, regions.geojson and regions.gpkg; return kind -> path.

    Sizes do not grow with the scene's pixels: thumbnails are decimated reads (the change mask from
    its COG overviews when every region is drawn; the kept regions rasterised otherwise), and the map
    draws the `webmap.MAX_REGIONS` largest regions. `source`: the tool call behind the regions (popups)."""
    geo = det.grid.georeferenced

    def vectors() -> dict[str, Path]:
        return {"geojson": render.regions_geojson(regions, out_dir / "regions.geojson", georeferenced=geo,
                                                  digits=render.lonlat_digits(pixel_size_m(det.grid))),
                "gpkg": render.regions_gpkg(regions, out_dir / "regions.gpkg", georeferenced=geo)}

    # The vector files and the overlay are made on helper threads while this one makes the map: GDAL reads, the
    # warp and PIL's encoders release the GIL (4000 px NAIP mosaic, 11,290 regions: render 1.8 -> 1.3 s).
    with reader_warnings_held(), ThreadPoolExecutor(2, thread_name_prefix="geodelta-render") as pool:
        warnings.filterwarnings("ignore", message="'crs' was not provided")  # regions_gpkg's own filter, held too
        written = pool.submit(vectors)
        before_rgb = pair.rgb("before", THUMB_SIZE)
        after_rgb = pair.rgb("after", THUMB_SIZE)
        every = len(regions) == len(det.regions) and Path(det.change_tif).exists()
        shape = after_rgb.shape[:2]
        thumb = change_thumbnail(det.change_tif, shape) if every else regions_thumbnail(regions, det.grid, shape)
        png = pool.submit(render.overlay_png, before_rgb, after_rgb, thumb, det.grid, out_dir / "overlay.png",
                          regions=regions, title=title)
        html = render.map_html(after_rgb, det.grid, regions, out_dir / "map.html", before_rgb=before_rgb, change=thumb,
                               title=title, source=source)
        maps = {"png": png.result(), "html": html} | written.result() | {"geotiff": det.change_tif, "prob_geotiff": det.prob_tif}
    return {k: str(v) for k, v in maps.items()}


def run_detect(
    before: str | Path | ImageSource,
    after: str | Path | ImageSource,
    out_dir: str | Path,
    options: DetectOptions = DEFAULT_OPTIONS,
    *,
    aoi: tuple[float, float, float, float] | None = None,
    bands: str | list[str] | None = None,
    query: ChangeQuery | None = None,
    progress: Progress | None = None,
    engine_opts: dict | None = None,
) -> dict[str, Any]:
    """`geodelta detect`: every output file in `out_dir`; returns the summary dict (with the options used).

    `aoi` (lon/lat W, S, E, N) and `bands` (roles in file order, "swir1,nir,green", for files that carry none)
    say how to read the inputs; `options` how to detect (see `DetectOptions`)."""
    t_start = time.perf_counter()
    out_dir = Path(out_dir)
    t0 = time.perf_counter()
    pair = open_pair(before, after, aoi=aoi, bands=bands)
    t_open = time.perf_counter() - t0
    query = query or ChangeQuery(min_area_m2=options.min_area_m2)

    det = detect_stage(pair, out_dir, options, progress=progress, engine_opts=engine_opts, thumbnails=True)
    t0 = time.perf_counter()
    focus = "buildings" if "buildings" in (options.focus, query.focus) else "any"  # --focus, or the query's own
    kept, quads, text = describe_stage(det.regions, query, det.grid, det.change_tif, focus)
    t_describe = time.perf_counter() - t0
    t0 = time.perf_counter()
    maps = render_stage(pair, det, kept, out_dir, source="geodelta detect")
    t_render = time.perf_counter() - t0

    summary = build_summary(pair, det, query, kept, quads, text, maps)
    summary.timings_s = {
        "open": round(t_open, 3),
        **{k.removesuffix("_s"): round(v, 3) for k, v in det.timings.items()},
        "describe": round(t_describe, 3),
        "render": round(t_render, 3),
        "total": round(time.perf_counter() - t_start, 3),
    }
    record = summary.model_dump(mode="json")
    render.summary_json(out_dir / "summary.json", record)
    return record


def build_summary(
    pair: AlignedPair,
    det: Detection,
    query: ChangeQuery,
    regions: list[Region],
    quads: list[Quadruple],
    text: str,
    maps: dict[str, str],
) -> Summary:
    """The record of one analysis (summary.json); hashes make it reproducible."""
    grid = det.grid
    changed_m2 = round(det.changed_px * grid.pixel_area_m2, 2) if grid.pixel_area_m2 else None
    return Summary.model_validate({
        "geodelta_version": _version(),
        "query": query,
        "options": det.options,
        "method": MethodInfo(name=det.method, params=det.params, chosen=det.params.get("chosen"), reason=det.params.get("reason")),
        "inputs": {
            "before": pair.scene_ref("before").model_dump(mode="json"),
            "after": pair.scene_ref("after").model_dump(mode="json"),
            "bands": pair.band_names,
            "band_roles": pair.band_roles,
            "band_roles_source": pair.roles_source,
        },
        "grid": {
            "crs": grid.crs.to_string() if grid.crs else None,
            "transform": list(grid.transform)[:6],
            "width": grid.width,
            "height": grid.height,
            "georeferenced": grid.georeferenced,
        },
        "change": ChangeTotals(changed_px=det.changed_px, valid_px=det.valid_px, changed_m2=changed_m2),
        "n_regions": len(regions),
        # the largest regions only, without their polygons: summary.json stays small at any scale (the
        # largest regions carry the most vertices); every region with its polygon is in regions.gpkg
        "regions": [r.model_dump(mode="json", exclude={"polygon"}) for r in webmap.largest(regions, SUMMARY_REGIONS)],
        "regions_file": "regions.gpkg",
        "quadruples": [_capped_ids(q.to_json()) for q in quads],
        "caption": text,
        "classes_known": any(r.from_class != "unknown" or r.to_class != "unknown" for r in regions),
        "outputs": {k: Path(v).name for k, v in maps.items()},
    })


def _capped_ids(quad: dict) -> dict:
    """A quadruple's region_ids cut to the SUMMARY_REGIONS smallest ids (= the largest regions); how_many keeps the count."""
    ids = quad.get("region_ids") or []
    if len(ids) > SUMMARY_REGIONS:
        quad = quad | {"region_ids": ids[:SUMMARY_REGIONS], "region_ids_omitted": len(ids) - SUMMARY_REGIONS}
    return quad


def _version() -> str:
    from geodelta import __version__

    return __version__


def pair_roles(pair: AlignedPair) -> dict[str, int]:
    """Band roles (red, nir, ...) as indices into the arrays `pair.read()` returns."""
    return dict(pair.band_roles)
