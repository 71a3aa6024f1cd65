"""map.html: a folium/Leaflet map that opens offline from disk (no tiles, no CDN).

Leaflet 1.9.4 is vendored in `static/leaflet/` and inlined into the page (its CSS images as data
URIs); every CDN link folium would add is dropped. Georeferenced scenes: the images are warped to
Web Mercator (what Leaflet's ImageOverlay stretches linearly), regions are lon/lat GeoJSON.
Unreferenced scenes: Leaflet CRS.Simple with lat = height - row, lng = col (pixel units).
"""

from __future__ import annotations

import base64
import html
import io
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import shapely
from affine import Affine
from PIL import Image
from pyproj import Transformer
from rasterio.warp import Resampling, calculate_default_transform, reproject
from shapely.geometry import mapping, shape

from geodelta.contracts import Region
from geodelta.perception.grid import Grid

_STYLE = {"color": "#e61919", "weight": 2, "fillColor": "#e61919", "fillOpacity": 0.3}


@lru_cache(maxsize=1)
def leaflet_assets() -> tuple[str, str]:
    """(leaflet.js, leaflet.css) text of the vendored Leaflet, CSS images inlined as data URIs."""
    root = resources.files("geodelta.perception") / "static" / "leaflet"
    js = (root / "leaflet.js").read_text(encoding="utf-8")
    js = re.sub(r"//# sourceMappingURL=\S+\s*$", "", js)
    css = (root / "leaflet.css").read_text(encoding="utf-8")

    def inline(m: re.Match) -> str:
        data = (root / "images" / m.group(1)).read_bytes()
        return f"url(data:image/png;base64,{base64.b64encode(data).decode()})"

    return js, re.sub(r"url\(images/([\w.-]+\.png)\)", inline, css)


def _png_uri(rgba: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(rgba).save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _rgba(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[:, :, None], 3, axis=2)
    a = np.full(rgb.shape[:2] + (1,), 255, np.uint8)
    return np.concatenate([rgb[:, :, :3].astype(np.uint8), a], axis=2)


def to_web_mercator(rgb: np.ndarray, grid: Grid) -> tuple[np.ndarray, list[list[float]]]:
    """Warp a (h, w, 3) thumbnail of `grid` to EPSG:3857 (nearest). Returns RGBA (alpha 0 outside
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


def _feature_collection(regions: list[Region], grid: Grid) -> dict:
    from geodelta.perception.caption import format_area

    feats = []
    for r in regions:
        geom = shape(r.polygon)
        if not grid.georeferenced:  # (col, row) -> CRS.Simple (lng = col, lat = height - row)
            geom = shapely.transform(geom, lambda xy: np.column_stack([xy[:, 0], grid.height - xy[:, 1]]))
        props = {
            "id": r.id,
            "area": format_area(r.area_m2, r.area_px),
            "classes": f"{r.from_class} -> {r.to_class}",
            "how": r.how,
            "confidence": round(r.confidence, 2),
        }
        feats.append({"type": "Feature", "properties": props, "geometry": mapping(geom)})
    return {"type": "FeatureCollection", "features": feats}


def _strip_cdn(element) -> None:
    """Drop the CDN <script>/<link> every folium element would add to the page header."""
    if hasattr(element, "default_js"):
        element.default_js = []
    if hasattr(element, "default_css"):
        element.default_css = []
    for child in element._children.values():
        _strip_cdn(child)


def map_html(
    after_rgb: np.ndarray,
    grid: Grid,
    regions: list[Region],
    path: Path,
    *,
    before_rgb: np.ndarray | None = None,
    title: str = "",
) -> Path:
    """Write an offline Leaflet map: after (and before) image overlays, change regions with
    tooltips, a layer control. Thumbnails are uint8 (h, w, 3) of the whole grid."""
    import folium  # imported here: folium/branca/jinja2 cost ~0.3 s and only this function needs them

    if grid.georeferenced:
        m = folium.Map(tiles=None, control_scale=True, zoom_snap=0.25)
        layers = []
        for name, rgb in (("before", before_rgb), ("after", after_rgb)):
            if rgb is not None:
                rgba, bounds = to_web_mercator(rgb, grid)
                layers.append((name, rgba, bounds))
    else:
        m = folium.Map(tiles=None, crs="Simple", min_zoom=-8, max_zoom=8, zoom_snap=0.25)
        bounds = [[0, 0], [grid.height, grid.width]]
        layers = [(n, _rgba(rgb), bounds) for n, rgb in (("before", before_rgb), ("after", after_rgb)) if rgb is not None]
    for name, rgba, b in layers:
        folium.raster_layers.ImageOverlay(
            image=_png_uri(rgba), bounds=b, name=f"{name} image", pixelated=True, show=(name == "after")
        ).add_to(m)
    fields = ["id", "area", "classes", "how", "confidence"]
    if regions:
        folium.GeoJson(
            _feature_collection(regions, grid),
            name=f"change regions ({len(regions)})",
            style_function=lambda _f: _STYLE,
            tooltip=folium.GeoJsonTooltip(fields=fields, aliases=[f"{f}:" for f in fields]),
        ).add_to(m)
    folium.LayerControl(collapsed=False).add_to(m)
    m.fit_bounds(layers[0][2] if layers else [[0, 0], [grid.height, grid.width]])

    js, css = leaflet_assets()
    root = m.get_root()
    root.header.add_child(folium.Element(f"<title>{html.escape(title or 'GeoDelta change map')}</title>"), name="title")
    root.header.add_child(folium.Element(f"<style>{css}</style>"), name="leaflet_css_inline")
    root.header.add_child(folium.Element(f"<script>{js}</script>"), name="leaflet_js_inline")
    if title:
        banner = (
            '<div style="position:fixed;top:8px;left:60px;z-index:1000;background:white;padding:4px 8px;'
            f'font:14px sans-serif;border-radius:4px;box-shadow:0 1px 4px #0005">{html.escape(title)}</div>'
        )
        root.html.add_child(folium.Element(banner), name="title_banner")
    _strip_cdn(m)
    page = root.render()
    if re.search(r"<(script|link)[^>]+(src|href)=[\"']?(https?:)?//", page):
        raise RuntimeError("map.html would load a remote script or stylesheet; a folium element added a CDN link")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
