"""change.tif / change_prob.tif are Cloud-Optimized GeoTIFFs, on a real NAIP pair (2009 -> 2020, 934 x 724 px)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from rasterio.features import shapes
from scipy import ndimage
from shapely.geometry import shape

from geodelta.contracts import DetectOptions
from geodelta.perception.describe import regions as describe
from geodelta.perception.io.reader import open_pair
from geodelta.perception.pipeline.detect import detect_stage
from geodelta.perception.render import cog


@pytest.fixture(scope="module")
def naip(data_dir: Path, tmp_path_factory) -> dict:
    d = data_dir / "naip"
    pair = open_pair(d / "m_4709963_se_14_1_20090818.tif", d / "m_4709963_se_14_1_20200831.tif")
    out = tmp_path_factory.mktemp("cog")
    det = detect_stage(pair, out, DetectOptions(tile=256))
    return {"pair": pair, "det": det, "out": out}


def test_outputs_are_valid_cogs(naip):
    det = naip["det"]
    for path, predictor in ((det.change_tif, None), (det.prob_tif, "2")):
        assert cog.cog_layout_errors(path) == [], path
        with rasterio.open(path) as ds:
            info = ds.tags(ns="IMAGE_STRUCTURE")
            assert info["LAYOUT"] == "COG" and info["COMPRESSION"] == "ZSTD"
            assert info.get("PREDICTOR") == predictor
            assert ds.profile["tiled"] and ds.block_shapes[0] == (512, 512)
            assert ds.overviews(1) == [2]  # 934 px: one overview level brings it under one tile
            assert (ds.width, ds.height) == (934, 724)


def test_change_prob_is_scaled_uint8(naip):
    det = naip["det"]
    with rasterio.open(det.change_tif) as ch, rasterio.open(det.prob_tif) as pr:
        assert pr.dtypes[0] == "uint8" and pr.scales[0] == pytest.approx(1 / 63) and pr.offsets[0] == 0
        stored = pr.read(1)
        assert stored.max() <= 63  # 64 steps: the scale maps the top step to p = 1
        c, p = ch.read(1), stored.astype(np.float64) * pr.scales[0]
        assert ch.nodata == 255 and set(np.unique(c)) <= {0, 1, 255}
        # the mask is the score cut at 0.5 before clean-up: changed pixels score high, unchanged low
        assert p[c == 1].mean() > 0.5 > p[c == 0].mean()
        # overviews of the mask keep its codes (nearest), the score's are averages in 0..63
        assert set(np.unique(ch.read(1, out_shape=(362, 467)))) <= {0, 1, 255}
    # region confidences read the band's scale: means of p in [0, 1], high inside changed regions
    confs = [r.confidence for r in det.regions]
    assert confs and max(confs) <= 1.0 and np.mean(confs) > 0.5


def test_layout_check_rejects_a_plain_geotiff(naip, tmp_path: Path):
    """The engines' own tiled GeoTIFF (what the COG rewrite starts from) is not a COG; the rewrite makes it one."""
    from geodelta.perception.render import outputs as render

    plain = tmp_path / "plain.tif"
    with rasterio.open(naip["det"].change_tif) as src, render.write_geotiff(plain, naip["det"].grid, "uint8", 255) as dst:
        dst.write(src.read(1), 1)
    errors = cog.cog_layout_errors(plain)
    assert any("LAYOUT" in e for e in errors) and any("overviews" in e for e in errors)
    assert cog.cog_layout_errors(cog.to_cog(plain, tmp_path / "fixed.tif")) == []


def test_region_across_tiles_equals_whole_mask_polygonising(naip):
    """Window-by-window polygonising (128 px windows) against rasterio's shapes() over the whole mask at once."""
    change_tif = naip["det"].change_tif
    tile = 128
    windowed = describe.polygonize_windows(change_tif, tile=tile)
    with rasterio.open(change_tif) as ds:
        mask = ds.read(1) == 1
    whole = [shape(g) for g, _ in shapes(mask.astype(np.uint8), mask=mask, connectivity=4)]
    assert len(windowed) == len(whole) > 10

    def key(p: shapely.Polygon) -> tuple:
        return tuple(round(v, 6) for v in p.bounds) + (round(p.area, 6),)

    by_key = {key(p): p for p in whole}
    assert set(map(key, windowed)) == set(by_key)
    for p in windowed:
        assert p.equals(by_key[key(p)])  # same shape, holes included
    crossing = [p for p in windowed if p.bounds[0] // tile != (p.bounds[2] - 1) // tile
                and p.bounds[1] // tile != (p.bounds[3] - 1) // tile]
    assert crossing and max(p.area for p in crossing) > 500  # real regions spanning several windows were merged


def test_georeferenced_scenes_drop_specks_too(naip, tmp_path: Path):
    """The 16 px minimum (DetectOptions.min_area_px) holds on a georeferenced scene, in change.tif and the regions;
    with 0 the same scene has smaller regions, so the minimum is what removed them."""
    det = naip["det"]
    assert det.grid.georeferenced and det.options.min_area_px == 16 and det.options.min_area_m2 == 0
    assert det.regions and min(r.area_px for r in det.regions) >= 16
    with rasterio.open(det.change_tif) as ds:
        labels, _ = ndimage.label(ds.read(1) == 1)
    assert np.bincount(labels.ravel())[1:].min() >= 16  # removed per tile, with the halo, before polygonising
    raw = detect_stage(naip["pair"], tmp_path / "raw", DetectOptions(tile=256, min_area_px=0))
    assert min(r.area_px for r in raw.regions) < 16 and len(raw.regions) > len(det.regions)


def test_detect_leaves_no_working_files_and_reads_thumbnails_once(naip, tmp_path: Path):
    """The engine's working rasters are gone once the COGs exist; with thumbnails=True the render's thumbnails are
    read while polygonising and served from the pair afterwards (the same pixels as a fresh read)."""
    from geodelta.perception.pipeline.detect import THUMB_SIZE

    d = naip["out"]
    assert sorted(p.name for p in d.iterdir()) == ["change.tif", "change_prob.tif"]
    pair = open_pair(naip["pair"].before.paths[0], naip["pair"].after.paths[0])
    detect_stage(pair, tmp_path / "t", DetectOptions(tile=256), thumbnails=True)
    assert {("rgb", "before", THUMB_SIZE), ("rgb", "after", THUMB_SIZE)} <= set(pair._cache._items)
    fresh = open_pair(naip["pair"].before.paths[0], naip["pair"].after.paths[0])
    assert np.array_equal(pair.rgb("after", THUMB_SIZE), fresh.rgb("after", THUMB_SIZE))
    shown = pair.rgb("before", THUMB_SIZE)
    shown[:] = 0  # a caller drawing on its copy does not change the cached one
    assert pair.rgb("before", THUMB_SIZE).any()
