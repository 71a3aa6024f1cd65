"""Change mask -> regions -> S2M quadruples (where, what, how, how many).

Polygons are built in PIXEL coordinates (col, row; integer vertices, so window pieces union
exactly) and only then moved to the scene CRS / EPSG:4326. Regions are 4-connected components
of change == 1 (rasterio.features.shapes' default connectivity; two pixels touching only at a
corner are two regions, also across window borders).

A region's polygon is its exact pixel outline simplified to the pixel (geometry.simplify_to_pixel, SIMPLIFY_PX):
the exact outline spends two vertices on every one-pixel stair step, which made regions.geojson and
regions.gpkg 73 % of detect's bytes and the region list most of its memory. Everything measured per pixel
(area_px, area_m2, centroid, bbox, confidence) comes from the exact outline.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio
import shapely
import shapely.affinity
from pyproj import CRS as ProjCRS
from pyproj import Geod, Transformer
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry
from shapely.geometry.polygon import orient

from geodelta.contracts import NODATA_U8, SECTORS, BBoxArea, ChangeQuery, Quadruple, Region, SectorArea, What, Where
from geodelta.errors import InputError
from geodelta.perception import heap
from geodelta.perception.describe.geometry import SIMPLIFY_PX, geojson_dicts, simplify_to_pixel
from geodelta.perception.describe.pieces import PieceCollector, pieces_from_rasters, polygon_parts
from geodelta.perception.io.grid import Grid
from geodelta.perception.landcover.transitions import TransitionHistogram

GEOMETRY_CHUNK = 10_000  # regions whose polygons are simplified and converted together (regions_from_pieces)
_GEOD = Geod(ellps="WGS84")
# Classes whose arrival reads as "something appeared" (and whose loss as "disappeared").
# ChangeQuery.direction -> the `how` values it keeps ("changed": classes unknown, kept; or one class at both dates, see below).
_DIRECTION_HOWS = {
    "appear": {"appeared", "expanded", "changed"},
    "disappear": {"disappeared", "shrank", "changed"},
    # A conversion names both ends; "cropland -> built_up" is also an appearance of built-up land,
    # so every transition between two different classes counts, and the class lists do the filtering.
    "convert": {"converted", "appeared", "disappeared", "changed"},
}
# A region with one known class at both dates ("water, class unchanged": turbid water, a field sown again) did not
# appear, disappear or convert, so a question with a direction leaves it out. Built-up land is the exception: an
# area that stays built-up can hold new or demolished buildings (densification), what such questions ask about.
_SAME_CLASS_KEPT = frozenset({"built_up"})


# ---------------------------------------------------------------- polygonising


def polygonize_windows(change_tif: Path, tile: int = 2048) -> list[shapely.Polygon]:
    """4-connected polygons of change == 1 in pixel coordinates (col, row), read window by window (pieces.py):
    pieces touching an inner window border are unioned with their neighbours; memory follows `tile`."""
    return list(pieces_from_rasters(change_tif, None, tile).stitched()[0])


# ---------------------------------------------------------------- coordinates


def _crs_transformer(grid: Grid, inverse: bool = False) -> Transformer:
    """The grid CRS -> lon/lat transformer (or back); one per CRS: building one took 2 ms, per region."""
    if grid.crs is None:
        raise InputError("this scene has no CRS: its pixel coordinates have no lon/lat")
    return _transformer(grid.crs.to_wkt(), inverse)


@functools.lru_cache(maxsize=16)
def _transformer(wkt: str, inverse: bool) -> Transformer:
    crs = ProjCRS.from_user_input(wkt)
    src, dst = (crs, "EPSG:4326") if not inverse else ("EPSG:4326", crs)
    return Transformer.from_crs(src, dst, always_xy=True)


def _apply(tr: Transformer, geom: BaseGeometry) -> BaseGeometry:
    def fn(xy: np.ndarray) -> np.ndarray:
        x, y = tr.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    return shapely.transform(geom, fn)


def _pixel_to_lonlat_fn(grid: Grid):
    """(N, 2) pixel (col, row) -> (N, 2) lon/lat through the grid transform and CRS."""
    t, tr = grid.transform, _crs_transformer(grid)

    def fn(xy: np.ndarray) -> np.ndarray:
        x = t.a * xy[:, 0] + t.b * xy[:, 1] + t.c
        y = t.d * xy[:, 0] + t.e * xy[:, 1] + t.f
        lon, lat = tr.transform(x, y)
        return np.column_stack([lon, lat])

    return fn


def pixel_polygon(region: Region, grid: Grid) -> BaseGeometry:
    """A region's polygon back in pixel coordinates (col, row) of `grid`."""
    geom = region.geometry()
    if not grid.georeferenced:
        return geom
    geom = _apply(_crs_transformer(grid, inverse=True), geom)
    t = ~grid.transform
    return shapely.affinity.affine_transform(geom, [t.a, t.b, t.d, t.e, t.c, t.f])


