"""`render_map`: overlay PNG, offline HTML map, GeoJSON/GeoPackage of the regions that match the query."""

from __future__ import annotations

import hashlib

from langchain_core.tools import BaseTool, StructuredTool

from geodelta.contracts import ChangeQuery
from geodelta.perception.describe import regions as describe
from geodelta.perception.pipeline.detect import Detection, render_stage
from geodelta.tools.context import ToolContext
from geodelta.tools.describe import DescribeArgs
from geodelta.tools.results import RenderResult


def make(ctx: ToolContext) -> BaseTool:
    def render_map(analysis_id: str, query: ChangeQuery | dict | None = None) -> dict:
        """Draw the regions that match the query: overlay.png (before | after | change), map.html (offline
        interactive map), regions.geojson and regions.gpkg. Returns the file paths."""
        q = ChangeQuery.model_validate(query or {})
        an = ctx.workspace.analysis(analysis_id)
        kept = describe.filter_regions(an.regions, q, an.grid)
        key = hashlib.sha256(q.model_dump_json().encode()).hexdigest()[:8]
        out = an.out_dir / f"q_{key}"
        out.mkdir(parents=True, exist_ok=True)
        # after refine_regions the map's GeoTIFF is the refined mask the regions came from
        change_tif = an.mask_tif
        det = Detection(an.out_dir, an.grid, an.method, an.params, change_tif, an.out_dir / "change_prob.tif", an.regions, 0, 0)
        # popups name the detect_changes result the regions came from (its audit event holds the tool call id)
        maps = render_stage(ctx.workspace.pair(an.scene_id), det, kept, out, source=f"detect_changes {analysis_id}")
        return RenderResult(analysis_id=analysis_id, maps=maps, n_regions_drawn=len(kept)).to_json()

    return StructuredTool.from_function(render_map, name="render_map", args_schema=DescribeArgs, description=render_map.__doc__)
