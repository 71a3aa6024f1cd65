"""STAC Items in: items written by pystac over the real Sentinel-2 (OSCD) and NAIP files in ../shared/data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import rasterio

pystac = pytest.importorskip("pystac")
from pystac.extensions.eo import Band, EOExtension  # noqa: E402

from geodelta.errors import InputError  # noqa: E402
from geodelta.perception.io.reader import open_image, open_pair  # noqa: E402
from geodelta.perception.io.stac import read_item  # noqa: E402
from geodelta.perception.pipeline.detect import run_detect  # noqa: E402

GEODELTA = str(Path(sys.executable).with_name("geodelta"))
# ESA Sentinel-2 MSI band -> STAC EO common name (STAC EO extension table).
S2_COMMON = {"B01": "coastal", "B02": "blue", "B03": "green", "B04": "red", "B05": "rededge", "B06": "rededge",
             "B07": "rededge", "B08": "nir", "B8A": "nir08", "B09": "nir09", "B10": "cirrus", "B11": "swir16",
             "B12": "swir22"}
CITY = "abudhabi"  # an OSCD city with exactly B02 B03 B04 B08 B11 B12 on disk


def _date(text: str) -> datetime:
    return datetime.strptime(text, "%Y%m%d").replace(tzinfo=UTC)


def s2_item(folder: Path, when: datetime, dest: Path, *, relative: bool = False) -> Path:
    """One pystac Item per OSCD date folder: one asset per band file, eo:bands with the S2 common name."""
    item = pystac.Item(id=f"{folder.parent.name}-{folder.name}", geometry=None, bbox=None, datetime=when, properties={})
    for f in sorted(folder.glob("*_B*.tif")):
        band = f.stem.rsplit("_", 1)[1].upper()
        href = os.path.relpath(f, dest.parent) if relative else str(f)
        asset = pystac.Asset(href=href, media_type=pystac.MediaType.GEOTIFF, roles=["data"])
        item.add_asset(band, asset)
        EOExtension.ext(asset, add_if_missing=True).bands = [Band.create(name=band, common_name=S2_COMMON[band])]
    dest.write_text(json.dumps(item.to_dict(include_self_link=False)))
    return dest


def naip_item(tif: Path, dest: Path) -> Path:
    """A NAIP Item: one 4-band asset (R, G, B, NIR per naip/SOURCE.md) plus a thumbnail that must be skipped."""
    when = datetime.strptime(tif.stem.rsplit("_", 1)[1], "%Y%m%d").replace(tzinfo=UTC)
    item = pystac.Item(id=tif.stem, geometry=None, bbox=None, datetime=when, properties={})
    asset = pystac.Asset(href=str(tif), media_type=pystac.MediaType.COG, roles=["data"])
    item.add_asset("image", asset)
    EOExtension.ext(asset, add_if_missing=True).bands = [
        Band.create(name=n, common_name=n) for n in ("red", "green", "blue", "nir")]
    thumb = pystac.Asset(href=str(tif), media_type=pystac.MediaType.PNG, roles=["thumbnail"])
    item.add_asset("thumbnail", thumb)
    EOExtension.ext(thumb, add_if_missing=True).bands = [Band.create(name="x", common_name="red")]
    dest.write_text(json.dumps(item.to_dict(include_self_link=False)))
    return dest


@pytest.fixture
def oscd_items(data_dir: Path, tmp_path: Path) -> tuple[Path, Path, Path]:
    city = data_dir / "oscd" / CITY
    if not city.is_dir():
        pytest.skip(f"{city} not found")
    dates = dict(line.split(": ") for line in (city / "dates.txt").read_text().split("\n") if ": " in line)
    b = s2_item(city / "imgs_1", _date(dates["date_1"]), tmp_path / "before.json")
    a = s2_item(city / "imgs_2", _date(dates["date_2"]), tmp_path / "after.json", relative=True)
    return city, b, a


@pytest.fixture
def naip(data_dir: Path) -> list[Path]:
    files = sorted((data_dir / "naip").glob("m_*.tif"))
    if len(files) < 2:
        pytest.skip("naip/ not found")
    return files


def test_s2_item_bands_by_common_name_and_date_from_datetime(oscd_items) -> None:
    city, before, after = oscd_items
    item = read_item(after)  # relative hrefs, resolved from the item's folder
    assert [b.role for b in item.bands] == ["blue", "green", "red", "nir", "swir1", "swir2"]
    assert all(b.file.is_file() and b.file.parent == (city / "imgs_2").resolve() for b in item.bands)
    src = open_image(before)
    assert src.kind == "stac" and src.band_names == ["B02", "B03", "B04", "B08", "B11", "B12"]
    assert src.band_roles == {"blue": 0, "green": 1, "red": 2, "nir": 3, "swir1": 4, "swir2": 5}
    dates = (city / "dates.txt").read_text()
    assert src.date.replace("-", "") in dates and open_image(after).date.replace("-", "") in dates
    assert src.date < open_image(after).date
    # the 10 m grid is the grid of the finest asset (B02), as for the band folder
    folder = open_image(city / "imgs_1")
    assert src.grid == folder.grid
    assert len(src.sha256) == len(src.paths) == 7  # the item JSON + its six band files


def test_detect_on_s2_items_matches_detect_on_band_folders(oscd_items, tmp_path: Path) -> None:
    city, before, after = oscd_items
    via_items = run_detect(before, after, tmp_path / "items")
    via_folders = run_detect(city / "imgs_1", city / "imgs_2", tmp_path / "folders")
    assert via_items["inputs"]["bands"] == via_folders["inputs"]["bands"] == ["B02", "B03", "B04", "B08", "B11", "B12"]
    assert via_items["inputs"]["before"]["dates"] == via_folders["inputs"]["before"]["dates"]
    assert via_items["change"]["changed_px"] > 0
    with rasterio.open(tmp_path / "items" / "change.tif") as x, rasterio.open(tmp_path / "folders" / "change.tif") as y:
        assert np.array_equal(x.read(1), y.read(1))


def test_naip_items_pick_rgbnir_skip_thumbnail_and_align(naip, tmp_path: Path) -> None:
    b = naip_item(naip[0], tmp_path / "b.json")
    a = naip_item(naip[-1], tmp_path / "a.json")
    item = read_item(b)
    assert [(x.role, x.index) for x in item.bands] == [("blue", 3), ("green", 2), ("red", 1), ("nir", 4)]
    with open_pair(b, a) as pair:
        assert pair.band_names == ["blue", "green", "red", "nir"]
        assert pair.scene_ref("before").dates == ["2009-08-18"] and pair.scene_ref("after").dates == ["2020-08-31"]
        with rasterio.open(naip[0]) as src:
            assert (pair.grid.width, pair.grid.height) == (src.width, src.height)
            win = rasterio.windows.Window(0, 0, 64, 64)
            ref = src.read(window=win).astype(np.float32)
        x, _, valid = pair.read(win)
        assert valid.all() and np.array_equal(x[2], ref[0]) and np.array_equal(x[0], ref[2])  # red is band 1, blue 3
    # a STAC item pairs with a plain GeoTIFF too (bands matched by role)
    with open_pair(b, naip[-1]) as mixed:
        assert set(mixed.band_roles) == {"blue", "green", "red", "nir"}


def test_cli_detect_on_stac_items(naip, tmp_path: Path) -> None:
    b = naip_item(naip[0], tmp_path / "b.json")
    a = naip_item(naip[1], tmp_path / "a.json")
    res = subprocess.run([GEODELTA, "detect", str(b), str(a), "--out", str(tmp_path / "out"), "--json"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["inputs"]["before"]["paths"][0] == str(b.resolve())
    assert summary["inputs"]["after"]["dates"] == ["2012-07-31"]
    assert summary["change"]["changed_m2"] > 0 and (tmp_path / "out" / "change.tif").is_file()


def _write(path: Path, doc: dict) -> Path:
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize(
    ("doc", "needle"),
    [
        ({"type": "Collection", "id": "c", "links": []}, "not a STAC Item"),
        ({"type": "Feature", "id": "r", "properties": {}, "assets": {"b": {"href": "https://example.com/b.tif",
          "eo:bands": [{"name": "B02", "common_name": "blue"}]}}}, "is remote"),
        ({"type": "Feature", "id": "m", "properties": {}, "assets": {"b": {"href": "missing.tif",
          "eo:bands": [{"common_name": "red"}]}}}, "does not exist"),
        ({"type": "Feature", "id": "n", "properties": {}, "assets": {"b": {"href": "x.tif"}}}, "no local raster asset with eo:bands"),
    ],
)
def test_bad_items_are_actionable_errors(tmp_path: Path, doc: dict, needle: str) -> None:
    path = _write(tmp_path / "item.json", doc)
    with pytest.raises(InputError, match=needle):
        open_image(path)
    res = subprocess.run([GEODELTA, "detect", str(path), str(path), "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert res.returncode != 0 and "Traceback" not in res.stderr and needle in " ".join(res.stderr.split())


def test_invalid_json_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    with pytest.raises(InputError, match="cannot read .* as a STAC Item JSON"):
        open_image(path)
