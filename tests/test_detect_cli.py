"""`geodelta detect` end to end on real data, through the CLI and through the library function."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import rasterio
from PIL import Image
from typer.testing import CliRunner

from geodelta.cli import app
from geodelta.contracts import DetectOptions
from geodelta.perception.evaluation.datasets import labelled_pairs
from geodelta.perception.pipeline.detect import run_detect

runner = CliRunner()
GEODELTA = str(Path(sys.executable).with_name("geodelta"))


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([GEODELTA, *args], capture_output=True, text=True)


def test_detect_georeferenced_demo_writes_every_output(demo_pair, tmp_path: Path) -> None:
    before, after = demo_pair
    res = runner.invoke(app, ["detect", str(before), str(after), "--out", str(tmp_path), "--quiet"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    for name in ("change.tif", "change_prob.tif", "regions.geojson", "regions.gpkg", "overlay.png", "map.html", "summary.json"):
        assert (tmp_path / name).is_file(), name
    with rasterio.open(before) as src_b, rasterio.open(tmp_path / "change.tif") as ch, rasterio.open(tmp_path / "change_prob.tif") as pr:
        assert (ch.width, ch.height, ch.crs, ch.transform) == (src_b.width, src_b.height, src_b.crs, src_b.transform)
        assert ch.dtypes[0] == "uint8" and ch.nodata == 255
        c, p = ch.read(1), pr.read(1)
        assert set(np.unique(c)) <= {0, 1, 255} and (c == 1).any()
        # change_prob: uint8 0-63 with its scale in the metadata (p = stored / 63)
        assert pr.dtypes[0] == "uint8" and pr.scales[0] == pytest.approx(1 / 63) and pr.offsets[0] == 0
        # a pixel is change exactly where its score passed the automatic threshold (before clean-up)
        assert p[c == 1].mean() > p[c == 0].mean()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["method"]["name"] == "auto" and summary["method"]["chosen"] == "irmad"  # Landsat 30 m: irmad measured best
    assert summary["inputs"]["before"]["sha256"][0] and summary["grid"]["crs"] == "EPSG:32651"
    assert summary["regions"] and all(r["area_m2"] > 0 for r in summary["regions"])
    q = summary["quadruples"][0]
    assert {"where", "what", "how", "how_many", "total_area_m2"} <= set(q) and q["what"] == {"from": "unknown", "to": "unknown"}
    assert sum(qd["how_many"] for qd in summary["quadruples"]) == summary["n_regions"]
    assert len(summary["regions"]) == min(summary["n_regions"], 100) and "polygon" not in summary["regions"][0]
    gj = json.loads((tmp_path / "regions.geojson").read_text())
    assert len(gj["features"]) == summary["n_regions"]
    lon, lat = gj["features"][0]["geometry"]["coordinates"][0][0]
    assert 119.7 < lon < 120.1 and 32.3 < lat < 32.7  # Taizhou, in EPSG:4326
    assert pyogrio.read_info(tmp_path / "regions.gpkg")["features"] == summary["n_regions"]


def test_detect_png_pair_is_in_pixels(data_dir: Path, tmp_path: Path) -> None:
    a = data_dir / "levir_crops" / "A" / "test_2_0000_0000.png"
    b = data_dir / "levir_crops" / "B" / "test_2_0000_0000.png"
    summary = run_detect(a, b, tmp_path, DetectOptions(method="cva"))
    assert summary["grid"]["georeferenced"] is False
    assert all(r["area_m2"] is None and r["area_px"] > 0 for r in summary["regions"])
    assert all("total_area_px" in q and "total_area_m2" not in q for q in summary["quadruples"])
    with rasterio.open(tmp_path / "change.tif") as src:
        assert (src.width, src.height) == (256, 256)


def test_detect_sentinel2_folder_on_10m_grid(data_dir: Path, tmp_path: Path) -> None:
    city = data_dir / "oscd" / "bercy"
    summary = run_detect(city / "imgs_1", city / "imgs_2", tmp_path)
    b02 = next((city / "imgs_1").glob("*_B02.tif"))
    with rasterio.open(b02) as ref, rasterio.open(tmp_path / "change.tif") as ch:
        assert (ch.width, ch.height) == (ref.width, ref.height)
        assert ch.crs == ref.crs
    assert len(summary["inputs"]["bands"]) == 13
    # change compares the native 10 m bands only (change.change_band_indices)
    assert summary["method"]["params"]["bands_used"] == ["B02", "B03", "B04", "B08"]


def test_identical_images_give_no_change_answer(demo_pair, tmp_path: Path) -> None:
    before, _ = demo_pair
    res = _cli("detect", str(before), str(before), "--out", str(tmp_path), "--quiet")
    assert res.returncode == 0, res.stderr
    assert "No change was found" in res.stdout
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["regions"] == [] and summary["quadruples"] == []


@pytest.mark.parametrize(
    "case",
    ["missing", "corrupt", "one_crs", "no_overlap", "all_nodata", "band_mismatch", "bad_aoi", "bad_method"],
)
def test_bad_input_is_one_clear_line(case: str, demo_pair, data_dir: Path, tmp_path: Path) -> None:
    before, after = demo_pair
    args = [str(before), str(after)]
    extra: list[str] = []
    if case == "missing":
        args = [str(tmp_path / "nope.tif"), str(after)]
    elif case == "corrupt":
        bad = tmp_path / "corrupt.tif"
        bad.write_bytes(before.read_bytes()[:5000])
        args = [str(bad), str(after)]
    elif case == "one_crs":
        with rasterio.open(after) as src:
            rgb = np.moveaxis(src.read([3, 2, 1]), 0, -1)
        png = tmp_path / "after.png"
        Image.fromarray(rgb).save(png)
        args = [str(before), str(png)]
    elif case == "no_overlap":
        moved = tmp_path / "moved.tif"
        with rasterio.open(after) as src:
            prof = src.profile
            prof["transform"] = src.transform * rasterio.Affine.translation(100_000, 0)
            with rasterio.open(moved, "w", **prof) as dst:
                dst.write(src.read())
        args = [str(before), str(moved)]
    elif case == "all_nodata":
        empty = tmp_path / "empty.tif"
        with rasterio.open(after) as src:
            prof = dict(src.profile, nodata=0)
            with rasterio.open(empty, "w", **prof) as dst:
                dst.write(np.zeros((src.count, src.height, src.width), src.dtypes[0]))
        args = [str(before), str(empty)]
    elif case == "band_mismatch":
        five = tmp_path / "five.tif"
        with rasterio.open(after) as src:
            prof = dict(src.profile, count=5)
            with rasterio.open(five, "w", **prof) as dst:
                dst.write(src.read([1, 2, 3, 4, 5]))
        with rasterio.open(before) as src:
            prof = dict(src.profile)
            six = tmp_path / "six.tif"
            with rasterio.open(six, "w", **prof) as dst:
                dst.write(src.read())
        args = [str(six), str(five)]
    elif case == "bad_aoi":
        extra = ["--aoi", "10,10,11,11"]  # lon/lat box in Africa, the scene is in China
    elif case == "bad_method":
        extra = ["--method", "magic"]
    res = _cli("detect", *args, "--out", str(tmp_path / "out"), "--quiet", *extra)
    assert res.returncode != 0
    assert "Traceback" not in res.stderr, res.stderr
    assert "error" in res.stderr.lower(), res.stderr
    assert len(res.stderr.strip().splitlines()) <= 4, res.stderr


@pytest.mark.slow
def test_detect_runs_on_every_labelled_pair(data_dir: Path, tmp_path: Path) -> None:
    """Issue 2: `detect` runs on every labelled pair of every folder without error."""
    n = 0
    for lp in labelled_pairs(data_dir, extra=True):
        out = tmp_path / lp.domain / lp.name.replace("/", "_")
        summary = run_detect(lp.before, lp.after, out)
        assert (out / "map.html").is_file() and summary["caption"]
        n += 1
        shutil.rmtree(out)
    assert n >= 29
