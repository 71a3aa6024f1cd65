"""GDAL's block cache during detection: bounded by default (DetectOptions.gdal_cache_mb), GDAL_CACHEMAX respected.

With GDAL's default (5 % of RAM) `geodelta detect` on the 20000 px NAIP mosaic peaked at 2.97 GB RSS; with the
256 MiB bound at 1.89 GB (contracts.GDAL_CACHE_MB)."""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import rasterio

from geodelta.contracts import GDAL_CACHE_MB
from geodelta.perception.io.rasters import block_cache
from geodelta.settings import Settings

GEODELTA = str(Path(sys.executable).parent / "geodelta")


def _gdal_cache_max() -> int:
    """GDALGetCacheMax64() of the GDAL that rasterio loaded into this process (bytes)."""
    libs = Path(rasterio.__file__).parent.parent / "rasterio.libs"
    found = sorted(libs.glob("libgdal*.so*")) if libs.is_dir() else []
    if not found:
        pytest.skip("no bundled libgdal next to rasterio (a rasterio built against a system GDAL)")
    lib = ctypes.CDLL(str(found[0]))  # the library rasterio already loaded: the same handle, the same cache
    lib.GDALGetCacheMax64.restype = ctypes.c_int64
    return int(lib.GDALGetCacheMax64())


def test_block_cache_bounds_gdals_cache_even_after_reads(demo_pair) -> None:
    with rasterio.open(demo_pair[0]) as src:
        src.read(1)  # GDAL's cache is set up by now: the bound must still take
    before = _gdal_cache_max()
    with block_cache(48):
        assert _gdal_cache_max() == 48 * 2**20
    with block_cache(None):  # None: GDAL's own setting, untouched
        assert _gdal_cache_max() in (before, 48 * 2**20)


def test_settings_default_to_the_bound_unless_gdal_cachemax_is_set(monkeypatch) -> None:
    monkeypatch.delenv("GDAL_CACHEMAX", raising=False)
    monkeypatch.delenv("GEODELTA_GDAL_CACHE_MB", raising=False)
    assert Settings().gdal_cache_mb == GDAL_CACHE_MB == Settings().detect_options().gdal_cache_mb
    monkeypatch.setenv("GDAL_CACHEMAX", "512")
    assert Settings().gdal_cache_mb is None  # the user's own GDAL setting wins
    monkeypatch.setenv("GEODELTA_GDAL_CACHE_MB", "64")
    assert Settings().detect_options(method="cva").gdal_cache_mb == 64


@pytest.mark.parametrize(("env", "expected"), [({}, GDAL_CACHE_MB), ({"GDAL_CACHEMAX": "300"}, None),
                                               ({"GEODELTA_GDAL_CACHE_MB": "32"}, 32)], ids=["default", "gdal", "geodelta"])
def test_detect_records_the_cache_it_ran_with(env: dict, expected: int | None, demo_pair, tmp_path: Path) -> None:
    """Through the installed script: summary.json's options say which block cache the detection had."""
    full = {k: v for k, v in os.environ.items() if k not in ("GDAL_CACHEMAX", "GEODELTA_GDAL_CACHE_MB")} | env
    proc = subprocess.run([GEODELTA, "detect", *map(str, demo_pair), "--out", str(tmp_path / "o"), "--method", "cva", "-q"],
                          capture_output=True, text=True, env=full, timeout=300)
    assert proc.returncode == 0, proc.stderr
    options = json.loads((tmp_path / "o" / "summary.json").read_text())["options"]
    assert options.get("gdal_cache_mb") == expected
