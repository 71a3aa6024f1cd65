"""Output files of one analysis: GeoTIFFs, regions (GeoJSON, GeoPackage), overlay PNG, map, summary.

Vectors: EPSG:4326 lon/lat when the scene is georeferenced, pixel (col, row) coordinates
otherwise, declared in every file. The offline Leaflet map lives in `webmap.py`.

The region files hold every region with its polygon as describe made it (simplified to the pixel); areas in
the attributes are the exact pixel counts.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyogrio.raw
import rasterio
import shapely
from PIL import Image, ImageDraw, ImageFont
from pydantic import BaseModel
from pyproj import Geod
from rasterio.errors import NotGeoreferencedWarning
from scipy import ndimage

from geodelta.contracts import Region
from geodelta.perception.io.grid import Grid
from geodelta.perception.render.webmap import map_html  # noqa: F401  (public name of this module)

# GeoJSON "crs" member (2008 spec; RFC 7946 dropped it but GDAL still reads it).
CRS84_URN = "urn:ogc:def:crs:OGC:1.3:CRS84"  # = EPSG:4326 with lon/lat axis order
# An engineering CRS in WKT2 that GDAL parses as LOCAL_CS: pixel columns east, rows south.
PIXEL_CRS_WKT = (
    'ENGCRS["pixel",EDATUM["image"],CS[Cartesian,2],AXIS["col",east,ORDER[1],LENGTHUNIT["pixel",1]],'
    'AXIS["row",south,ORDER[2],LENGTHUNIT["pixel",1]]]'
)
_RED = (230, 25, 25)
_ALPHA = 0.45  # change fill opacity on the overlay panel
_M, _TITLE_H, _LABEL_H, _FOOT_H = 12, 30, 18, 46  # overlay layout, px
MIN_PANEL = 256  # thumbnails narrower than this are enlarged (nearest) so the legend fits
MAX_PANEL = 768  # px, longest panel side: three 1024 px photo panels made a 6 MB PNG; 768 px about 3.4 MB


def write_geotiff(path: Path, grid: Grid, dtype: str, nodata: float | None, count: int = 1):
    """Open a tiled, DEFLATE GeoTIFF on `grid` for windowed writes (use as a context manager)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        return rasterio.open(path, "w", **grid.to_profile(count=count, dtype=dtype, nodata=nodata))


def _properties(r: Region, georeferenced: bool) -> dict[str, Any]:
    props: dict[str, Any] = {"id": r.id, "area_px": r.area_px}
    if georeferenced:
        props["area_m2"] = r.area_m2
    props.update(
        sector=r.sector,
        from_class=r.from_class,
        to_class=r.to_class,
        how=r.how,
        confidence=round(r.confidence, 4),
    )
    return props


def lonlat_digits(pixel_m: float | None) -> int:
    """Decimals of a degree for regions.geojson: a step of at most 1/20 pixel (111,320 m per degree), 6 to 8.

    RFC 7946 (section 11.2) suggests 6 (~0.11 m); finer pixels get more (0.3 m pixels: 7)."""
    if not pixel_m or pixel_m <= 0:
        return LONLAT_DIGITS
    return int(min(8, max(6, math.ceil(math.log10(111_320.0 * 20 / pixel_m)))))


