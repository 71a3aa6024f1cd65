"""`classify_land_cover`: land cover per date, and each region's from -> to classes."""

from __future__ import annotations

from langchain_core.tools import BaseTool, StructuredTool
from pydantic import BaseModel, ConfigDict, Field

from geodelta.perception.landcover.stage import landcover_stage
from geodelta.tools.context import ToolContext
from geodelta.tools.results import LandCoverResult


class LandCoverArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    analysis_id: str = Field(description="The analysis_id detect_changes returned.")


def make(ctx: ToolContext) -> BaseTool:
    def classify_land_cover(analysis_id: str) -> dict:
        """Classify land cover (water, tree, low_vegetation, cropland, bare_ground, built_up, other) at both dates
        with spectral-index rules (multispectral) or colour rules (RGB, low confidence), and assign each change
        region its majority from and to class. Returns the rule set, the mean class confidence and transitions."""
        an = ctx.workspace.analysis(analysis_id)
        pair = ctx.workspace.pair(an.scene_id)
        # The same regions of the same rasters as an earlier call of this process: the same classes.
        key = ("landcover", analysis_id, ctx.settings.tile_size, tuple((r.id, r.bbox_px) for r in an.regions))
        regions, info = ctx.workspace.memo(key, lambda _: (an.out_dir / "change.tif",),
                                           lambda: landcover_stage(pair, an.regions, tile=ctx.settings.tile_size, progress=ctx.progress,
                                                                   change_params=an.params))
        info = dict(info)
        confs = [r.class_confidence for r in regions if r.class_confidence is not None]
        info["mean_class_confidence"] = round(sum(confs) / len(confs), 3) if confs else 0.0
        an.regions, an.landcover = regions, info
        ctx.workspace.save(an)
        return LandCoverResult(analysis_id=analysis_id, **info).to_json()

    return StructuredTool.from_function(classify_land_cover, name="classify_land_cover", args_schema=LandCoverArgs, description=classify_land_cover.__doc__)
