"""Where tool results live between calls: analyses on disk (JSON + rasters), pairs cached per process.

Tool results sent to the model are small JSON pointing here by id; rasters never enter the model's
context. An analysis folder survives a restart, so a follow-up question in a new process reuses it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from affine import Affine
from rasterio.crs import CRS

from geodelta.contracts import DetectOptions, Region
from geodelta.errors import ToolInputError
from geodelta.perception.io.grid import Grid
from geodelta.perception.io.reader import AlignedPair, open_pair

T = TypeVar("T")


def _stamp(files: Iterable[Path]) -> tuple:
    """(path, mtime_ns, size) of each file, None for a missing one: changes when any file is rewritten."""
    out: list[tuple[str, int, int] | tuple[str, None]] = []
    for f in files:
        try:
            st = Path(f).stat()
            out.append((str(f), st.st_mtime_ns, st.st_size))
        except OSError:
            out.append((str(f), None))
    return tuple(out)


def _copy(an: Analysis) -> Analysis:
    """A copy whose lists and dicts the caller may change (regions are immutable pydantic models)."""
    return replace(an, regions=list(an.regions), stats=dict(an.stats), params=dict(an.params),
                   landcover=dict(an.landcover) if an.landcover is not None else None)


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
    options: DetectOptions = field(default_factory=DetectOptions)  # what the detection ran with

    @property
    def mask_tif(self) -> Path:
        """The change mask the regions now come from: the refined one once refine_regions ran."""
        return self.out_dir / ("change_refined.tif" if self.stats.get("refined") else "change.tif")

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
            "options": self.options.model_dump(mode="json"),
        }


class Workspace:
    """Scenes and analyses of one output root (settings.out)."""

    def __init__(self, root: Path):
        self.root = Path(root).expanduser().resolve()
        self._pairs: dict[str, AlignedPair] = {}
        self._memo: dict[Any, tuple[tuple, Any]] = {}
        # analysis.json path -> (file stamp, Analysis): each tool call of a question reads the analysis, and
        # parsing and validating every region costs 20-70 ms on the demo
        self._analyses: dict[Path, tuple[tuple, Analysis]] = {}

    def memo(self, key: Any, files: Callable[[T], Iterable[Path]], compute: Callable[[], T]) -> T:
        """`compute()` once per `key` in this process, reused while the files the result names
        (`files(result)`) are unchanged on disk (same mtime and size), so a second question on the
        same scene does not fit and score it again (warm reuse, issue 15 item 7)."""
        hit = self._memo.get(key)
        if hit is not None and _stamp(files(hit[1])) == hit[0] and all(x[1] is not None for x in hit[0]):
            return hit[1]
        value = compute()
        self._memo[key] = (_stamp(files(value)), value)
        return value

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
        self._analyses[path] = (_stamp([path]), _copy(analysis))  # the next tool call reads it back without parsing
        return path

    def analysis(self, analysis_id: str) -> Analysis:
        if not analysis_id.startswith("ana_") or "/" in analysis_id or "\\" in analysis_id:
            raise ToolInputError(f"malformed analysis_id {analysis_id!r}: use the id detect_changes returned")
        path = self.root / analysis_id / "analysis.json"
        if not path.is_file():
            raise ToolInputError(f"unknown analysis_id {analysis_id!r}: call detect_changes first")
        hit = self._analyses.get(path)
        if hit is not None and hit[0] == _stamp([path]):  # unchanged since this process wrote or read it
            return _copy(hit[1])
        d = json.loads(path.read_text())
        an = Analysis(
            analysis_id=d["analysis_id"],
            scene_id=d["scene_id"],
            out_dir=path.parent,
            grid=grid_from_json(d["grid"]),
            method=d["method"],
            params=d["params"],
            regions=[Region.model_validate(r) for r in d["regions"]],
            stats=d["stats"],
            landcover=d.get("landcover"),
            # analyses written before options were recorded kept the minimum sizes in stats
            options=DetectOptions.model_validate(d.get("options") or d["stats"].get("options") or {}),
        )
        self._analyses[path] = (_stamp([path]), _copy(an))
        return an