def regions_geojson(regions: Iterable[Region], path: Path, *, georeferenced: bool, digits: int | None = None) -> Path:
    """FeatureCollection of the regions; "crs" names CRS84 (lon/lat) or the pixel engineering CRS.

    `digits`: decimals of lon/lat (default LONLAT_DIGITS; `lonlat_digits` picks them from the pixel size).
    Streamed: features go to the file a batch at a time, so no whole-collection string is ever built."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    head = {
        "type": "FeatureCollection",
        "name": "regions",
        "crs": {"type": "name", "properties": {"name": CRS84_URN if georeferenced else PIXEL_CRS_WKT}},
        "geodelta:coordinates": "lonlat" if georeferenced else "pixel",
    }
    digits = LONLAT_DIGITS if digits is None else int(digits)
    with path.open("w", encoding="utf-8") as f:
        f.write(json.dumps(head, separators=(",", ":"))[:-1] + ',"features":[')
        batch: list[Region] = []
        first = True
        for r in regions:
            batch.append(r)
            if len(batch) == GEOJSON_BATCH:
                first = _write_features(f, batch, georeferenced, first, digits)
                batch = []
        _write_features(f, batch, georeferenced, first, digits)
        f.write("]}")
    return path


GEOJSON_BATCH = 2_000  # features rounded and encoded together (vectorised shapely calls)
LONLAT_DIGITS = 7  # default decimals of a degree in regions.geojson: ~1 cm (RFC 7946 suggests 6; see lonlat_digits)


def _write_features(f, batch: list[Region], georeferenced: bool, first: bool, digits: int = LONLAT_DIGITS) -> bool:
    """Append `batch` as GeoJSON features to the open file `f`; lon/lat rounded to `digits`."""
    if not batch:
        return first
    geoms = np.array([r.geometry() for r in batch], dtype=object)
    if georeferenced:
        geoms = shapely.transform(geoms, lambda xy: np.round(xy, digits))
    for r, g in zip(batch, shapely.to_geojson(geoms)):
        props = json.dumps(_properties(r, georeferenced), separators=(",", ":"))
        f.write(("" if first else ",") + f'{{"type":"Feature","id":{r.id},"properties":{props},"geometry":{g}}}')
        first = False
    return first


GPKG_BATCH = 10_000  # features per GeoPackage append: memory follows the batch, not the region count


def regions_gpkg(regions: Iterable[Region], path: Path, *, georeferenced: bool) -> Path:
    """GeoPackage, layer "regions", EPSG:4326 (or no CRS for pixel coordinates), via pyogrio.

    Written in batches of GPKG_BATCH features (appends to one layer). Geometry type: Polygon when every
    region is one polygon, else MultiPolygon (single polygons promoted)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    if not isinstance(regions, Sequence):
        regions = list(regions)
    multi = any(r.polygon.get("type") == "MultiPolygon" for r in regions)
    names = ["id", "area_px"] + (["area_m2"] if georeferenced else []) + ["sector", "from_class", "to_class", "how", "confidence"]
    kinds = {"id": np.int64, "area_px": np.int64, "area_m2": np.float64, "confidence": np.float64}
    with warnings.catch_warnings():  # pixel coordinates have no CRS on purpose
        warnings.filterwarnings("ignore", message="'crs' was not provided")
        for start in range(0, max(len(regions), 1), GPKG_BATCH):
            batch = regions[start:start + GPKG_BATCH]
            geoms = [r.geometry() for r in batch]
            if multi:
                geoms = [shapely.MultiPolygon([g]) if g.geom_type == "Polygon" else g for g in geoms]
            rows = [_properties(r, georeferenced) for r in batch]
            data = [np.array([row[n] for row in rows], dtype=kinds.get(n, object)) for n in names]
            _write_layer(path, geoms, data, names, multi, georeferenced, append=start > 0)
    return path


def _write_layer(path: Path, geoms: list, data: list[np.ndarray], names: list[str], multi: bool, georeferenced: bool,
                 append: bool = False) -> None:
    pyogrio.raw.write(
        path,
        geometry=np.array(shapely.to_wkb(geoms), dtype=object) if geoms else np.array([], dtype=object),
        field_data=data,
        fields=names,
        layer="regions",
        driver="GPKG",
        geometry_type="MultiPolygon" if multi else "Polygon",
        crs="EPSG:4326" if georeferenced else None,
        append=append,
    )


# ---------------------------------------------------------------- overlay PNG


def _nearest(a: np.ndarray, h: int, w: int) -> np.ndarray:
    """Nearest-neighbour resize of a (H, W[, C]) array to (h, w[, C])."""
    if a.shape[:2] == (h, w):
        return a
    rows = (np.arange(h) * a.shape[0]) // h
    cols = (np.arange(w) * a.shape[1]) // w
    return a[rows][:, cols]


def metres_per_pixel(grid: Grid, thumb_width: int) -> float | None:
    """Ground metres per thumbnail pixel along the middle row; None when not georeferenced."""
    if not grid.georeferenced or grid.crs is None:
        return None
    if not grid.is_geographic:
        factor = grid.crs.linear_units_factor[1] if grid.crs.linear_units_factor else 1.0
        return grid.resolution[0] * factor * grid.width / thumb_width
    left, bottom, right, top = grid.bounds
    mid = (bottom + top) / 2
    _, _, dist = Geod(ellps="WGS84").inv(left, mid, right, mid)
    return dist / thumb_width


def nice_length(max_m: float) -> float:
    """Largest 1, 2 or 5 x 10^k metres not above `max_m`."""
    k = 10 ** math.floor(math.log10(max_m))
    return max(m * k for m in (1, 2, 5) if m * k <= max_m)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: fixed bitmap font
        return ImageFont.load_default()