def pixel_polygons(regions: Sequence[Region], grid: Grid) -> np.ndarray:
    """Every region's polygon in pixel coordinates (col, row): one vectorised transform, not one per region."""
    geoms = np.array([r.geometry() for r in regions], dtype=object)
    if not grid.georeferenced or not len(geoms):
        return geoms
    tr, t = _crs_transformer(grid, inverse=True), ~grid.transform

    def fn(xy: np.ndarray) -> np.ndarray:
        x, y = tr.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([t.a * x + t.b * y + t.c, t.d * x + t.e * y + t.f])

    return shapely.transform(geoms, fn)


def geodesic_area_m2(geom_lonlat: BaseGeometry) -> float:
    """Area in m² on the WGS84 ellipsoid of a lon/lat (multi)polygon."""
    polys = polygon_parts(geom_lonlat)
    return float(sum(abs(_GEOD.geometry_area_perimeter(orient(p, 1.0))[0]) for p in polys))


# ---------------------------------------------------------------- regions


def regions_from_rasters(
    change_tif: Path,
    prob_tif: Path | None,
    grid: Grid,
    min_area_m2: float = 0.0,
    min_area_px: int = 0,
    tile: int = 2048,
    simplify_px: float = SIMPLIFY_PX,
) -> list[Region]:
    """Regions of change.tif (1 change / 0 no change / 255 nodata) on `grid`, largest first.

    area_m2: pixels x pixel area (projected CRS), geodesic WGS84 area (geographic CRS), None
    (not georeferenced). confidence: mean change_prob (float 0..1) inside the region; 1.0 when
    `prob_tif` is None. Regions under `min_area_px`, or under `min_area_m2` where area_m2 is
    known, are dropped. Polygons: the pixel outline simplified by `simplify_px` (0: exact; see the
    module docstring). Per-region work is vectorised (shapely/pyproj arrays).
    """
    with rasterio.open(change_tif) as ds:
        if (ds.width, ds.height) != (grid.width, grid.height):
            raise InputError(
                f"{change_tif} is {ds.width}x{ds.height} px but the grid is {grid.width}x{grid.height}: "
                "describe the change raster on the grid it was written on"
            )
    scale = None
    if prob_tif is not None:
        with rasterio.open(prob_tif) as ds:
            scale = prob_scale(ds, np.dtype(ds.dtypes[0]))
    return regions_from_pieces(pieces_from_rasters(change_tif, prob_tif, tile), grid, prob_scale=scale,
                               min_area_m2=min_area_m2, min_area_px=min_area_px, simplify_px=simplify_px)


