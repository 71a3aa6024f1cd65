"""map.html: an offline Leaflet page that stays small at any scene size (no tiles, no CDN).

What is on it: the before and after thumbnails with a swipe control (before left of the divider,
after right), the change mask as one raster overlay (read from the change COG's overviews), a vector
layer of at most `max_regions` regions (the largest; simplified to the display resolution), a note
saying how many of how many regions are drawn, a legend of the from -> to classes with their colours,
and a popup per region (area, classes, how, confidence, the tool call behind it). Pixel data is a
fixed-size thumbnail and the vectors are capped, so the page size does not grow with the scene.

Leaflet 1.9.4 is vendored in `static/leaflet/` and inlined (its CSS images as data URIs).
Georeferenced scenes: images are warped to Web Mercator (what Leaflet's ImageOverlay stretches
linearly), regions are lon/lat GeoJSON. Unreferenced scenes: Leaflet CRS.Simple with
lat = height - row, lng = col (pixel units). `#region=ID` in the URL opens that region's popup.
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from affine import Affine
from PIL import Image, WebPImagePlugin  # noqa: F401  (registers WEBP: else Image.save imports every plugin, ~35 ms)
from pyproj import Transformer
from rasterio.warp import Resampling, calculate_default_transform, reproject

from geodelta.contracts import Region
from geodelta.perception.io.grid import Grid

MAX_REGIONS = 1000  # vectors drawn on the map (the largest); every region is in regions.gpkg
_UNKNOWN_COLOUR = "#e61919"  # classes not determined: plain change red
# Fill colour of a region = colour of the class it became; outline = the class it was.
CLASS_COLOURS = {
    "water": "#1f78b4", "tree": "#1b7837", "low_vegetation": "#7fbc41", "cropland": "#e6c619",
    "bare_ground": "#a6611a", "built_up": "#d7191c", "other": "#969696", "unknown": _UNKNOWN_COLOUR,
}
_MASK_RGBA = (255, 0, 255, 150)  # change mask overlay: translucent magenta (apart from every class colour)
_PAGE = resources.files("geodelta.perception.render") / "static" / "map_page.html"


@lru_cache(maxsize=1)
def leaflet_assets() -> tuple[str, str]:
    """(leaflet.js, leaflet.css) text of the vendored Leaflet, CSS images inlined as data URIs."""
    root = resources.files("geodelta.perception.render") / "static" / "leaflet"
    js = (root / "leaflet.js").read_text(encoding="utf-8")
    js = re.sub(r"//# sourceMappingURL=\S+\s*$", "", js)
    css = (root / "leaflet.css").read_text(encoding="utf-8")

    def inline(m: re.Match) -> str:
        data = (root / "images" / m.group(1)).read_bytes()
        return f"url(data:image/png;base64,{base64.b64encode(data).decode()})"

    return js, re.sub(r"url\(images/([\w.-]+\.png)\)", inline, css)


def _data_uri(rgba: np.ndarray, fmt: str) -> str:
    """PNG (masks: exact, compresses flat areas well) or WebP q80 with alpha (photographs: ~10x smaller).

    WebP effort 2 of 6: on a 1024 px NAIP thumbnail 0.055 s and 276 KiB, effort 4 0.12 s and 270 KiB."""
    buf = io.BytesIO()
    img = Image.fromarray(np.ascontiguousarray(rgba))
    if fmt == "webp":
        img.save(buf, format="WEBP", quality=80, method=2)
    else:
        img.save(buf, format="PNG", compress_level=6)
    return f"data:image/{fmt};base64," + base64.b64encode(buf.getvalue()).decode()


def _rgba(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[:, :, None], 3, axis=2)
    if rgb.shape[2] == 4:
        return rgb.astype(np.uint8)
    a = np.full(rgb.shape[:2] + (1,), 255, np.uint8)
    return np.concatenate([rgb[:, :, :3].astype(np.uint8), a], axis=2)


def mask_rgba(change: np.ndarray) -> np.ndarray:
    """(h, w) change thumbnail (1 = change) -> RGBA, translucent colour on change, transparent elsewhere."""
    out = np.zeros(change.shape + (4,), np.uint8)
    out[np.asarray(change) == 1] = _MASK_RGBA
    return out


def to_web_mercator(rgb: np.ndarray, grid: Grid) -> tuple[np.ndarray, list[list[float]]]:
    """Warp a (h, w, 3|4) thumbnail of `grid` to EPSG:3857 (nearest). Returns RGBA (alpha 0 outside
    the scene) and its Leaflet bounds [[south, west], [north, east]] in degrees."""
    src = _rgba(rgb).transpose(2, 0, 1)
    h, w = src.shape[1:]
    src_t = grid.transform @ Affine.scale(grid.width / w, grid.height / h)
    dst_t, dw, dh = calculate_default_transform(grid.crs, "EPSG:3857", w, h, *grid.bounds)
    dst = np.zeros((4, dh, dw), np.uint8)
    reproject(src, dst, src_transform=src_t, src_crs=grid.crs, dst_transform=dst_t, dst_crs="EPSG:3857",
              resampling=Resampling.nearest, src_nodata=None, dst_nodata=0)
    to_ll = Transformer.from_crs("EPSG:3857", "EPSG:4326", always_xy=True)
    west, north = to_ll.transform(dst_t.c, dst_t.f)
    east, south = to_ll.transform(dst_t.c + dst_t.a * dw, dst_t.f + dst_t.e * dh)
    return dst.transpose(1, 2, 0), [[south, west], [north, east]]


def largest(regions: list[Region], n: int) -> list[Region]:
    """The `n` largest regions (area_m2 where known, else area_px), ties by id."""
    return sorted(regions, key=lambda r: (-(r.area_m2 if r.area_m2 is not None else r.area_px), r.id))[:n]


def _features(regions: list[Region], grid: Grid, tolerance: float, source: str | None) -> dict:
    """GeoJSON of the regions in map coordinates, simplified by `tolerance` (map units), coordinates rounded."""
    from geodelta.perception.describe.caption import format_area

    geoms = np.array([r.geometry() for r in regions], dtype=object)
    if not grid.georeferenced:  # (col, row) -> CRS.Simple (lng = col, lat = height - row)
        geoms = shapely.transform(geoms, lambda xy: np.column_stack([xy[:, 0], grid.height - xy[:, 1]]))
    if len(geoms):
        # Douglas-Peucker without topology repair (5x faster; a drawing needs no validity); a polygon that
        # collapses (smaller than a display pixel) is drawn exact
        simple = shapely.simplify(geoms, tolerance, preserve_topology=False)
        geoms = np.where(shapely.is_empty(simple) | (shapely.area(simple) == 0), geoms, simple)
        digits = 6 if grid.georeferenced else 1  # 6 decimals of a degree: ~0.1 m
        geoms = shapely.transform(geoms, lambda xy: np.round(xy, digits))
    feats = []
    for r, g in zip(regions, geoms):
        props = {
            "id": r.id,
            "area": format_area(r.area_m2, r.area_px),
            "from": r.from_class,
            "to": r.to_class,
            "how": r.how,
            "confidence": round(r.confidence, 2),
            "source": source or "",
        }
        feats.append({"type": "Feature", "properties": props, "geometry": json.loads(shapely.to_geojson(g))})
    return {"type": "FeatureCollection", "features": feats}


def legend_entries(regions: list[Region]) -> list[dict]:
    """One legend row per from -> to pair drawn, most regions first: label, fill (to) and outline (from) colour."""
    counts: dict[tuple[str, str], int] = {}
    for r in regions:
        counts[(r.from_class, r.to_class)] = counts.get((r.from_class, r.to_class), 0) + 1
    rows = []
    for (f, t), n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        label = "change (classes not determined)" if f == t == "unknown" else f"{f} -> {t}"
        rows.append({"label": label, "fill": CLASS_COLOURS.get(t, _UNKNOWN_COLOUR),
                     "line": CLASS_COLOURS.get(f, _UNKNOWN_COLOUR), "n": n})
    return rows


def note_text(shown: int, total: int) -> str:
    """The map's note on what the vector layer holds, e.g. '1,000 largest of 26,226 regions shown; ...'."""
    if total == 0:
        return "no change regions found"
    if shown < total:
        return f"{shown:,} largest of {total:,} regions shown; all are in regions.gpkg"
    return f"all {total:,} region{'s' if total != 1 else ''} shown; also in regions.gpkg"


