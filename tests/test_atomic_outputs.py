"""Atomic `detect` outputs: a run killed with SIGKILL leaves DIR with nothing or with complete files only.

The real `geodelta` script runs on a real NAIP pair (4 bands, about 6,000 x 7,500 px) and is killed
while it is writing into its staging folder; a later run into the same DIR sweeps the dead staging folder.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

GEODELTA = str(Path(sys.executable).parent / "geodelta")
OUTPUTS = {"change.tif", "change_prob.tif", "regions.geojson", "regions.gpkg", "overlay.png", "map.html", "summary.json"}


def _naip_pair(data_dir: Path) -> tuple[Path, Path]:
    tiles = sorted((data_dir / "naip").glob("m_*.tif"))
    if len(tiles) < 2:
        pytest.skip(f"NAIP tiles not found in {data_dir / 'naip'}")
    return tiles[0], tiles[1]


def _complete_or_absent(out: Path) -> None:
    if not out.exists():
        return
    names = {p.name for p in out.iterdir()}
    assert "summary.json" in names, f"{out} holds files without summary.json: {names}"
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["outputs"].values()) <= names


@pytest.mark.slow
def test_sigkill_mid_run_leaves_nothing_half_written(tmp_path: Path, data_dir: Path) -> None:
    before, after = _naip_pair(data_dir)
    out = tmp_path / "out"
    proc = subprocess.Popen([GEODELTA, "detect", str(before), str(after), "--out", str(out), "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    staging = tmp_path / f".out.partial-{proc.pid}"
    deadline = time.time() + 240
    # Kill once the run has started writing its rasters into the staging folder.
    while time.time() < deadline and proc.poll() is None:
        if staging.is_dir() and any(staging.glob("*.tif")):
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"detect ended before it could be killed: {proc.stderr.read().decode()[-500:]}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert not out.exists(), "a killed first run must not create DIR"
    assert staging.is_dir()  # the dead run's partial files stay hidden beside DIR

    # The next run into the same DIR completes, and sweeps the dead run's staging folder.
    small_b, small_a = data_dir / "demo" / "taizhou_before_2000-03-17_landsat7_etm.tif", \
        data_dir / "demo" / "taizhou_after_2003-02-06_landsat7_etm.tif"
    done = subprocess.run([GEODELTA, "detect", str(small_b), str(small_a), "--out", str(out), "--quiet"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert OUTPUTS <= {p.name for p in out.iterdir()}
    _complete_or_absent(out)
    assert not staging.exists()
    assert not list(tmp_path.glob(".out.partial-*"))


def test_rerun_replaces_outputs_and_summary_is_last(tmp_path: Path, demo_pair) -> None:
    """Into an existing DIR: old files are replaced, nothing stale or partial is left beside them."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "change.tif").write_bytes(b"stale")
    run = subprocess.run([GEODELTA, "detect", *map(str, demo_pair), "--out", str(out), "--quiet"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert (out / "change.tif").stat().st_size > 100
    _complete_or_absent(out)
    assert not list(tmp_path.glob(".out.partial-*"))
