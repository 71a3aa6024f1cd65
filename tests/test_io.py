"""Raster I/O on real data: every reader, pair alignment, windowed reads, nodata masks and input errors."""

from __future__ import annotations

import hashlib
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.enums import ColorInterp
from rasterio.transform import Affine
from rasterio.windows import Window

from geodelta.errors import InputError
from geodelta.perception.io.bands import date_from_name, match_bands, role_of_description
from geodelta.perception.io.reader import ROLES, open_image, open_pair
from geodelta.perception.io.tiling import iter_windows

LEVIR = "levir_crops/{}/test_2_0000_0000.png"
NAIP = "naip/m_4709963_se_14_1_{}.tif"


def full(pair):
    return pair.read(Window(0, 0, pair.grid.width, pair.grid.height))


def demo_pixels(path: Path) -> tuple[np.ndarray, dict]:
    with rasterio.open(path) as src:
        return src.read(), src.profile


def write_tif(path: Path, data: np.ndarray, profile: dict, **changes) -> Path:
    """Write a GeoTIFF (or a plain TIFF when the profile has no transform/CRS)."""
    profile = {**profile, "count": data.shape[0], "dtype": str(data.dtype), **changes}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


# ---------- readers ----------


def test_demo_geotiff_bands_roles_date(demo_pair) -> None:
    src = open_image(demo_pair[0])
    assert src.kind == "geotiff" and src.dtype == "uint8" and src.nodata is None
    assert len(src.band_names) == 6 and src.band_names[3].startswith("B4 NIR")
    assert src.band_roles == {r: i for i, r in enumerate(ROLES)}  # blue, green, red, nir, swir1, swir2 in file order
    assert src.date == "2000-03-17" and open_image(demo_pair[1]).date == "2003-02-06"
    assert (src.grid.width, src.grid.height, src.grid.crs.to_epsg()) == (400, 400, 32651)
    assert src.sha256 == [hashlib.sha256(demo_pair[0].read_bytes()).hexdigest()]


def test_levir_png_pair_matches_pillow(data_dir: Path) -> None:
    pa, pb = data_dir / LEVIR.format("A"), data_dir / LEVIR.format("B")
    pair = open_pair(pa, pb)
    assert pair.before.kind == "image" and pair.grid.crs is None and pair.grid.shape == (256, 256)
    assert {r: pair.band_roles[r] for r in ("red", "green", "blue")} == {"red": 0, "green": 1, "blue": 2}
    a, b, valid = full(pair)
    assert a.dtype == np.float32 and a.shape == (3, 256, 256) and valid.all()
    np.testing.assert_array_equal(a, np.asarray(Image.open(pa)).transpose(2, 0, 1))
    np.testing.assert_array_equal(b, np.asarray(Image.open(pb)).transpose(2, 0, 1))
    ref = pair.scene_ref("after")
    assert ref.crs is None and ref.width == 256 and ref.paths == [str(pb)]


def test_oscd_folder_13_bands_on_b02_grid(data_dir: Path) -> None:
    folder = data_dir / "oscd/bercy/imgs_1"
    src = open_image(folder)
    assert src.kind == "s2folder" and len(src.paths) == len(src.sha256) == 13
    assert src.band_names == ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"]
    assert src.band_roles == {"blue": 1, "green": 2, "red": 3, "nir": 7, "swir1": 11, "swir2": 12}
    b02 = next(folder.glob("*_B02.tif"))
    with rasterio.open(b02) as ds:
        assert (src.grid.width, src.grid.height) == (ds.width, ds.height) == (360, 395)
        raw_b02 = ds.read(1)
    assert src.date == "2016-11-30"  # dates.txt, not the OPER processing time in the name
    assert open_image(data_dir / "oscd/bercy/imgs_2").date == "2017-08-29"
    pair = open_pair(folder, data_dir / "oscd/bercy/imgs_2")
    a, _, valid = full(pair)
    assert a.shape == (13, 395, 360) and valid.all()
    np.testing.assert_array_equal(a[1], raw_b02)  # 10 m band: read as is
    with rasterio.open(next(folder.glob("*_B11.tif"))) as ds:  # 20 m band: bilinear onto 10 m keeps its mean
        assert ds.width == 180 and abs(a[11].mean() / ds.read(1).mean() - 1) < 0.02


