"""`refine_regions`: snap an analysis's coarse change regions to image boundaries (SAM or superpixels)."""

from __future__ import annotations

from langchain_core.tools import BaseTool, StructuredTool
from pydantic import BaseModel, ConfigDict, Field

from geodelta.perception.landcover.stage import landcover_stage
from geodelta.perception.refine.registry import list_refiners, refiner_from_settings
from geodelta.perception.refine.stage import refine_stage
from geodelta.tools.choices import registry_choice
from geodelta.tools.context import ToolContext
from geodelta.tools.results import RefineResult

RefinerName = registry_choice(list_refiners, "refiner", extra=("auto",))


class RefineArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    analysis_id: str = Field(description="The analysis_id detect_changes returned.")
    refiner: RefinerName = Field(  # type: ignore[valid-type]  # an Annotated alias built at run time
        default="auto", description="auto: SAM when a checkpoint is configured, else superpixels.")


def make(ctx: ToolContext) -> BaseTool:
    def refine_regions(analysis_id: str, refiner: str = "auto") -> dict:
        """Make the change regions' boundaries precise: SAM box+point prompts per region when a SAM checkpoint is
        configured, else training-free superpixel voting. Replaces the analysis's regions (land-cover classes
        are re-assigned if they were known). Returns the refiner used and the region count and area before/after."""
        an = ctx.workspace.analysis(analysis_id)
        pair = ctx.workspace.pair(an.scene_id)
        s = ctx.settings
        ref = refiner_from_settings(s, refiner)
        change_tif = an.out_dir / "change.tif"  # always refine the masker's output, so a second call is idempotent
        # the minimum size the detection used (not the settings' default): refining must not bring back dropped regions
        used = an.options
        out_tif, regions = refine_stage(pair, change_tif, an.out_dir / "change_prob.tif", an.out_dir, ref, tile=used.tile,
                                        min_area_m2=used.min_area_m2, min_area_px=used.min_area_px, progress=ctx.progress)
        before = an.regions
        if an.landcover and an.landcover.get("classes_known"):
            regions, info = landcover_stage(pair, regions, tile=s.tile_size, progress=ctx.progress, change_params=an.params)
            an.landcover = {**an.landcover, **info}
        geo = an.grid.georeferenced
        key = "area_m2" if geo else "area_px"

        def total(rs) -> float:
            return round(sum(getattr(r, key) or 0 for r in rs), 1)

        an.stats["refined"] = {"refined_by": ref.name, "change_tif": out_tif.name, "n_regions_before": len(before),
                               f"total_{key}_before": total(before)}
        an.regions = regions
        ctx.workspace.save(an)
        return RefineResult(
            analysis_id=analysis_id, refined_by=ref.name, n_regions_before=len(before), n_regions=len(regions),
            **{f"total_{key}_before": total(before), f"total_{key}": total(regions)},
            classes_known=bool(an.landcover and an.landcover.get("classes_known")), change_tif=str(out_tif),
        ).to_json()

    return StructuredTool.from_function(refine_regions, name="refine_regions", args_schema=RefineArgs, description=refine_regions.__doc__)
