"""`describe_changes`: keep the regions the query asks about and group them into S2M quadruples."""

from __future__ import annotations

from langchain_core.tools import BaseTool, StructuredTool
from pydantic import BaseModel, ConfigDict, Field

from geodelta.contracts import ChangeQuery
from geodelta.perception.describe.objects import total_objects
from geodelta.perception.pipeline.detect import describe_stage
from geodelta.tools.context import ToolContext
from geodelta.tools.results import DescribeResult


class DescribeArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    analysis_id: str = Field(description="The analysis_id detect_changes returned.")
    query: ChangeQuery = Field(default_factory=ChangeQuery, description="The change-of-interest from set_query.")


def make(ctx: ToolContext) -> BaseTool:
    def describe_changes(analysis_id: str, query: ChangeQuery | dict | None = None) -> dict:
        """Filter an analysis's regions by the change-of-interest (classes, area, minimum size) and describe
        them as (where, what, how, how many) quadruples with areas. Returns totals, quadruples and region ids."""
        q = ChangeQuery.model_validate(query or {})
        an = ctx.workspace.analysis(analysis_id)
        kept, quads, text = describe_stage(an.regions, q, an.grid, an.mask_tif)
        geo = an.grid.georeferenced
        total = sum((r.area_m2 or 0.0) for r in kept) if geo else sum(r.area_px for r in kept)
        unknown = sum(1 for r in kept if r.from_class == "unknown" or r.to_class == "unknown")
        return DescribeResult(
            analysis_id=analysis_id, n_regions=len(kept), n_regions_all=len(an.regions),
            **{("total_area_m2" if geo else "total_area_px"): round(total, 1)},
            classes_known=an.landcover is not None and unknown < len(kept), n_unknown_class=unknown,
            n_objects=total_objects(kept), quadruples=[qd.to_json() for qd in quads], region_ids=[r.id for r in kept], caption=text,
        ).to_json()

    return StructuredTool.from_function(describe_changes, name="describe_changes", args_schema=DescribeArgs, description=describe_changes.__doc__)
