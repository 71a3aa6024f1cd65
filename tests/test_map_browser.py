"""map.html opened from disk (file://) in headless chromium with no network: Leaflet runs offline.

Skips when no chromium binary is installed (`apt-get install chromium`).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.errors import NotGeoreferencedWarning

from geodelta.perception.describe import regions as describe
from geodelta.perception.io.grid import Grid
from geodelta.perception.render import outputs as render

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# No network: every remote fetch fails fast (--host-resolver-rules maps all hosts to nothing).
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND", "--virtual-time-budget=5000", "--window-size=900,700",
]


def _chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    if CHROMIUM is None:
        pytest.skip("no chromium binary on PATH: install it (Debian: apt-get install chromium) to run browser tests")
    cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp / 'profile'}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def _rgb(path: Path, bands) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path) as ds:
            a = ds.read(list(bands)).astype(np.float32)
    lo, hi = np.percentile(a, (2, 98))
    return np.moveaxis((np.clip((a - lo) / max(hi - lo, 1), 0, 1) * 255).astype(np.uint8), 0, -1)


def _map(tmp: Path, ref_path: Path, rgb_path: Path, bands, change_of, georeferenced: bool) -> tuple[Path, int]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(ref_path) as ds:
            change = change_of(ds.read(1))
            grid = Grid(ds.width, ds.height, ds.transform, ds.crs) if georeferenced else Grid(ds.width, ds.height)
    with render.write_geotiff(tmp / "change.tif", grid, "uint8", 255) as dst:
        dst.write(change, 1)
    regions = describe.regions_from_rasters(tmp / "change.tif", None, grid)
    rgb = _rgb(rgb_path, bands)
    before = rgb[:, ::-1].copy()  # a visibly different "before" image, so the swipe shows two pictures
    path = render.map_html(rgb, grid, regions, tmp / "map.html", before_rgb=before, change=change, title="browser test",
                           source="call_detect_browser")
    return path, len(regions)


def _check_dom(tmp: Path, page: Path, n_regions: int) -> str:
    run = _chromium(tmp, "--dump-dom", page.as_uri())
    dom = run.stdout
    assert run.returncode == 0 and "leaflet-container" in dom, run.stderr[-2000:]
    paths = re.findall(r'<path\b[^>]*class="leaflet-interactive"', dom)
    assert len(paths) == n_regions > 0
    imgs = re.findall(r'<img\b[^>]*class="[^"]*leaflet-image-layer[^>]*>', dom)
    assert len(imgs) == 3  # before, after, change mask
    before = next(i for i in imgs if "gd-before" in i)
    assert re.search(r"clip-path:\s*inset\(0px [\d.]+px 0px 0px\)", before)  # the swipe clips "before"
    assert re.search(r'<input\b[^>]*class="gd-swipe"', dom)
    assert "leaflet-control-layers" in dom
    assert f"all {n_regions} region" in dom and "regions.gpkg" in dom  # the note on what is drawn
    assert re.search(r'class="gd-legend-row".*change \(classes not determined\) \(\d+\)', dom)
    # the URL hash opens a region's popup: area, classes, confidence, the tool call behind it
    popup = _chromium(tmp, "--dump-dom", page.as_uri() + "#region=1").stdout
    m = re.search(r'<div class="gd-popup">(.*?)</div>', popup)
    assert m, popup[-2000:]
    assert "region 1" in m.group(1) and "area:" in m.group(1) and "confidence:" in m.group(1)
    assert "unknown → unknown" in m.group(1) or "unknown &rarr; unknown" in m.group(1)
    assert "call_detect_browser" in m.group(1)
    return dom


def test_demo_map_renders_offline(data_dir: Path, tmp_path: Path):
    demo = data_dir / "demo"
    page, n = _map(
        tmp_path, demo / "taizhou_change_reference.tif", demo / "taizhou_after_2003-02-06_landsat7_etm.tif", (3, 2, 1),
        lambda ref: np.where(ref == 1, 1, np.where(ref == 0, 0, 255)).astype(np.uint8), georeferenced=True,
    )
    _check_dom(tmp_path, page, n)
    shot = tmp_path / "shot.png"
    run = _chromium(tmp_path, f"--screenshot={shot}", page.as_uri())
    assert shot.exists(), run.stderr[-2000:]
    img = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert img.std() > 20  # the satellite image is drawn, not a blank page
    red = (img[..., 0] > 180) & (img[..., 1] < 90) & (img[..., 2] < 90)
    assert red.sum() > 200  # region outlines are drawn
    h, w = img.shape[:2]
    divider = img[h // 4 : 3 * h // 4, w // 2 - 2 : w // 2 + 2].min(axis=2).max(axis=1)
    assert (divider > 230).mean() > 0.9  # the white swipe divider runs down the middle
    # left of the divider is the (mirrored) before image, right of it the after image: they differ
    left, right = img[h // 3 : 2 * h // 3, w // 2 - 60 : w // 2 - 10], img[h // 3 : 2 * h // 3, w // 2 + 10 : w // 2 + 60]
    assert np.abs(left - right[:, ::-1]).mean() < np.abs(left - right).mean()
    legend = img[h - 120 :, w - 300 :]
    assert (legend.min(axis=2) > 245).mean() > 0.3  # the white legend box sits bottom right


def test_unreferenced_map_uses_pixel_crs(data_dir: Path, tmp_path: Path):
    d = data_dir / "levir_crops"
    page, n = _map(
        tmp_path, d / "label" / "test_7_0256_0512.png", d / "B" / "test_7_0256_0512.png", (1, 2, 3),
        lambda lab: (lab > 127).astype(np.uint8), georeferenced=False,
    )
    _check_dom(tmp_path, page, n)
