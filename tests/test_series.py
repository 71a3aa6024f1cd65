"""`geodelta detect D1 D2 D3 D4`: a time series over the four real NAIP dates (2009, 2012, 2016, 2020)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image
from typer.testing import CliRunner

from geodelta.cli import app
from geodelta.errors import InputError
from geodelta.perception.io.reader import open_image
from geodelta.perception.pipeline.series import parse_dates, series_dates

runner = CliRunner()
NAMES = ["m_4709963_se_14_1_20090818.tif", "m_4709963_se_14_1_20120731.tif", "m_4709963_se_14_1_20160816.tif",
         "m_4709963_se_14_1_20200831.tif"]
DATES = ["2009-08-18", "2012-07-31", "2016-08-16", "2020-08-31"]


@pytest.fixture(scope="module")
def naip(data_dir: Path) -> list[Path]:
    return [data_dir / "naip" / n for n in NAMES]


@pytest.fixture(scope="module")
def series_run(naip: list[Path], tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("series")
    res = runner.invoke(app, ["detect", *map(str, naip), "--out", str(out), "--json"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return out, json.loads(res.stdout)


def test_series_writes_intervals_first_change_and_timeline(series_run, naip: list[Path]) -> None:
    out, summary = series_run
    assert summary["dates"] == DATES
    assert [(iv["start"], iv["end"]) for iv in summary["intervals"]] == list(zip(DATES, DATES[1:]))
    for iv in summary["intervals"]:
        for name in ("change.tif", "summary.json", "overlay.png", "regions.geojson"):
            assert (out / iv["dir"] / name).is_file(), (iv["dir"], name)
        assert iv["change"]["changed_m2"] > 0 and "quadruples" in iv
    with rasterio.open(naip[0]) as first_date, rasterio.open(out / "first_change.tif") as fc:
        assert (fc.crs, fc.transform, fc.shape) == (first_date.crs, first_date.transform, first_date.shape)
        assert fc.dtypes[0] == "uint8" and fc.nodata == 255
        f = fc.read(1)
    assert set(np.unique(f)) <= {0, 1, 2, 3, 255}
    by = summary["first_change"]["by_interval_px"]
    assert [int((f == k).sum()) for k in (1, 2, 3)] == by and int((f == 0).sum()) == summary["first_change"]["never_px"]
    # interval 1 is on the first date's grid: its changed pixels are exactly the "first changed in 1" pixels
    with rasterio.open(out / "interval_1" / "change.tif") as c1:
        ch1 = c1.read(1)
    assert np.array_equal(f == 1, ch1 == 1)
    assert not (ch1[f == 2] == 1).any() and not (ch1[f == 3] == 1).any()
    assert by[0] == summary["intervals"][0]["change"]["changed_px"]
    assert sum(by) > 0 and all(b >= 0 for b in by)
    regions = summary["first_change"]["regions"]
    assert regions and all(r["first_interval"] in (1, 2, 3) for r in regions)
    assert all(r["between"] == [DATES[r["first_interval"] - 1], DATES[r["first_interval"]]] for r in regions)
    img = Image.open(out / "timeline.png")
    assert img.size[0] > 400 and img.size[1] > 300
    assert json.loads((out / "summary.json").read_text())["first_change"]["by_interval_px"] == by


def test_dates_must_increase_and_match_the_images(naip: list[Path]) -> None:
    sources = [open_image(p) for p in naip]
    assert series_dates(sources) == DATES  # from the NAIP names (..._20090818.tif)
    with pytest.raises(InputError, match="dates must increase"):
        series_dates([sources[1], sources[0], sources[2]])
    with pytest.raises(InputError, match="one per image"):
        series_dates(sources, parse_dates("2009-08-18,2012-07-31"))
    with pytest.raises(InputError, match="not a date"):
        parse_dates("2009-08-18,yesterday")
    # --dates overrides the metadata, and is checked too
    assert series_dates(sources[:3], parse_dates("2001-01-01,2002-01-01,2003-01-01")) == ["2001-01-01", "2002-01-01", "2003-01-01"]
    with pytest.raises(InputError, match="dates must increase"):
        series_dates(sources[:3], parse_dates("2001-01-01,2001-01-01,2003-01-01"))


def test_cli_rejects_unsorted_series(naip: list[Path], tmp_path: Path) -> None:
    res = runner.invoke(app, ["detect", str(naip[2]), str(naip[0]), str(naip[3]), "--out", str(tmp_path), "-q"])
    assert res.exit_code != 0 and isinstance(res.exception, InputError)
    assert not (tmp_path / "interval_1").exists()


@pytest.mark.slow
def test_ask_when_with_four_dates_dates_the_answer(naip: list[Path], tmp_path: Path) -> None:
    from geodelta.agent.api import Assistant
    from geodelta.settings import Settings

    assistant = Assistant(Settings(out=tmp_path, db=tmp_path / "g.db", backend="embedded"))
    try:
        answer = assistant.ask("when were the fields near the pond built over?", images=naip)
    finally:
        assistant.close()
    series = [e for e in answer.justification if e.tool == "detect_series"]
    assert len(series) == 1, answer.text
    m = re.search(r"Most of it changed between (\S+) and (\S+) \(", answer.text)
    assert m and (m.group(1), m.group(2)) in list(zip(DATES, DATES[1:]))
    assert series[0].claim.endswith(f"between {m.group(1)} and {m.group(2)}") and series[0].value > 0
    assert Path(answer.maps["timeline"]).is_file()
