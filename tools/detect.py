"""`detect_changes`: run a change masker over the scene, tile by tile, and polygonise the regions."""

from __future__ import annotations

from langchain_core.tools import BaseTool, StructuredTool
from pydantic import BaseModel, ConfigDict, Field

from geodelta.contracts import Focus
from geodelta.perception.change.registry import list_maskers
from geodelta.perception.pipeline.detect import detect_stage
from geodelta.tools.choices import registry_choice
from geodelta.tools.context import ToolContext
from geodelta.tools.results import DetectResult
from geodelta.tools.workspace import Analysis

MaskerName = registry_choice(list_maskers, "change method")


class DetectArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scene_id: str = Field(description="The scene_id load_scene returned.")
    method: MaskerName = Field(  # type: ignore[valid-type]  # an Annotated alias built at run time
        default="auto",
        description="Change masker: auto (the default: picks per input the masker that measured best on that kind of "
                    "imagery, and says why), irmad (training-free, any sensor), cva (training-free), water (new open "
                    "water from a water index; needs green + SWIR/NIR roles), learned "
                    "(GeoDelta's Siamese network: better than irmad on sub-2 m aerial RGB building change, worse on "
                    "10-30 m satellite imagery; runs with onnxruntime, no torch), buildings (the building-change head "
                    "of GeoDelta's pretrained network: best on aerial RGB building change, not on other land change).")
    min_area_m2: float = Field(default=0.0, ge=0, description="Drop regions smaller than this (m²).")
    focus: Focus = Field(
        default="any",
        description="What the question is about: 'buildings' when it asks about buildings appearing or going (new "
                    "houses, demolition), so auto uses the building-change model on aerial RGB; else 'any'.")


def make(ctx: ToolContext) -> BaseTool:
    def detect_changes(scene_id: str, method: str = "auto", min_area_m2: float = 0.0, focus: Focus = "any") -> dict:
        """Find changed pixels between the two dates of a scene with a change masker (auto by default: the best
        measured for the input's bands and resolution, and for a question about buildings on aerial RGB the
        building-change model), clean them and polygonise them into regions. Returns an
        analysis_id, the region count and area, and for auto the method chosen and why."""
        pair = ctx.workspace.pair(scene_id)
        aid, out = ctx.workspace.new_analysis_dir(scene_id, method)
        s = ctx.settings
        # Same scene, method and settings as an earlier call of this process whose rasters are untouched:
        # the same detection (a follow-up question does not fit and score the scene again).
        options = s.detect_options(method=method, min_area_m2=min_area_m2, focus=focus)
        # thumbnails: render_map (which follows in nearly every plan) draws the pair's thumbnails; they are read on
        # detect's helper thread while this one polygonises, and kept on the workspace's pair
        det = ctx.workspace.memo(("detect", scene_id, options.model_dump_json()), lambda d: (d.change_tif, d.prob_tif),
                                 lambda: detect_stage(pair, out, options, progress=ctx.progress, thumbnails=True))
        stats = {"changed_px": det.changed_px, "valid_px": det.valid_px, "timings_s": det.timings}
        if det.grid.pixel_area_m2:
            stats["changed_m2"] = round(det.changed_px * det.grid.pixel_area_m2, 1)
        # the analysis keeps its options: refine_regions re-polygonises with the same minimum size
        ctx.workspace.save(Analysis(aid, scene_id, out, det.grid, method, det.params, det.regions, stats, options=options))
        return DetectResult(
            analysis_id=aid, method=method, chosen_method=det.params.get("chosen"), method_reason=det.params.get("reason"),
            n_regions=len(det.regions), changed_fraction=round(det.changed_px / max(det.valid_px, 1), 5),
            changed_px=det.changed_px, valid_px=det.valid_px, changed_m2=stats.get("changed_m2"), change_tif=str(det.change_tif),
        ).to_json()

    return StructuredTool.from_function(detect_changes, name="detect_changes", args_schema=DetectArgs, description=detect_changes.__doc__)