def map_html(
    after_rgb: np.ndarray,
    grid: Grid,
    regions: list[Region],
    path: Path,
    *,
    before_rgb: np.ndarray | None = None,
    change: np.ndarray | None = None,
    n_regions: int | None = None,
    max_regions: int = MAX_REGIONS,
    source: str | None = None,
    title: str = "",
) -> Path:
    """Write the offline map. Thumbnails: uint8 (h, w, 3) of the whole grid; `change`: (h, w) thumbnail
    of the change mask (1 = change) or None; `regions`: the regions to list (the `max_regions` largest
    are drawn); `n_regions`: how many regions the analysis has in all (default len(regions));
    `source`: the tool call (or run) the regions came from, shown in every popup."""
    shown = largest(regions, max_regions)
    total = len(regions) if n_regions is None else n_regions
    images = [(n, a) for n, a in (("before", before_rgb), ("after", after_rgb)) if a is not None]
    if change is not None:
        images.append(("change", mask_rgba(change)))
    layers: list[dict[str, Any]] = []
    thumb_w = max((a.shape[1] for _, a in images), default=1)
    for name, arr in images:
        if grid.georeferenced:
            rgba, bounds = to_web_mercator(arr, grid)
        else:
            rgba, bounds = _rgba(arr), [[0, 0], [grid.height, grid.width]]
        layers.append({"name": name, "url": _data_uri(rgba, "png" if name == "change" else "webp"), "bounds": bounds})
    if grid.georeferenced:
        (s, w), (n, e) = layers[0]["bounds"] if layers else [[0, 0], [0, 0]]
        tolerance = max(e - w, n - s) / thumb_w  # degrees per display pixel
        fit = [[s, w], [n, e]]
    else:
        tolerance = max(grid.width, grid.height) / thumb_w  # scene pixels per display pixel
        fit = [[0, 0], [grid.height, grid.width]]
    data: dict[str, Any] = {
        "simple": not grid.georeferenced,
        "fit": fit,
        "layers": layers,
        "regions": _features(shown, grid, tolerance, source),
        "legend": legend_entries(shown),
        "note": note_text(len(shown), total),
        "title": title or "GeoDelta change map",
    }
    js, css = leaflet_assets()
    blob = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    page = (_PAGE.read_text(encoding="utf-8")
            .replace("/*LEAFLET_CSS*/", css)
            .replace("/*LEAFLET_JS*/", js.replace("</script", "<\\/script"))
            .replace("/*GEODELTA_DATA*/null", blob)
            .replace("<!--TITLE-->", html.escape(data["title"])))
    if re.search(r"<(script|link)[^>]+(src|href)=[\"']?(https?:)?//", page):
        raise RuntimeError("map.html would load a remote script or stylesheet; keep every asset inline")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