def _rgb(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    return np.ascontiguousarray(a[:, :, :3]).astype(np.uint8)


def overlay_png(
    before_rgb: np.ndarray,
    after_rgb: np.ndarray,
    change: np.ndarray,
    grid: Grid,
    path: Path,
    *,
    regions: list[Region] | None = None,
    title: str = "",
) -> Path:
    """before | after | after with change in semi-transparent red and red outlines, plus legend,
    scale bar and north arrow (georeferenced only).

    before/after: uint8 (h, w, 3) thumbnails; change: (H, W) with 1 = change (any size, resized
    with nearest to the thumbnail); region ids are written at their centroids.
    """
    before, after = _shrink(_rgb(before_rgb)), _shrink(_rgb(after_rgb))
    h, w = before.shape[:2]
    up = max(1, math.ceil(MIN_PANEL / w))
    h, w = h * up, w * up
    before, after = _nearest(before, h, w), _nearest(after, h, w)
    mask = _nearest(np.asarray(change) == 1, h, w)
    over = after.astype(np.float32)
    over[mask] = over[mask] * (1 - _ALPHA) + np.array(_RED) * _ALPHA
    over = over.astype(np.uint8)
    over[mask & ~ndimage.binary_erosion(mask)] = _RED

    W = 3 * w + 4 * _M
    H = _TITLE_H + _LABEL_H + h + _FOOT_H
    img = Image.new("RGB", (W, H), "white")
    draw = ImageDraw.Draw(img)
    font, small = _font(16), _font(12)
    draw.text((_M, 7), title or "GeoDelta change map", fill="black", font=font)
    y0 = _TITLE_H + _LABEL_H
    for i, (panel, label) in enumerate(((before, "before"), (after, "after"), (over, "after + change"))):
        x0 = _M + i * (w + _M)
        img.paste(Image.fromarray(panel), (x0, y0))
        draw.text((x0, _TITLE_H + 2), label, fill="black", font=small)
    x3 = _M + 2 * (w + _M)
    for r in (regions or [])[:30]:  # the 30 largest: more would cover the picture
        cx, cy = r.centroid_px[0] * w / grid.width, r.centroid_px[1] * h / grid.height
        draw.text((x3 + cx, y0 + cy), str(r.id), fill="yellow", font=small, anchor="mm", stroke_width=2, stroke_fill="black")
    # legend
    fy = y0 + h + 12
    draw.rectangle((_M, fy, _M + 16, fy + 12), fill=_RED, outline="black")
    n = len(regions) if regions is not None else None
    legend = "change" + (f" ({n} region{'s' if n != 1 else ''})" if n is not None else "")
    draw.text((_M + 22, fy - 1), legend, fill="black", font=small)
    mpp = metres_per_pixel(grid, w)
    if mpp:
        _scale_bar(draw, small, x3, fy, w, mpp)
        _north_arrow(draw, small, x3 + w - 22, y0 + 8)
    else:
        draw.text((x3, fy - 1), "no georeference: pixel coordinates, no scale", fill="black", font=small)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A 256-colour palette (Pillow's fast octree, Floyd-Steinberg dither): measured on the 4000 px NAIP mosaic's
    # three 768 px panels 0.93 MB instead of 3.07 MB as RGB, and 0.07 s instead of 0.23 s to write; mean
    # error 3.8 of 255 per channel, which a preview can carry (the data is in the GeoTIFFs).
    img.quantize(256, method=Image.Quantize.FASTOCTREE).save(path, format="PNG", compress_level=6)
    return path


def _shrink(rgb: np.ndarray) -> np.ndarray:
    """A photo panel reduced (box filter) so its longest side is at most MAX_PANEL."""
    h, w = rgb.shape[:2]
    f = MAX_PANEL / max(h, w)
    if f >= 1:
        return rgb
    size = (max(1, round(w * f)), max(1, round(h * f)))
    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BOX))


def _scale_bar(draw: ImageDraw.ImageDraw, font, x0: int, y: int, w: int, mpp: float) -> None:
    length_m = nice_length(0.4 * w * mpp)
    px = round(length_m / mpp)
    draw.rectangle((x0, y + 4, x0 + px, y + 9), fill="black")
    draw.rectangle((x0 + px // 2, y + 5, x0 + px - 1, y + 8), fill="white")
    label = f"{length_m / 1000:g} km" if length_m >= 1000 else f"{length_m:g} m"
    draw.text((x0 + px + 6, y - 1), label, fill="black", font=font)


def _north_arrow(draw: ImageDraw.ImageDraw, font, x: int, y: int) -> None:
    """A north-up arrow (the frame is north-up: grid north) with an N above."""
    draw.polygon([(x, y + 12), (x - 7, y + 32), (x, y + 26), (x + 7, y + 32)], fill="white", outline="black")
    draw.text((x, y + 4), "N", fill="white", font=font, anchor="mm", stroke_width=2, stroke_fill="black")


# ---------------------------------------------------------------- summary


def _jsonable(o: Any) -> Any:
    if isinstance(o, BaseModel):
        return o.model_dump(mode="json", by_alias=True)
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, (datetime, date)):
        return o.isoformat()
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (set, frozenset)):
        return sorted(o)
    raise TypeError(f"summary.json cannot hold a {type(o).__name__}: pass ids, paths and numbers")


def summary_json(path: Path, payload: dict) -> Path:
    """Pretty JSON with sorted keys (stable diffs; same inputs -> same bytes)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, ensure_ascii=False, default=_jsonable) + "\n", encoding="utf-8")
    return path