def test_envi_written_from_demo_pixels(tmp_path: Path, demo_pair) -> None:
    data, profile = demo_pixels(demo_pair[0])
    for key in ("compress", "tiled", "blockxsize", "blockysize", "interleave"):
        profile.pop(key, None)
    with rasterio.open(demo_pair[0]) as src:
        desc = src.descriptions
    with rasterio.open(tmp_path / "taizhou.img", "w", **{**profile, "driver": "ENVI"}) as dst:
        dst.write(data)
        dst.descriptions = desc
    for aux in tmp_path.glob("*.aux.xml"):  # band names must come from the .hdr alone
        aux.unlink()
    for given in (tmp_path / "taizhou.img", tmp_path / "taizhou.hdr"):
        src = open_image(given)
        assert src.kind == "envi" and src.band_names == list(desc) and src.band_roles["swir2"] == 5
        assert {p.suffix for p in src.paths} == {".img", ".hdr"} and len(src.sha256) == 2
        assert src.grid.crs.to_epsg() == 32651 and src.grid.transform == profile["transform"]
    a, b, valid = full(open_pair(demo_pair[0], tmp_path / "taizhou.hdr"))
    assert valid.all()
    np.testing.assert_array_equal(a, b)


def test_bmp_and_jpeg_from_png(tmp_path: Path, data_dir: Path) -> None:
    png = data_dir / LEVIR.format("A")
    Image.open(png).save(tmp_path / "a.bmp")
    Image.open(png).save(tmp_path / "a.jpg", quality=95)
    for name in ("a.bmp", "a.jpg"):
        src = open_image(tmp_path / name)
        assert src.kind == "image" and len(src.band_names) == 3 and src.band_roles["red"] == 0
    a, b, _ = full(open_pair(png, tmp_path / "a.bmp"))
    np.testing.assert_array_equal(a, b)  # BMP is lossless
    a, b, _ = full(open_pair(png, tmp_path / "a.jpg"))
    assert 0 < np.abs(a - b).mean() < 5  # JPEG is lossy, but the same picture


# ---------- alignment ----------


def test_naip_2009_vs_2020_on_2009_grid(data_dir: Path) -> None:
    before = data_dir / NAIP.format("20090818")
    pair = open_pair(before, data_dir / NAIP.format("20200831"))
    with rasterio.open(before) as ds:
        assert pair.grid.shape == ds.shape == (724, 934) and pair.grid.transform == ds.transform
    assert pair.after.grid.shape == (723, 934)  # a different grid on disk
    assert pair.before.date == "2009-08-18" and pair.band_roles == {"red": 0, "green": 1, "blue": 2, "nir": 3}
    a, b, valid = full(pair)
    assert a.shape == b.shape == (4, 724, 934)
    assert not valid[-1].any() and valid[:-1].all()  # the 2020 raster ends one row earlier
    # reprojected after data stays co-registered: NIR of both years correlates strongly
    assert np.corrcoef(a[3][valid], b[3][valid])[0, 1] > 0.5


def test_hongkong_date2_resampled_onto_date1(data_dir: Path) -> None:
    pair = open_pair(data_dir / "oscd/hongkong/imgs_1", data_dir / "oscd/hongkong/imgs_2")
    assert (pair.grid.width, pair.grid.height) == (540, 695)
    assert (pair.after.grid.width, pair.after.grid.height) == (538, 693)
    a, b, valid = pair.read(Window(0, 0, 540, 300))
    assert a.shape == b.shape == (13, 300, 540) and valid.mean() > 0.99
    assert pair.scene_ref("after").dates == ["2018-03-23"]


def test_window_reads_equal_full_read(data_dir: Path) -> None:
    pair = open_pair(data_dir / "oscd/bercy/imgs_1", data_dir / "oscd/bercy/imgs_2")
    a, b, valid = full(pair)
    seen = np.zeros(valid.shape, bool)
    for read, core, (rs, cs) in iter_windows(pair.grid, 200, halo=7):
        ta, tb, tv = pair.read(read)
        assert ta.shape[1:] == (read.height, read.width)
        r0, c0, h, w = int(core.row_off), int(core.col_off), int(core.height), int(core.width)
        np.testing.assert_array_equal(ta[:, rs, cs], a[:, r0 : r0 + h, c0 : c0 + w])
        np.testing.assert_array_equal(tb[:, rs, cs], b[:, r0 : r0 + h, c0 : c0 + w])
        np.testing.assert_array_equal(tv[rs, cs], valid[r0 : r0 + h, c0 : c0 + w])
        seen[r0 : r0 + h, c0 : c0 + w] = True
    assert seen.all()


def test_warped_window_equals_full_read(data_dir: Path) -> None:
    pair = open_pair(data_dir / "corine_ch/ls100_06.tif", data_dir / "corine_ch/ls100_12.tif")
    _, b, valid = full(pair)
    _, tb, tv = pair.read(Window(100, 120, 150, 90))
    np.testing.assert_array_equal(tb, b[:, 120:210, 100:250])
    np.testing.assert_array_equal(tv, valid[120:210, 100:250])


