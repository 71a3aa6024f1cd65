"""Declared band roles (--bands), the water masker, `auto`, and honest answers when roles are unknown.

Real OMBRIA flood pairs (B11/B8/B3 composites saved as plain PNGs, no band names), real LEVIR / Landsat /
OSCD pairs, the installed `geodelta` script for CLI behaviour, a real SQLite memory for the audit trail.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image

from geodelta.errors import InputError
from geodelta.perception.change.auto import choose
from geodelta.perception.io.bands import parse_band_roles
from geodelta.perception.io.reader import open_pair
from geodelta.perception.pipeline.detect import run_detect

GD = str(Path(sys.executable).with_name("geodelta"))


def _ombria(data_dir: Path, n: str = "0013") -> tuple[Path, Path, Path]:
    o = data_dir / "ombria" / "test"
    return o / "before" / f"{n}.png", o / "after" / f"{n}.png", o / "mask" / f"{n}.png"


def test_parse_band_roles_accepts_aliases_and_rejects_unknown_or_repeated_roles():
    assert parse_band_roles("swir1, NIR ,green") == ["swir1", "nir", "green"]
    assert parse_band_roles(["r", "g", "b", "-"]) == ["red", "green", "blue", None]
    with pytest.raises(ValueError, match="unknown band role 'gren'"):
        parse_band_roles("swir1,nir,gren")
    with pytest.raises(ValueError, match="twice"):
        parse_band_roles("red,red,blue")


def test_declared_roles_replace_the_rgb_guess_and_the_count_must_match(data_dir: Path):
    before, after, _ = _ombria(data_dir)
    guessed = open_pair(before, after)
    assert guessed.roles_source == "assumed" and guessed.band_roles == {"red": 0, "green": 1, "blue": 2}
    declared = open_pair(before, after, bands="swir1,nir,green")
    assert declared.roles_source == "declared" and declared.band_roles == {"swir1": 0, "nir": 1, "green": 2}
    assert declared.band_names == ["swir1", "nir", "green"]
    with pytest.raises(InputError, match="declares 2 band roles"):
        open_pair(before, after, bands="swir1,nir")


def test_auto_picks_per_kind_of_input_from_the_measured_table():
    assert choose({"red": 0, "green": 1, "blue": 2}, None)[0] == "learned"  # RGB PNG / aerial
    assert choose({"red": 0, "green": 1, "blue": 2}, 0.5)[0] == "learned"
    assert choose({"blue": 0, "green": 1, "red": 2, "nir": 3}, 10.0)[0] == "cva"  # Sentinel-2 10 m
    assert choose({"blue": 0, "green": 1, "red": 2, "nir": 3, "swir1": 4}, 30.0)[0] == "irmad"  # Landsat
    assert choose({"swir1": 0, "nir": 1, "green": 2}, None)[0] == "water"  # OMBRIA composite
    method, reason = choose({}, None)
    assert method == "irmad" and "no band roles" in reason
    rgb = {"red": 0, "green": 1, "blue": 2}
    # R, G, B alone at coarser pixels (`geodelta bench resolution`): learned still wins at 5 m, not from 10 m on
    assert choose(rgb, 5.0)[0] == "learned" and choose(rgb, 5.0, focus="buildings")[0] == "buildings"
    assert choose(rgb, 10.0)[0] == "cva" and choose(rgb, 10.0, focus="buildings")[0] == "cva"
    method, reason = choose(rgb, 30.0)
    assert method == "irmad" and "RGB only, Landsat Taizhou 30 m" in reason


def test_detect_cli_with_declared_bands_finds_the_flood_and_records_why(data_dir: Path, tmp_path: Path):
    before, after, mask = _ombria(data_dir)
    out = tmp_path / "o"
    proc = subprocess.run([GD, "detect", str(before), str(after), "--out", str(out), "--bands", "swir1,nir,green", "--json"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-800:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"]["name"] == "auto" and summary["method"]["chosen"] == "water"
    assert "OMBRIA" in summary["method"]["reason"]
    assert summary["inputs"]["band_roles_source"] == "declared" and summary["inputs"]["band_roles"]["swir1"] == 0
    with rasterio.open(out / "change.tif") as src:
        pred = src.read(1) == 1
    truth = np.asarray(Image.open(mask).convert("L")) > 127
    iou = (pred & truth).sum() / (pred | truth).sum()
    print(f"OMBRIA 0013 water IoU {iou:.3f}")
    assert iou > 0.45


def test_a_bad_bands_declaration_is_one_clear_line(data_dir: Path, tmp_path: Path):
    before, after, _ = _ombria(data_dir)
    proc = subprocess.run([GD, "detect", str(before), str(after), "--out", str(tmp_path / "o"), "--bands", "swir,nir,grean"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "unknown band role 'grean'" in proc.stderr


def test_water_question_says_roles_are_unknown_instead_of_no_change(data_dir: Path, tmp_path: Path):
    from geodelta import Assistant
    from geodelta.settings import Settings

    before, after, _ = _ombria(data_dir)
    a = Assistant(Settings(out=tmp_path / "out", db=tmp_path / "gd.db", backend="embedded"))
    try:
        plain = a.ask("where did the river flood?", before=before, after=after)
        declared = a.ask("where did the river flood?", before=before, after=after, bands="swir1,nir,green")
        events = a.memory.run_events(declared.audit_id)
    finally:
        a.close()
    if not plain.regions:
        assert plain.text.startswith("I cannot tell") and "--bands" in plain.text
    assert any("band roles" in c and "--bands" in c for c in plain.caveats)
    assert declared.regions and not declared.text.startswith("I cannot tell")
    assert any(e.claim == "change method chosen by auto" and str(e.value).startswith("water") for e in declared.justification)
    question = next(e for e in events if e.kind == "question")
    assert question.args.get("bands") == "swir1,nir,green"
    load = next(e for e in events if e.kind == "tool_call" and e.tool == "load_scene")
    assert load.args.get("bands") == "swir1,nir,green"


def test_auto_on_rgb_and_landsat_runs_the_chosen_masker(data_dir: Path, tmp_path: Path, demo_pair):
    lv = data_dir / "levir_crops"
    s = run_detect(lv / "A" / "test_2_0000_0000.png", lv / "B" / "test_2_0000_0000.png", tmp_path / "lv")
    assert s["method"]["chosen"] == "learned" and s["method"]["params"]["runtime"] == "onnx"
    s = run_detect(*demo_pair, tmp_path / "tz")
    assert s["method"]["chosen"] == "irmad" and "Landsat" in s["method"]["reason"]


def test_irmad_survives_a_reweighting_that_collapses(data_dir: Path):
    # OMBRIA test pair 0057: the iterated weights concentrate until CCA has no direction left (was LinAlgError)
    from geodelta.perception.change.maskers import get_masker

    before, after, _ = _ombria(data_dir, "0057")
    with open_pair(before, after) as pair:
        params = get_masker("irmad").fit(*pair.sample())
    assert np.isfinite(params["threshold"]) and params["threshold"] > 0


def test_auto_on_a_geographic_sentinel2_folder_picks_cva(data_dir: Path, tmp_path: Path):
    # OSCD cities are EPSG:4326: the pixel size comes from degrees at the scene's latitude (about 10 m)
    from geodelta.perception.pipeline.detect import pixel_size_m

    city = data_dir / "oscd" / "rennes"
    with open_pair(city / "imgs_1", city / "imgs_2") as pair:
        assert 7 < pixel_size_m(pair.grid) < 14
    s = run_detect(city / "imgs_1", city / "imgs_2", tmp_path)
    assert s["method"]["chosen"] == "cva" and "Sentinel-2" in s["method"]["reason"]
