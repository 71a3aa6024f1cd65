"""describe.py on real rasters: the Taizhou reference (EPSG:32651), OSCD bercy (EPSG:4326), LEVIR (no CRS)."""

from __future__ import annotations

import glob
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from pyproj import Geod
from rasterio.errors import NotGeoreferencedWarning
from scipy import ndimage
from shapely.geometry import shape

from geodelta.contracts import VOCABULARY, ChangeQuery
from geodelta.errors import InputError
from geodelta.perception.describe import regions as describe
from geodelta.perception.io.grid import Grid
from geodelta.perception.landcover.transitions import how_of

FOUR = ndimage.generate_binary_structure(2, 1)  # 4-connectivity, as rasterio.features.shapes


def _write(path: Path, grid: Grid, arr: np.ndarray, nodata=None) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", **grid.to_profile(count=1, dtype=arr.dtype.name, nodata=nodata)) as dst:
            dst.write(arr, 1)
    return path


@pytest.fixture(scope="module")
def demo(data_dir: Path, tmp_path_factory) -> dict:
    """change.tif / change_prob.tif on the demo grid from the real reference (1 -> change)."""
    with rasterio.open(data_dir / "demo" / "taizhou_change_reference.tif") as ds:
        ref = ds.read(1)
        grid = Grid(ds.width, ds.height, ds.transform, ds.crs)
    change = np.where(ref == 1, 1, np.where(ref == 0, 0, 255)).astype(np.uint8)
    rows, cols = np.indices(ref.shape)
    prob = np.where(ref == 1, 0.5 + 0.5 * cols / ref.shape[1], 0.1).astype(np.float32)  # varies inside regions
    d = tmp_path_factory.mktemp("demo")
    return {
        "grid": grid,
        "ref": ref,
        "prob": prob,
        "change_tif": _write(d / "change.tif", grid, change, 255),
        "prob_tif": _write(d / "change_prob.tif", grid, prob),
    }


@pytest.fixture(scope="module")
def demo_regions(demo):
    return describe.regions_from_rasters(demo["change_tif"], demo["prob_tif"], demo["grid"])


def test_regions_are_the_4_connected_components(demo, demo_regions):
    lab, n = ndimage.label(demo["ref"] == 1, structure=FOUR)
    n_change = int((demo["ref"] == 1).sum())
    assert n_change == 4227 and len(demo_regions) == n
    assert [r.id for r in demo_regions] == list(range(1, n + 1))
    assert sum(r.area_px for r in demo_regions) == n_change
    assert sum(r.area_m2 for r in demo_regions) == pytest.approx(n_change * 900.0)
    areas = [r.area_m2 for r in demo_regions]
    assert areas == sorted(areas, reverse=True)
    assert sorted(r.area_px for r in demo_regions) == sorted(np.bincount(lab.ravel())[1:].tolist())
    for r in demo_regions:
        geom = shape(r.polygon)
        assert geom.is_valid and geom.geom_type == "Polygon"
    exact = describe.regions_from_rasters(demo["change_tif"], None, demo["grid"], simplify_px=0)
    for r in exact:  # the exact outlines hold exactly the region's pixels
        assert describe.pixel_polygon(r, demo["grid"]).area == pytest.approx(r.area_px, rel=1e-6)


def test_confidence_is_mean_probability_inside(demo, demo_regions):
    lab, n = ndimage.label(demo["ref"] == 1, structure=FOUR)
    means = ndimage.mean(demo["prob"], lab, index=np.arange(1, n + 1))
    by_box = {}
    for i, sl in enumerate(ndimage.find_objects(lab)):
        box = (sl[1].start, sl[0].start, sl[1].stop, sl[0].stop)
        by_box.setdefault(box, []).append(means[i])
    for r in demo_regions:
        assert any(r.confidence == pytest.approx(m, abs=1e-6) for m in by_box[r.bbox_px])
    assert 0.5 < min(r.confidence for r in demo_regions) < max(r.confidence for r in demo_regions) <= 1.0


def test_small_windows_give_the_same_regions(demo, demo_regions):
    small = describe.regions_from_rasters(demo["change_tif"], demo["prob_tif"], demo["grid"], tile=64)
    assert len(small) == len(demo_regions)
    # the polygons too, to the byte: outlines are normalised before simplifying, wherever the windows cut them
    key = lambda rs: [(r.area_px, r.bbox_px, round(r.area_m2, 3), round(r.confidence, 6), r.geometry().wkb) for r in rs]  # noqa: E731
    assert key(small) == key(demo_regions)
    assert all(shape(r.polygon).is_valid for r in small)