def test_corine_nearest_keeps_classes(data_dir: Path) -> None:
    after = data_dir / "corine_ch/ls100_12.tif"
    with rasterio.open(after) as ds:
        classes = set(np.unique(ds.read(1))) - {255}
    near = open_pair(data_dir / "corine_ch/ls100_06.tif", after, resampling="nearest")
    _, b, valid = full(near)
    assert set(np.unique(b[0][valid])) <= classes
    assert 0.4 < valid.mean() < 0.6  # lake and outside the clip are nodata 255, masked
    _, b, valid = full(open_pair(data_dir / "corine_ch/ls100_06.tif", after))  # bilinear mixes codes
    assert not set(np.unique(b[0][valid])) <= classes


def test_aoi_crop(demo_pair) -> None:
    whole = open_pair(*demo_pair)
    pair = open_pair(*demo_pair, aoi=(119.86, 32.46, 119.90, 32.50))
    assert 0 < pair.grid.width < 400 and 0 < pair.grid.height < 400
    c0 = round((pair.grid.transform.c - whole.grid.transform.c) / 30)
    r0 = round((whole.grid.transform.f - pair.grid.transform.f) / 30)
    a, b, _ = full(pair)
    wa, wb, _ = whole.read(Window(c0, r0, pair.grid.width, pair.grid.height))
    np.testing.assert_array_equal(a, wa)
    np.testing.assert_array_equal(b, wb)
    with pytest.raises(InputError, match="misses"):
        open_pair(*demo_pair, aoi=(10.0, 40.0, 10.1, 40.1))


def test_rgb_png_vs_rgbn_tif_match_three_roles(tmp_path: Path, data_dir: Path) -> None:
    png = data_dir / LEVIR.format("A")
    rgb = np.asarray(Image.open(png)).transpose(2, 0, 1)
    nir = np.asarray(Image.open(data_dir / LEVIR.format("B")))[..., 0][None]  # real pixels as a 4th band
    # MINISBLACK like real NAIP files (GDAL's default for 4 x uint8 would tag band 4 as alpha)
    profile = {"driver": "GTiff", "width": 256, "height": 256, "photometric": "MINISBLACK"}
    tif = write_tif(tmp_path / "rgbn.tif", np.concatenate([rgb, nir]), profile)
    assert open_image(tif).band_roles == {"red": 0, "green": 1, "blue": 2, "nir": 3}  # NAIP convention
    pair = open_pair(png, tif)
    assert pair.band_names == ["blue", "green", "red"]
    a, b, _ = full(pair)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a[2], rgb[0])


def test_band_tagged_alpha_that_holds_data_is_a_band(tmp_path: Path, data_dir: Path) -> None:
    """GDAL tags band 4 of a 4 x uint8 TIFF as alpha by default: NAIP-like R, G, B, NIR files often carry
    their NIR there. A band with every level is data (the NAIP R, G, B, NIR convention), read on any grid."""
    naip = data_dir / "naip" / "m_4709963_se_14_1_20090818.tif"
    with rasterio.open(naip) as src:
        data, profile = src.read(), {k: v for k, v in src.profile.items() if k not in ("count", "dtype")}
    tif = write_tif(tmp_path / "rgba.tif", data, profile, nodata=None)
    with rasterio.open(tif) as src:
        assert src.colorinterp[3] == ColorInterp.alpha  # what GDAL wrote: the trap
    assert open_image(tif).band_roles == {"red": 0, "green": 1, "blue": 2, "nir": 3}
    a, b, valid = full(open_pair(tif, tif))
    assert a.shape[0] == 4 and valid.all()
    np.testing.assert_array_equal(a[3], data[3])
    # on another grid (the after date half a pixel off): the warp keeps band 4 as data, not an alpha of 0/255
    shifted = write_tif(tmp_path / "shifted.tif", data, profile, nodata=None,
                        transform=profile["transform"] * Affine.translation(0.5, 0))
    _, b, valid = full(open_pair(tif, shifted))
    inner = b[3][:, 1:-1]
    assert len(np.unique(inner)) > 100 and abs(float(inner.mean()) - float(data[3].mean())) < 2.0
    # a real transparency mask stays a mask
    mask = np.where(np.arange(data.shape[2])[None, :] < 100, 0, 255).astype(np.uint8).repeat(data.shape[1], 0)
    masked = write_tif(tmp_path / "masked.tif", np.concatenate([data[:3], mask[None]]), profile, nodata=None)
    assert open_image(masked).band_roles == {"red": 0, "green": 1, "blue": 2}
    _, _, valid = full(open_pair(masked, masked))
    assert not valid[:, :100].any() and valid[:, 100:].all()


