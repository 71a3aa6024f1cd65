"""What each tool returns, typed: the model sees `to_json()` of these (small JSON pointing at files and ids),
the answer composer and the audit trail read the same shape. Areas are m² on a georeferenced grid, else pixels."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from geodelta.contracts import ChangeQuery


class ToolResult(BaseModel):
    """Base: forbids unknown fields; `to_json` leaves out the optional fields that do not apply (None)."""

    model_config = ConfigDict(extra="forbid")
    OMIT_WHEN_NONE: ClassVar[frozenset[str]] = frozenset()

    def to_json(self) -> dict[str, Any]:
        d = self.model_dump(mode="json")
        return {k: v for k, v in d.items() if not (v is None and k in self.OMIT_WHEN_NONE)}


class SceneResult(ToolResult):
    scene_id: str
    width: int
    height: int
    crs: str | None
    georeferenced: bool
    bands: list[str]
    band_roles: dict[str, int]
    band_roles_source: str
    dates: list[str | None] = Field(description="Acquisition date of before and after (None: unknown).")
    sha256: dict[str, list[str]]


class DetectResult(ToolResult):
    OMIT_WHEN_NONE = frozenset({"chosen_method", "method_reason", "changed_m2"})
    analysis_id: str
    method: str
    chosen_method: str | None = Field(default=None, description="What `auto` picked.")
    method_reason: str | None = None
    n_regions: int
    changed_fraction: float
    changed_px: int
    valid_px: int
    changed_m2: float | None = None
    change_tif: str


class DescribeResult(ToolResult):
    OMIT_WHEN_NONE = frozenset({"total_area_m2", "total_area_px", "n_objects"})
    analysis_id: str
    n_regions: int = Field(description="Regions that match the query.")
    n_regions_all: int
    total_area_m2: float | None = None
    total_area_px: float | None = None
    classes_known: bool
    n_unknown_class: int
    n_objects: int | None = Field(default=None, description="Separate objects (buildings) in the kept regions, "
                                  "touching ones split; only for a question about buildings.")
    quadruples: list[dict[str, Any]] = Field(description="S2M quadruples, summary.json's shape (what.from / what.to).")
    region_ids: list[int]
    caption: str


class LandCoverResult(ToolResult):
    model_config = ConfigDict(extra="allow")  # rule-set specific details (thresholds, chip counts) pass through
    analysis_id: str
    rule_set: str
    classes_known: bool
    roles: dict[str, int]
    caveat: str | None = None
    transitions: dict[str, int] = Field(default_factory=dict, description='"from->to" -> region count.')
    mean_class_confidence: float


class RefineResult(ToolResult):
    model_config = ConfigDict(extra="allow")  # total_area_{m2,px}{,_before}
    analysis_id: str
    refined_by: str
    n_regions_before: int
    n_regions: int
    classes_known: bool
    change_tif: str


class RenderResult(ToolResult):
    analysis_id: str
    maps: dict[str, str] = Field(description="Output kind -> file path.")
    n_regions_drawn: int


class CaptionResult(ToolResult):
    OMIT_WHEN_NONE = frozenset({"caption_notes"})
    analysis_id: str
    caption: str
    captioner: str = Field(description="model (a grounded model caption) or template.")
    caption_notes: list[str] | None = None


class QueryResult(ToolResult):
    query: ChangeQuery


class RecallResult(ToolResult):
    scenes: list[dict[str, Any]]
    analyses: list[dict[str, Any]]


class SeriesResult(ToolResult):
    asked: dict[str, Any] | None
    series_id: str
    dates: list[str]
    intervals: list[dict[str, Any]]
    main_interval: int | None
    main_between: list[str] | None
    never_changed_px: int
    n_regions: int
    regions: list[dict[str, Any]]
    first_change_tif: str
    timeline_png: str


__all__ = ["CaptionResult", "DescribeResult", "DetectResult", "LandCoverResult", "QueryResult", "RecallResult",
           "RefineResult", "RenderResult", "SceneResult", "SeriesResult", "ToolResult"]