def test_min_area_drops_small_regions(demo):
    lab, _ = ndimage.label(demo["ref"] == 1, structure=FOUR)
    sizes = np.bincount(lab.ravel())[1:]
    kept = describe.regions_from_rasters(demo["change_tif"], None, demo["grid"], min_area_m2=50 * 900)
    assert len(kept) == int((sizes >= 50).sum()) and all(r.area_px >= 50 for r in kept)
    assert all(r.confidence == 1.0 for r in kept)  # no probability raster


def test_sectors_and_lonlat(demo, demo_regions):
    names = [["north-west", "north", "north-east"], ["west", "centre", "east"], ["south-west", "south", "south-east"]]
    for r in demo_regions:
        col, row = r.centroid_px
        assert r.sector == names[min(2, int(row // (400 / 3)))][min(2, int(col // (400 / 3)))]
        lon, lat = r.centroid_lonlat
        assert abs(lon - 119.907) < 0.1 and abs(lat - 32.490) < 0.1  # Taizhou (demo/SOURCE.md)
    # the largest region (the ring road's south-west arc) lies in the south-west cell, north is up
    assert demo_regions[0].sector == "south-west" and demo_regions[0].centroid_lonlat[1] < 32.490


def test_geographic_grid_uses_geodesic_area(data_dir: Path, tmp_path: Path):
    city = data_dir / "oscd" / "bercy"
    with rasterio.open(glob.glob(str(city / "imgs_1" / "*_B02.tif"))[0]) as ds:
        grid = Grid(ds.width, ds.height, ds.transform, ds.crs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(city / "cm.tif") as ds:
            change = (ds.read(1) == 2).astype(np.uint8)  # OSCD: 2 = change
    assert grid.is_geographic and grid.pixel_area_m2 is None
    regions = describe.regions_from_rasters(_write(tmp_path / "cm.tif", grid, change), None, grid)
    t, geod = grid.transform, Geod(ellps="WGS84")

    def px_area(row: int) -> float:  # geodesic area of one pixel of that row
        lat0, lat1 = t.f + t.e * row, t.f + t.e * (row + 1)
        a, _ = geod.polygon_area_perimeter([t.c, t.c + t.a, t.c + t.a, t.c], [lat0, lat0, lat1, lat1])
        return abs(a)

    rows, _ = np.nonzero(change)
    expected = sum(px_area(r) for r in rows)
    assert sum(r.area_px for r in regions) == change.sum() == 1046
    assert sum(r.area_m2 for r in regions) == pytest.approx(expected, rel=1e-6)
    assert 60 < expected / change.sum() < 160  # ~8.5 x 12.9 m pixels (oscd/SOURCE.md)
    lon, lat = regions[0].centroid_lonlat
    assert 2.3 < lon < 2.45 and 48.8 < lat < 48.9  # Paris, Bercy


@pytest.fixture(scope="module")
def levir(data_dir: Path, tmp_path_factory) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(data_dir / "levir_crops" / "label" / "test_7_0256_0512.png") as ds:
            label = ds.read(1)
    grid = Grid(label.shape[1], label.shape[0])
    change = (label > 127).astype(np.uint8)
    tif = _write(tmp_path_factory.mktemp("levir") / "change.tif", grid, change, 255)
    return {"grid": grid, "change": change, "regions": describe.regions_from_rasters(tif, None, grid)}


def test_unreferenced_grid_gives_pixel_regions(levir):
    regions, change = levir["regions"], levir["change"]
    _, n = ndimage.label(change, structure=FOUR)
    assert len(regions) == n > 0
    assert sum(r.area_px for r in regions) == int(change.sum())
    for r in regions:
        assert r.area_m2 is None and r.centroid_lonlat is None
        geom = shape(r.polygon)  # simplified to the pixel: inside the pixel bbox, at most 1 px in from it
        x0, y0, x1, y1 = geom.bounds
        b0, b1, b2, b3 = r.bbox_px
        assert b0 <= x0 <= b0 + 1 and b1 <= y0 <= b1 + 1 and b2 - 1 <= x1 <= b2 and b3 - 1 <= y1 <= b3
        assert 0 <= x0 < x1 <= 256 and 0 <= y0 < y1 <= 256
    assert sum(shape(r.polygon).area for r in regions) == pytest.approx(int(change.sum()), rel=0.01)
    quads = describe.quadruples(regions, levir["grid"])
    assert all(q.total_area_m2 is None for q in quads)
    assert sum(q.total_area_px for q in quads) == int(change.sum())


def test_quadruples_group_and_sum(demo, demo_regions):
    quads = describe.quadruples(demo_regions, demo["grid"])
    by_id = {r.id: r for r in demo_regions}
    assert sum(q.how_many for q in quads) == len(demo_regions)
    assert sorted(i for q in quads for i in q.region_ids) == list(by_id)
    assert len({(q.where.sector, q.what.from_, q.what.to, q.how) for q in quads}) == len(quads)
    assert [q.total_area_m2 for q in quads] == sorted((q.total_area_m2 for q in quads), reverse=True)
    for q in quads:
        regs = [by_id[i] for i in q.region_ids]
        assert q.how_many == len(regs) and {r.sector for r in regs} == {q.where.sector}
        assert q.total_area_m2 == pytest.approx(sum(r.area_m2 for r in regs))
        w, s, e, n = q.where.bbox
        for r in regs:
            rw, rs, re_, rn = shape(r.polygon).bounds
            assert w <= rw and s <= rs and re_ <= e and rn <= n
        assert w <= q.where.lonlat[0] <= e and s <= q.where.lonlat[1] <= n
    j = quads[0].to_json()
    assert set(j) == {"where", "what", "how", "how_many", "total_area_m2", "region_ids"}
    assert set(j["what"]) == {"from", "to"} and j["what"]["from"] == "unknown"


def test_transitions_from_class_maps(demo, demo_regions):
    ref, grid = demo["ref"], demo["grid"]
    crop, built = VOCABULARY.index("cropland"), VOCABULARY.index("built_up")
    before = np.full(ref.shape, crop, np.uint8)
    after = np.where(ref == 1, built, crop).astype(np.uint8)
    regs = describe.assign_transitions(demo_regions, before, after, grid=grid)
    assert {(r.from_class, r.to_class, r.how) for r in regs} == {("cropland", "built_up", "appeared")}
    assert all(r.class_confidence == 1.0 for r in regs)
    unknown = describe.assign_transitions(demo_regions, np.full(ref.shape, 255, np.uint8), after, grid=grid)
    assert {(r.from_class, r.how) for r in unknown} == {("unknown", "changed")}
    quads = describe.quadruples(regs, grid)
    assert {(q.what.from_, q.what.to, q.how) for q in quads} == {("cropland", "built_up", "appeared")}


@pytest.mark.parametrize(
    "fc,tc,how",
    [
        ("cropland", "built_up", "appeared"),
        ("tree", "bare_ground", "disappeared"),
        ("cropland", "bare_ground", "converted"),
        ("built_up", "water", "converted"),
        ("water", "water", "changed"),
        ("unknown", "built_up", "changed"),
    ],
)
def test_how_rule(fc, tc, how):
    assert how_of(fc, tc) == how


def test_filter_by_sector_bbox_classes_and_size(demo, demo_regions):
    grid = demo["grid"]
    north = describe.filter_regions(demo_regions, ChangeQuery(area={"kind": "sector", "sector": "north-west"}), grid)
    assert 0 < len(north) == sum(r.sector == "north-west" for r in demo_regions)
    first = demo_regions[0]
    w, s, e, n = shape(first.polygon).bounds
    inside = describe.filter_regions(demo_regions, ChangeQuery(area={"kind": "bbox", "bbox": (w, s, e, n)}), grid)
    assert first.id in {r.id for r in inside} and len(inside) < len(demo_regions)
    far = ChangeQuery(area={"kind": "bbox", "bbox": (2.0, 48.0, 2.1, 48.1)})
    assert describe.filter_regions(demo_regions, far, grid) == []
    big = describe.filter_regions(demo_regions, ChangeQuery(min_area_m2=100_000), grid)
    assert big and all(r.area_m2 >= 100_000 for r in big)
    ref = demo["ref"]
    after = np.where(ref == 1, VOCABULARY.index("built_up"), VOCABULARY.index("cropland")).astype(np.uint8)
    regs = describe.assign_transitions(demo_regions, np.full(ref.shape, VOCABULARY.index("cropland"), np.uint8), after, grid=grid)
    assert describe.filter_regions(regs, ChangeQuery(from_classes=["water"]), grid) == []
    assert len(describe.filter_regions(regs, ChangeQuery(from_classes=["cropland"], to_classes=["built_up"]), grid)) == len(regs)
    assert describe.filter_regions(regs, ChangeQuery(direction="disappear"), grid) == []
    # unknown classes are never filtered out by class (the answer must say they are unknown)
    assert len(describe.filter_regions(demo_regions, ChangeQuery(to_classes=["water"]), grid)) == len(demo_regions)


def test_same_class_at_both_dates_is_no_appearance_except_built_up(demo, demo_regions):
    """Real demo regions given one class at both dates: water -> water ("class unchanged") is not water lost, so a
    question with a direction leaves it out; built-up -> built-up stays (new buildings inside built-up land)."""
    grid = demo["grid"]
    for cls, kept in (("water", False), ("tree", False), ("built_up", True)):
        code = np.full(demo["ref"].shape, VOCABULARY.index(cls), np.uint8)
        regs = describe.assign_transitions(demo_regions, code, code, grid=grid)
        assert regs and all(r.from_class == r.to_class == cls and r.how == "changed" for r in regs)
        for query in (ChangeQuery(from_classes=[cls], direction="disappear"), ChangeQuery(to_classes=[cls], direction="appear")):
            assert len(describe.filter_regions(regs, query, grid)) == (len(regs) if kept else 0), (cls, query.direction)
        assert len(describe.filter_regions(regs, ChangeQuery(from_classes=[cls]), grid)) == len(regs)  # direction any


def test_bbox_on_unreferenced_scene_is_an_input_error(levir):
    with pytest.raises(InputError, match="sector"):
        describe.filter_regions(levir["regions"], ChangeQuery(area={"kind": "bbox", "bbox": (0, 0, 1, 1)}), levir["grid"])


def test_polygon_dicts_and_cached_geometry_match_the_geojson(demo_regions):
    """Region.polygon (built from ring arrays, kept as arrays) dumps as what shapely's GeoJSON writer gives, and
    Region.geometry() is that polygon; a copy with another polygon gets that polygon's geometry, not the cached one."""
    import json

    import shapely

    from geodelta.contracts import plain_json

    geoms = np.array([r.geometry() for r in demo_regions], dtype=object)
    assert [json.loads(g) for g in shapely.to_geojson(geoms)] == [r.model_dump()["polygon"] for r in demo_regions]
    assert json.loads(demo_regions[0].model_dump_json())["polygon"] == json.loads(shapely.to_geojson(geoms[0]))
    assert all(r.geometry().equals(shape(r.polygon)) for r in demo_regions)
    holed = shapely.Polygon([(0, 0), (4, 0), (4, 4), (0, 4)], [[(1, 1), (2, 1), (2, 2), (1, 2)]])
    multi = shapely.MultiPolygon([holed, shapely.box(5, 5, 6, 6)])
    arr = np.array([holed, multi, shapely.Polygon()], dtype=object)
    assert plain_json(describe.geojson_dicts(arr)) == [json.loads(g) for g in shapely.to_geojson(arr)]
    moved = demo_regions[0].model_copy(update={"polygon": json.loads(shapely.to_geojson(shapely.box(0, 0, 1, 1)))})
    assert moved.geometry().area == 1.0 and demo_regions[0].geometry().area < 0.01  # lon/lat degrees


@pytest.mark.parametrize("case", ["demo", "levir"])
def test_polygons_are_the_pixel_outline_simplified_to_the_pixel(case, request):
    """Default polygons: valid, vertices are pixel corners of the exact outline, within 1 px of it, with far
    fewer vertices and the total area within 1 %; every per-pixel attribute equals the exact run's."""
    import shapely

    if case == "demo":
        d = request.getfixturevalue("demo")
        tif, grid = d["change_tif"], d["grid"]
    else:
        d = request.getfixturevalue("levir")
        grid = d["grid"]
        tif = _write(Path(str(request.getfixturevalue("tmp_path"))) / "c.tif", grid, d["change"], 255)
    simple = describe.regions_from_rasters(tif, None, grid)
    exact = describe.regions_from_rasters(tif, None, grid, simplify_px=0)
    attrs = lambda rs: [r.model_dump(exclude={"polygon"}) for r in rs]  # noqa: E731
    assert attrs(simple) == attrs(exact)
    s_px, e_px = describe.pixel_polygons(simple, grid), describe.pixel_polygons(exact, grid)
    assert shapely.is_valid(s_px).all()
    corners = shapely.get_coordinates(s_px)
    assert np.abs(corners - np.rint(corners)).max() < 1e-6
    assert shapely.get_num_coordinates(s_px).sum() < 0.8 * shapely.get_num_coordinates(e_px).sum()
    assert (shapely.hausdorff_distance(s_px, e_px) <= 1.0 + 1e-6).all()  # (1e-6: the lon/lat round trip)
    area = sum(r.area_px for r in exact)
    assert abs(shapely.area(s_px).sum() - area) < 0.01 * area