def test_png_alpha_dropped_and_masks(tmp_path: Path, data_dir: Path) -> None:
    rgba = np.asarray(Image.open(data_dir / LEVIR.format("A")).convert("RGBA")).copy()
    rgba[:50, :70, 3] = 0
    Image.fromarray(rgba).save(tmp_path / "a.png")
    src = open_image(tmp_path / "a.png")
    assert len(src.band_names) == 3 and src.band_roles == {"blue": 2, "green": 1, "red": 0}
    a, _, valid = full(open_pair(tmp_path / "a.png", data_dir / LEVIR.format("B")))
    assert a.shape[0] == 3 and not valid[:50, :70].any() and valid.sum() == 256 * 256 - 50 * 70


# ---------- nodata ----------


def test_nodata_block_is_invalid(tmp_path: Path, demo_pair) -> None:
    data, profile = demo_pixels(demo_pair[0])
    data = data.copy()
    data[:, 100:160, 200:300] = 0
    tif = write_tif(tmp_path / "nodata.tif", data, profile, nodata=0)
    assert open_image(tif).nodata == 0
    pair = open_pair(tif, demo_pair[1])
    a, b, valid = full(pair)
    assert not valid[100:160, 200:300].any()
    assert (a[:, ~valid] == 0).all() and (b[:, ~valid] == 0).all()  # masked, not a value to use
    np.testing.assert_array_equal(valid, (data != 0).any(axis=0))  # GDAL's dataset mask: nodata in every band
    sa, _ = pair.sample()
    assert sa.shape == (6, valid.sum())  # small scene: every valid pixel, none of the masked ones


def test_float_nan_is_invalid(tmp_path: Path, demo_pair) -> None:
    data, profile = demo_pixels(demo_pair[0])
    data = data.astype("float32")
    data[2, 10:20, 10:20] = np.nan
    tif = write_tif(tmp_path / "nan.tif", data, profile)
    _, _, valid = full(open_pair(tif, demo_pair[1]))
    assert not valid[10:20, 10:20].any() and valid.sum() == 400 * 400 - 100


def test_bands_in_file_order_read_straight_and_reordered_alike(demo_pair) -> None:
    """One file's bands in order are read straight into the result; in another order through a copy: same pixels."""
    from rasterio.enums import Resampling

    from geodelta.perception.io.rasters import ReaderCache, grid_of, read_side

    path = Path(demo_pair[0])
    with rasterio.open(path) as src:
        grid, n, raw = grid_of(src), src.count, src.read(window=Window(30, 40, 200, 100))
    win, cache = Window(30, 40, 200, 100), ReaderCache()
    straight, v1 = read_side([(path, i) for i in range(1, n + 1)], grid, win, Resampling.nearest, cache)
    reordered, v2 = read_side([(path, i) for i in range(n, 0, -1)], grid, win, Resampling.nearest, cache)
    assert straight.dtype == np.float32 and np.array_equal(straight, raw.astype(np.float32))
    assert np.array_equal(reordered, straight[::-1]) and np.array_equal(v1, v2) and v1.any()


# ---------- thumbnails, sample ----------


def test_rgb_thumbnail_and_sample(data_dir: Path, demo_pair) -> None:
    pair = open_pair(*demo_pair)
    thumb = pair.rgb("before", max_size=100)
    assert thumb.shape == (100, 100, 3) and thumb.dtype == np.uint8 and thumb.std() > 20
    assert pair.rgb("after").shape == (400, 400, 3)
    s2 = open_pair(data_dir / "oscd/bercy/imgs_1", data_dir / "oscd/bercy/imgs_2")
    assert s2.rgb("after", max_size=200).shape == (200, 182, 3)
    a, b = s2.sample(max_pixels=5000, seed=1)
    assert a.shape == b.shape == (13, 5000)
    # read once per pair (the masker and the land cover both fit on it), shared read-only
    assert s2.sample(max_pixels=5000, seed=1)[0] is a
    with pytest.raises(ValueError, match="read-only"):
        a[0, 0] = 1.0
    fresh = open_pair(data_dir / "oscd/bercy/imgs_1", data_dir / "oscd/bercy/imgs_2").sample(max_pixels=5000, seed=1)
    np.testing.assert_array_equal(a, fresh[0])
    assert s2.sample(max_pixels=5000, seed=2)[0] is not a


# ---------- errors ----------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        open_image(tmp_path / "nope.tif")