def regions_from_pieces(pieces: PieceCollector, grid: Grid, *, prob_scale: float | None, min_area_m2: float = 0.0,
                        min_area_px: int = 0, simplify_px: float = SIMPLIFY_PX) -> list[Region]:
    """Regions (largest first) of a collector's stitched pixel-space polygons with their change_prob sums (stored
    units, times `prob_scale` is p; None: no probabilities, confidence 1.0).

    Takes the pieces from the collector (not as arrays from the caller, whose references would keep them alive),
    and releases each exact outline once its region's polygon is made: at 282,601 regions (20000 px NAIP mosaic)
    the exact and the simplified polygons of the scene never coexist."""
    polys, psum, pcount = pieces.stitched()
    area_px = np.rint(shapely.area(polys)).astype(np.int64)
    keep = area_px >= min_area_px
    polys, area_px, psum, pcount = polys[keep], area_px[keep], psum[keep], pcount[keep]
    cxy = shapely.get_coordinates(shapely.centroid(polys)).reshape(-1, 2)
    cll, area_m2, fn = None, None, None
    if grid.georeferenced:
        fn = _pixel_to_lonlat_fn(grid)
        cll = fn(cxy)
        area_m2 = (np.array([geodesic_area_m2(g) for g in shapely.transform(polys, fn)]) if grid.is_geographic
                   else area_px * grid.pixel_area_m2)
        keep = area_m2 >= min_area_m2
        polys, area_px, area_m2, cxy, cll = polys[keep], area_px[keep], area_m2[keep], cxy[keep], cll[keep]
        psum, pcount = psum[keep], pcount[keep]
    boxes = np.rint(shapely.bounds(polys)).astype(np.int64).reshape(-1, 4)
    size = area_m2 if area_m2 is not None else area_px
    order = np.lexsort((cxy[:, 1], cxy[:, 0], boxes[:, 0], boxes[:, 1], -size))  # last key sorts first
    if prob_scale is None:
        conf = np.ones(len(polys))
    else:  # mean change_prob over the exact outline's pixels
        conf = np.clip(np.divide(psum * prob_scale, pcount, out=np.zeros(len(polys)), where=pcount > 0), 0.0, 1.0)
    out = []
    # Geometry a chunk at a time, largest regions first: normalise (one start vertex per ring whatever the windows
    # were, as Douglas-Peucker depends on it: the same outline from any engine or tile size), simplify, move to
    # lon/lat, then drop the chunk's exact outlines, so the scene's exact and simplified polygons never coexist.
    for start in range(0, len(order), GEOMETRY_CHUNK):
        idx = order[start:start + GEOMETRY_CHUNK]
        geoms = simplify_to_pixel(shapely.normalize(polys[idx]), simplify_px)
        polys[idx] = None
        if fn is not None:
            geoms = shapely.transform(geoms, fn)
        for j, (k, poly) in enumerate(zip(idx, geojson_dicts(geoms))):
            out.append(
                Region(
                    id=start + j + 1,
                    polygon=poly,
                    bbox_px=tuple(int(v) for v in boxes[k]),
                    centroid_px=(float(cxy[k, 0]), float(cxy[k, 1])),
                    centroid_lonlat=None if cll is None else (float(cll[k, 0]), float(cll[k, 1])),
                    sector=grid.sector_of(cxy[k, 0], cxy[k, 1]),
                    area_m2=None if area_m2 is None else float(area_m2[k]),
                    area_px=int(area_px[k]),
                    confidence=float(conf[k]),
                ).with_geometry(geoms[j])
            )
        heap.trim()  # the chunk's exact outlines are freed: their pages go back before the next chunk allocates
    return out


def prob_scale(ds: rasterio.DatasetReader, dtype: np.dtype) -> float:
    """p per stored unit of a change_prob raster: the band's scale (ours: 1/63), else a float's own values, else
    an integer band's full range (an older uint8 file without a scale: 1/255)."""
    if dtype.kind == "f":
        return 1.0
    scale = float(ds.scales[0]) if ds.scales else 1.0
    return scale if scale != 1.0 else 1.0 / np.iinfo(dtype).max


# ---------------------------------------------------------------- classes


