"""Shared fixtures: the real data folder (GEODELTA_DATA) and temporary databases."""

from __future__ import annotations

from pathlib import Path

import pytest

from geodelta.settings import Settings


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """`../shared/data` (or GEODELTA_DATA); tests that need it skip with the reason when absent."""
    path = Settings().data
    if not path.is_dir():
        pytest.skip(f"real data folder not found at {path}: set GEODELTA_DATA to ../shared/data")
    return path


@pytest.fixture
def demo_pair(data_dir: Path) -> tuple[Path, Path]:
    """The georeferenced Landsat Taizhou pair (EPSG:32651, 30 m, 6 bands)."""
    d = data_dir / "demo"
    return d / "taizhou_before_2000-03-17_landsat7_etm.tif", d / "taizhou_after_2003-02-06_landsat7_etm.tif"


@pytest.fixture
def tmp_db(tmp_path: Path) -> Path:
    return tmp_path / "geodelta.db"
