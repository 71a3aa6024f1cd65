"""Where tool results live between calls: analyses on disk (JSON + rasters), pairs cached per process.

Tool results sent to the model are small JSON pointing here by id; rasters never enter the model's
context. An analysis folder survives a restart, so a follow-up question in a new process reuses it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from affine import Affine
from rasterio.crs import CRS

from geodelta.contracts import Region
from geodelta.errors import ToolInputError
from geodelta.perception.grid import Grid
from geodelta.perception.io import AlignedPair, open_pair


def grid_to_json(grid: Grid) -> dict[str, Any]:
    return {
        "width": grid.width,
        "height": grid.height,
        "transform": list(grid.transform)[:6],
        "crs": grid.crs.to_wkt() if grid.crs else None,
    }


def grid_from_json(d: dict[str, Any]) -> Grid:
    return Grid(d["width"], d["height"], Affine(*d["transform"]), CRS.from_wkt(d["crs"]) if d["crs"] else None)


@dataclass
class Analysis:
    """One change analysis of one scene, as stored in `<out>/<analysis_id>/analysis.json`."""

    analysis_id: str
    scene_id: str
    out_dir: Path
    grid: Grid
    method: str
    params: dict[str, Any]
    regions: list[Region]
    stats: dict[str, Any]
    landcover: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "analysis_id": self.analysis_id,
            "scene_id": self.scene_id,
            "grid": grid_to_json(self.grid),
            "method": self.method,
            "params": self.params,
            "regions": [r.model_dump(mode="json") for r in self.regions],
            "stats": self.stats,
            "landcover": self.landcover,
        }


class Workspace:
    """Scenes and analyses of one output root (settings.out)."""

    def __init__(self, root: Path):
        self.root = Path(root).expanduser().resolve()
        self._pairs: dict[str, AlignedPair] = {}

    # scenes ---------------------------------------------------------------
    def scene_id(self, before: Path, after: Path, aoi: tuple | None, bands: str | None = None) -> str:
        key = json.dumps([str(before), str(after), aoi] + ([bands] if bands else []))
        return "scn_" + hashlib.sha256(key.encode()).hexdigest()[:12]

    def add_scene(self, before: Path, after: Path, aoi: tuple | None = None, bands: str | None = None) -> tuple[str, AlignedPair]:
        sid = self.scene_id(before, after, aoi, bands)
        pair = self._pairs.get(sid) or open_pair(before, after, aoi=aoi, bands=bands)
        self._pairs[sid] = pair
        path = self.root / "scenes" / f"{sid}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"scene_id": sid, "before": str(before), "after": str(after), "aoi": aoi, "bands": bands}))
        return sid, pair

    def pair(self, scene_id: str) -> AlignedPair:
        if scene_id not in self._pairs:
            path = self.root / "scenes" / f"{scene_id}.json"
            if not path.is_file():
                raise ToolInputError(f"unknown scene_id {scene_id!r}: call load_scene first")
            d = json.loads(path.read_text())
            self._pairs[scene_id] = open_pair(d["before"], d["after"], aoi=tuple(d["aoi"]) if d["aoi"] else None,
                                              bands=d.get("bands"))
        return self._pairs[scene_id]

    # analyses -------------------------------------------------------------
    def new_analysis_dir(self, scene_id: str, method: str) -> tuple[str, Path]:
        aid = "ana_" + hashlib.sha256(f"{scene_id}:{method}".encode()).hexdigest()[:12]
        out = self.root / aid
        out.mkdir(parents=True, exist_ok=True)
        return aid, out

    def save(self, analysis: Analysis) -> Path:
        path = analysis.out_dir / "analysis.json"
        path.write_text(json.dumps(analysis.to_json()))
        return path

    def analysis(self, analysis_id: str) -> Analysis:
        if not analysis_id.startswith("ana_") or "/" in analysis_id or "\\" in analysis_id:
            raise ToolInputError(f"malformed analysis_id {analysis_id!r}: use the id detect_changes returned")
        path = self.root / analysis_id / "analysis.json"
        if not path.is_file():
            raise ToolInputError(f"unknown analysis_id {analysis_id!r}: call detect_changes first")
        d = json.loads(path.read_text())
        return Analysis(
            analysis_id=d["analysis_id"],
            scene_id=d["scene_id"],
            out_dir=path.parent,
            grid=grid_from_json(d["grid"]),
            method=d["method"],
            params=d["params"],
            regions=[Region.model_validate(r) for r in d["regions"]],
            stats=d["stats"],
            landcover=d.get("landcover"),
        )
