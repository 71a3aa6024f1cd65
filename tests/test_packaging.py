"""The wheel holds only the `geodelta` package; bare `tools`/`agent` never resolve to our code."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q", "-w", str(dest)],
        check=True,
    )
    (whl,) = dest.glob("geodelta-*.whl")
    return whl


def test_wheel_holds_only_geodelta_and_dist_info(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"geodelta", next(t for t in tops if t.endswith(".dist-info"))}, tops
    # the mapped folders land under geodelta/
    for sub in ("agent", "tools", "perception", "prompts", "memory"):
        assert any(n.startswith(f"geodelta/{sub}/") for n in names), sub
    assert "geodelta/data/demo/taizhou_before_2000-03-17_landsat7_etm.tif" in names
    assert "geodelta/data/demo/ATTRIBUTION.md" in names
    # the learned model's weights and card ship as package data (learned.default_weights() reads them)
    from geodelta.perception.learned.siamese import default_weights

    assert f"geodelta/data/weights/{default_weights().name}" in names
    assert "geodelta/data/weights/MODEL_CARD.md" in names


@pytest.mark.parametrize("bare", ["tools", "agent", "perception", "memory", "prompts"])
def test_bare_top_level_names_are_not_ours(bare: str, tmp_path: Path) -> None:
    code = (
        f"import importlib.util, sys; s = importlib.util.find_spec({bare!r}); "
        "print('none' if s is None else (s.origin or list(s.submodule_search_locations)))"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert str(ROOT) not in res.stdout, f"`import {bare}` resolves to our checkout: {res.stdout}"


def test_console_script_help() -> None:
    exe = Path(sys.executable).with_name("geodelta")
    res = subprocess.run([str(exe), "--help"], capture_output=True, text=True)
    assert res.returncode == 0
    assert "detect" in res.stdout