def assign_transitions(regions: list[Region], from_map: np.ndarray | None, to_map: np.ndarray | None, *, grid: Grid) -> list[Region]:
    """From / to class per region from whole-scene class maps (uint8 codes, NODATA unknown) on `grid`: the
    regions are burnt into a label map and counted by the same `TransitionHistogram` as `landcover_stage`.
    A missing map counts as unknown, so its regions stay "unknown"."""
    from rasterio.features import rasterize

    if from_map is None and to_map is None or not regions:
        return list(regions)
    for m in (from_map, to_map):
        if m is not None and m.shape != grid.shape:
            raise InputError(f"class map shape {m.shape} differs from the grid {grid.shape}: classify on the same grid")
    unknown = np.full(grid.shape, NODATA_U8, np.uint8)
    labels = rasterize(zip(pixel_polygons(regions, grid), (r.id for r in regions)), out_shape=grid.shape, fill=0, dtype="int32")
    hist = TransitionHistogram(max(r.id for r in regions) + 1)
    hist.add(labels, unknown if from_map is None else from_map, unknown if to_map is None else to_map)
    return hist.apply(regions)[0]


# ---------------------------------------------------------------- S2M quadruples and filtering


def quadruples(regions: list[Region], grid: Grid) -> list[Quadruple]:
    """One quadruple per (sector, from, to, how), largest total area first (S2M grouping)."""
    groups: dict[tuple[str, str, str, str], list[Region]] = defaultdict(list)
    for r in regions:
        groups[(r.sector, r.from_class, r.to_class, r.how)].append(r)
    geo = grid.georeferenced
    quads = []
    for (sector, fc, tc, how), regs in groups.items():
        if geo:
            bounds = shapely.bounds(np.array([r.geometry() for r in regs], dtype=object)).reshape(-1, 4)
            bbox = (bounds[:, 0].min(), bounds[:, 1].min(), bounds[:, 2].max(), bounds[:, 3].max())
            weights = np.array([r.area_m2 or 0.0 for r in regs])
            pts = np.array([r.centroid_lonlat for r in regs])
            w = weights if weights.sum() > 0 else np.ones(len(regs))
            lonlat = (float(np.average(pts[:, 0], weights=w)), float(np.average(pts[:, 1], weights=w)))
            areas = {"total_area_m2": float(weights.sum())}
        else:
            b = np.array([r.bbox_px for r in regs])
            bbox = (b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max())
            lonlat = None
            areas = {"total_area_px": int(sum(r.area_px for r in regs))}
        quads.append(
            Quadruple(
                where=Where(sector=sector, bbox=tuple(float(v) for v in bbox), lonlat=lonlat),
                what=What(**{"from": fc, "to": tc}),
                how=how,
                how_many=len(regs),
                region_ids=sorted(r.id for r in regs),
                **areas,
            )
        )
    order = {s: i for i, s in enumerate(SECTORS)}
    quads.sort(key=lambda q: (-(q.total_area_m2 if q.total_area_m2 is not None else q.total_area_px or 0), order[q.where.sector], q.what.from_, q.what.to, q.how))
    return quads


def filter_regions(regions: list[Region], query: ChangeQuery, grid: Grid) -> list[Region]:
    """Regions matching the query's area, classes (query.wants), direction and min_area_m2.

    min_area_m2 applies only where area_m2 is known (not on unreferenced scenes); a bbox area
    on an unreferenced scene is an InputError (there are no lon/lat to compare with).
    """
    area = query.area
    sel = None
    if isinstance(area, BBoxArea):
        if not grid.georeferenced:
            raise InputError(
                "this scene has no georeference, so a lon/lat box cannot be placed on it: ask about a sector "
                "(e.g. 'the north-east') or the whole scene instead"
            )
        sel = box(*area.bbox)
    hows = _DIRECTION_HOWS.get(query.direction)
    out = []
    for r in regions:
        if isinstance(area, SectorArea) and r.sector != area.sector:
            continue
        if sel is not None and not sel.intersects(r.geometry()):
            continue
        if not query.wants(r.from_class, r.to_class):
            continue
        if hows is not None and r.how not in hows:
            continue
        if hows is not None and r.from_class == r.to_class != "unknown" and r.from_class not in _SAME_CLASS_KEPT:
            continue
        if r.area_m2 is not None and r.area_m2 < query.min_area_m2:
            continue
        out.append(r)
    return out
