"""render.py output files on the real demo scene (EPSG:32651) and a LEVIR crop (no CRS)."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pyogrio
import pyogrio.raw
import pytest
import rasterio
import shapely
from PIL import Image
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import Window
from shapely.geometry import shape

from geodelta.contracts import ChangeQuery
from geodelta.perception.describe import regions as describe
from geodelta.perception.io.grid import Grid
from geodelta.perception.render import outputs as render


def _rgb(path: Path, bands=(3, 2, 1)) -> np.ndarray:
    """uint8 (h, w, 3) with a 2-98 % stretch (what io.py's .rgb() gives, written here to stay independent)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path) as ds:
            a = ds.read(list(bands)[: ds.count]).astype(np.float32)
    lo, hi = np.percentile(a, (2, 98))
    return np.moveaxis((np.clip((a - lo) / max(hi - lo, 1), 0, 1) * 255).astype(np.uint8), 0, -1)


def _change_tif(path: Path, grid: Grid, change: np.ndarray) -> Path:
    with render.write_geotiff(path, grid, "uint8", 255) as dst:
        for r0 in range(0, grid.height, 128):  # windowed writes, as the pipeline does
            h = min(128, grid.height - r0)
            dst.write(change[r0 : r0 + h], 1, window=Window(0, r0, grid.width, h))
    return path


@pytest.fixture(scope="module")
def demo(data_dir: Path, tmp_path_factory) -> dict:
    d = data_dir / "demo"
    with rasterio.open(d / "taizhou_change_reference.tif") as ds:
        ref = ds.read(1)
        grid = Grid(ds.width, ds.height, ds.transform, ds.crs)
    change = np.where(ref == 1, 1, np.where(ref == 0, 0, 255)).astype(np.uint8)
    out = tmp_path_factory.mktemp("render")
    tif = _change_tif(out / "change.tif", grid, change)
    return {
        "grid": grid,
        "change": change,
        "tif": tif,
        "out": out,
        "regions": describe.regions_from_rasters(tif, None, grid),
        "before": _rgb(d / "taizhou_before_2000-03-17_landsat7_etm.tif"),
        "after": _rgb(d / "taizhou_after_2003-02-06_landsat7_etm.tif"),
    }


@pytest.fixture(scope="module")
def levir(data_dir: Path, tmp_path_factory) -> dict:
    d = data_dir / "levir_crops"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(d / "label" / "test_7_0256_0512.png") as ds:
            change = (ds.read(1) > 127).astype(np.uint8)
    grid = Grid(change.shape[1], change.shape[0])
    out = tmp_path_factory.mktemp("levir")
    tif = _change_tif(out / "change.tif", grid, change)
    return {
        "grid": grid,
        "change": change,
        "out": out,
        "regions": describe.regions_from_rasters(tif, None, grid),
        "before": _rgb(d / "A" / "test_7_0256_0512.png", (1, 2, 3)),
        "after": _rgb(d / "B" / "test_7_0256_0512.png", (1, 2, 3)),
    }


def test_write_geotiff_is_tiled_deflate_on_the_grid(demo):
    with rasterio.open(demo["tif"]) as ds:
        assert ds.crs.to_epsg() == 32651 and ds.transform == demo["grid"].transform
        assert ds.profile["tiled"] and ds.compression.name.lower() == "deflate" and ds.nodata == 255
        assert np.array_equal(ds.read(1), demo["change"])


def test_geojson_declares_crs(demo, levir):
    path = render.regions_geojson(demo["regions"], demo["out"] / "regions.geojson", georeferenced=True)
    fc = json.loads(path.read_text())
    assert fc["crs"]["properties"]["name"] == render.CRS84_URN
    assert len(fc["features"]) == len(demo["regions"])
    props = fc["features"][0]["properties"]
    assert {"id", "area_m2", "sector", "from_class", "to_class", "how", "confidence"} <= set(props)
    assert pyogrio.read_info(path)["crs"] == "EPSG:4326"
    lon, lat = fc["features"][0]["geometry"]["coordinates"][0][0]
    assert 119.8 < lon < 120.0 and 32.4 < lat < 32.6  # lon/lat order

    pix = json.loads(render.regions_geojson(levir["regions"], levir["out"] / "r.geojson", georeferenced=False).read_text())
    assert pix["geodelta:coordinates"] == "pixel" and "area_m2" not in pix["features"][0]["properties"]
    info = pyogrio.read_info(levir["out"] / "r.geojson")
    assert info["crs"].startswith("LOCAL_CS") and info["features"] == len(levir["regions"])  # not mistaken for lon/lat


def test_gpkg(demo, levir):
    path = render.regions_gpkg(demo["regions"], demo["out"] / "regions.gpkg", georeferenced=True)
    meta, _, geom, fields = pyogrio.raw.read(path, layer="regions")
    assert meta["crs"] == "EPSG:4326" and len(geom) == len(demo["regions"])
    area = fields[list(meta["fields"]).index("area_m2")]
    assert area.sum() == pytest.approx(4227 * 900)
    render.regions_gpkg(demo["regions"][:3], path, georeferenced=True)  # overwrites
    assert pyogrio.read_info(path, layer="regions")["features"] == 3
    pix = render.regions_gpkg(levir["regions"], levir["out"] / "r.gpkg", georeferenced=False)
    info = pyogrio.read_info(pix, layer="regions")
    assert info["crs"] is None and info["features"] == len(levir["regions"])
    empty = render.regions_gpkg([], levir["out"] / "empty.gpkg", georeferenced=False)
    assert pyogrio.read_info(empty, layer="regions")["features"] == 0


def test_overlay_png_three_panels(demo):
    path = render.overlay_png(demo["before"], demo["after"], demo["change"], demo["grid"], demo["out"] / "overlay.png",
                              regions=demo["regions"], title="Taizhou 2000 -> 2003")
    img = np.asarray(Image.open(path).convert("RGB"))
    w, m = 400, 12  # 400 px thumbnails, 12 px margins
    assert img.shape[1] == 3 * w + 4 * m
    y0 = 30 + 18
    # panel 1 is the before image, in a 256-colour palette (a preview: a few levels of 255 off on average)
    assert np.abs(img[y0 : y0 + 400, m : m + w].astype(int) - demo["before"]).mean() < 6
    assert Image.open(path).mode == "P"
    third = img[y0 : y0 + 400, 3 * m + 2 * w : 3 * m + 3 * w].astype(int)
    red = (third[..., 0] > 200) & (third[..., 1] < 60) & (third[..., 2] < 60)
    assert red.sum() > 500  # change outlines
    second = img[y0 : y0 + 400, 2 * m + w : 2 * m + 2 * w]
    assert np.abs(second.astype(int) - demo["after"]).mean() < 6


def test_overlay_unreferenced_and_scale(levir, demo, data_dir):
    path = render.overlay_png(levir["before"], levir["after"], levir["change"], levir["grid"], levir["out"] / "o.png")
    assert Image.open(path).size[0] == 3 * 256 + 4 * 12
    assert render.metres_per_pixel(levir["grid"], 256) is None
    assert render.metres_per_pixel(demo["grid"], 100) == pytest.approx(120.0)  # 30 m x 400 px / 100 px
    assert render.nice_length(0.4 * 400 * 30) == 2000
    assert render.nice_length(480) == 200


def test_map_html_is_offline(demo, levir):
    path = render.map_html(demo["after"], demo["grid"], demo["regions"], demo["out"] / "map.html",
                           before_rgb=demo["before"], change=demo["change"], title="Taizhou <2000-2003>",
                           source="call_detect_1")
    page = path.read_text()
    tags = re.findall(r"<(?:script|link)\b[^>]*>", page)
    assert tags and not any(re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", t) for t in tags)
    assert "Leaflet 1.9.4" in page or 'version="1.9.4"' in page  # vendored Leaflet inlined
    assert "data:image/png;base64," in page and "data:image/webp;base64," in page  # mask PNG, photos WebP
    assert "<title>Taizhou &lt;2000-2003&gt;</title>" in page
    data = _map_data(page)
    assert [layer["name"] for layer in data["layers"]] == ["before", "after", "change"]
    assert len(data["regions"]["features"]) == len(demo["regions"])
    assert data["note"] == f"all {len(demo['regions'])} regions shown; also in regions.gpkg"
    assert {f["properties"]["source"] for f in data["regions"]["features"]} == {"call_detect_1"}
    assert data["legend"][0]["label"] == "change (classes not determined)"
    pix = render.map_html(levir["after"], levir["grid"], levir["regions"], levir["out"] / "map.html")
    assert _map_data(pix.read_text())["simple"] is True


def _map_data(page: str) -> dict:
    """The JSON the page's script draws from (everything on the map comes from it)."""
    return json.JSONDecoder().raw_decode(page, page.index("const GD = ") + len("const GD = "))[0]


def test_map_html_caps_vectors_and_says_so(demo):
    regions = demo["regions"]
    cap = 5
    path = render.map_html(demo["after"], demo["grid"], regions, demo["out"] / "capped.html", max_regions=cap,
                           n_regions=len(regions) + 1000)
    data = _map_data(path.read_text())
    drawn = [f["properties"]["id"] for f in data["regions"]["features"]]
    by_area = sorted(regions, key=lambda r: -r.area_m2)[:cap]
    assert drawn == [r.id for r in by_area]  # the largest ones
    assert data["note"] == f"5 largest of {len(regions) + 1000:,} regions shown; all are in regions.gpkg"
    # simplified to the display resolution: never more vertices than the exact polygons
    exact = sum(len(shape(r.polygon).exterior.coords) for r in by_area)
    assert sum(len(f["geometry"]["coordinates"][0]) for f in data["regions"]["features"]) <= exact


def test_summary_json_sorted_and_plain(tmp_path, demo):
    quads = describe.quadruples(demo["regions"], demo["grid"])
    payload = {"z": 1, "a": {"path": demo["tif"], "n": np.int64(3)}, "query": ChangeQuery(), "quadruples": [q.to_json() for q in quads]}
    path = render.summary_json(tmp_path / "summary.json", payload)
    text = path.read_text()
    back = json.loads(text)
    assert list(back) == ["a", "quadruples", "query", "z"] and back["a"] == {"n": 3, "path": str(demo["tif"])}
    assert back["quadruples"][0]["what"]["from"] == "unknown"
    assert render.summary_json(tmp_path / "again.json", payload).read_text() == text


def test_region_files_hold_the_region_polygons(demo):
    """regions.gpkg / regions.geojson carry each region's own (simplified) polygon and exact pixel areas."""
    gpkg = render.regions_gpkg(demo["regions"], demo["out"] / "s.gpkg", georeferenced=True)
    meta, _, geom, fields = pyogrio.raw.read(gpkg, layer="regions")
    assert len(geom) == len(demo["regions"])
    assert fields[list(meta["fields"]).index("area_px")].sum() == sum(r.area_px for r in demo["regions"])
    assert all(shapely.from_wkb(g).equals(r.geometry()) for g, r in zip(geom, demo["regions"]))
    gj = json.loads(render.regions_geojson(demo["regions"], demo["out"] / "s.geojson", georeferenced=True, digits=6).read_text())
    first = shapely.geometry.shape(gj["features"][0]["geometry"])
    assert first.hausdorff_distance(demo["regions"][0].geometry()) < 1e-6
    assert all(len(str(c).split(".")[1]) <= 6 for c in gj["features"][0]["geometry"]["coordinates"][0][0])


def test_lonlat_digits_follow_the_pixel():
    assert render.lonlat_digits(5.0) == 6 and render.lonlat_digits(30.0) == 6  # RFC 7946's 6 (~0.11 m)
    assert render.lonlat_digits(0.3) == 7 and render.lonlat_digits(None) == render.LONLAT_DIGITS
    assert 111_320 / 10 ** render.lonlat_digits(1.0) <= 1.0 / 20