@pytest.mark.parametrize("keep", [100, 200_000, 1_000_000])
def test_truncated_tif(tmp_path: Path, data_dir: Path, demo_pair, keep: int) -> None:
    real = demo_pair[0] if keep < 500_000 else data_dir / NAIP.format("20090818")  # strip and COG layouts
    bad = tmp_path / "cut.tif"
    bad.write_bytes(real.read_bytes()[:keep])
    with pytest.raises(InputError, match="cut.tif"):
        open_image(bad)


def test_not_a_raster(tmp_path: Path, data_dir: Path) -> None:
    bad = tmp_path / "notes.tif"
    shutil.copy(data_dir / "demo/SOURCE.md", bad)
    with pytest.raises(InputError, match="notes.tif"):
        open_image(bad)


def test_crs_on_one_side_only(tmp_path: Path, demo_pair) -> None:
    data, _ = demo_pixels(demo_pair[1])
    Image.fromarray(data[[2, 1, 0]].transpose(1, 2, 0)).save(tmp_path / "after.png")
    with pytest.raises(InputError, match="after.png has no CRS.*georeferenced after image"):
        open_pair(demo_pair[0], tmp_path / "after.png")


def test_plain_images_of_different_size(tmp_path: Path, data_dir: Path) -> None:
    Image.open(data_dir / LEVIR.format("B")).crop((0, 0, 200, 256)).save(tmp_path / "b.png")
    with pytest.raises(InputError, match="same width and height"):
        open_pair(data_dir / LEVIR.format("A"), tmp_path / "b.png")


def test_footprints_do_not_overlap(data_dir: Path, demo_pair) -> None:
    with pytest.raises(InputError, match="does not overlap"):
        open_pair(demo_pair[0], data_dir / NAIP.format("20090818"))


def test_unmatched_band_counts(tmp_path: Path, demo_pair) -> None:
    data, profile = demo_pixels(demo_pair[0])
    six = write_tif(tmp_path / "six.tif", data.astype("uint16"), profile)  # no descriptions, no roles
    five = write_tif(tmp_path / "five.tif", data[:5].astype("uint16"), profile)
    with pytest.raises(InputError, match=r"six.tif \['b1', 'b2', 'b3', 'b4', 'b5', 'b6'\].*five.tif \['b1'"):
        open_pair(six, five)


def test_all_nodata(tmp_path: Path, demo_pair) -> None:
    data, profile = demo_pixels(demo_pair[0])
    tif = write_tif(tmp_path / "empty.tif", np.zeros_like(data), profile, nodata=0)
    with pytest.raises(InputError, match="empty.tif holds no valid pixel"):
        open_image(tif)


def test_folder_without_bands(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="without Sentinel-2 band files"):
        open_image(tmp_path)


# ---------- metadata rules ----------


def test_date_and_role_rules() -> None:
    assert date_from_name("m_4709963_se_14_1_20160816.tif") == "2016-08-16"
    assert date_from_name("taizhou_before_2000-03-17_landsat7_etm.tif") == "2000-03-17"
    assert date_from_name("m_4709963_se_14_1.tif") is None and date_from_name("x_20161340.tif") is None
    assert role_of_description("B4 NIR 0.77-0.90um") == "nir" and role_of_description("Red Edge 1") is None
    assert role_of_description("B7 SWIR2 2.09-2.35um") == "swir2" and role_of_description("infrared") is None
    assert match_bands(["b1", "b2"], {}, ["b1", "b2", "b3"], {}) is None


def test_file_truncated_after_open_fails_on_read(tmp_path: Path, data_dir: Path) -> None:
    copy = tmp_path / "m_20090818.tif"
    shutil.copy(data_dir / NAIP.format("20090818"), copy)
    pair = open_pair(copy, data_dir / NAIP.format("20200831"))
    copy.write_bytes(copy.read_bytes()[:1_000_000])
    with pytest.raises(InputError, match="m_20090818.tif"):
        full(pair)


def test_pair_pickles_for_worker_processes(data_dir: Path) -> None:
    pair = open_pair(data_dir / "oscd/bercy/imgs_1", data_dir / "oscd/bercy/imgs_2")
    win = Window(50, 60, 120, 100)
    a, b, valid = pair.read(win)  # opens and caches handles, which must not travel
    copy = pickle.loads(pickle.dumps(pair))
    ca, cb, cvalid = copy.read(win)
    np.testing.assert_array_equal(a, ca)
    np.testing.assert_array_equal(b, cb)
    np.testing.assert_array_equal(valid, cvalid)
    pair.close()
    np.testing.assert_array_equal(pair.read(win)[1], b)  # handles reopen after close
