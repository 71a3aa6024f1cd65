"""`detect_changes`: run a change masker over the scene, tile by tile, and polygonise the regions."""

from __future__ import annotations

from typing import Literal

from langchain_core.tools import BaseTool, StructuredTool
from pydantic import BaseModel, ConfigDict, Field

from geodelta.perception.pipeline.detect import detect_stage
from geodelta.tools.context import ToolContext
from geodelta.tools.workspace import Analysis


class DetectArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scene_id: str = Field(description="The scene_id load_scene returned.")
    method: Literal["auto", "irmad", "cva", "learned", "water"] = Field(
        default="auto",
        description="Change masker: auto (the default: picks per input the masker that measured best on that kind of "
                    "imagery, and says why), irmad (training-free, any sensor), cva (training-free), water (new open "
                    "water from a water index; needs green + SWIR/NIR roles), learned "
                    "(GeoDelta's Siamese network: better than irmad on sub-2 m aerial RGB building change, worse on "
                    "10-30 m satellite imagery; runs with onnxruntime, no torch).")
    min_area_m2: float = Field(default=0.0, ge=0, description="Drop regions smaller than this (m²).")


def make(ctx: ToolContext) -> BaseTool:
    def detect_changes(scene_id: str, method: str = "auto", min_area_m2: float = 0.0) -> dict:
        """Find changed pixels between the two dates of a scene with a change masker (auto by default: the best
        measured for the input's bands and resolution), clean them and polygonise them into regions. Returns an
        analysis_id, the region count and area, and for auto the method chosen and why."""
        pair = ctx.workspace.pair(scene_id)
        aid, out = ctx.workspace.new_analysis_dir(scene_id, method)
        s = ctx.settings
        # Same scene, method and settings as an earlier call of this process whose rasters are untouched:
        # the same detection (a follow-up question does not fit and score the scene again).
        det = ctx.workspace.memo(
            ("detect", scene_id, method, float(min_area_m2), s.min_area_px, s.tile_size, s.device),
            lambda d: (d.change_tif, d.prob_tif),
            lambda: detect_stage(pair, out, method=method, min_area_m2=min_area_m2, min_area_px=s.min_area_px,
                                 tile=s.tile_size, progress=ctx.progress, device=s.device))
        # the options this detection used: refine_regions re-polygonises with the same minimum size
        stats = {"changed_px": det.changed_px, "valid_px": det.valid_px, "timings_s": det.timings,
                 "options": {"min_area_m2": min_area_m2, "min_area_px": s.min_area_px}}
        if det.grid.pixel_area_m2:
            stats["changed_m2"] = round(det.changed_px * det.grid.pixel_area_m2, 1)
        ctx.workspace.save(Analysis(aid, scene_id, out, det.grid, method, det.params, det.regions, stats))
        return {
            "analysis_id": aid,
            "method": method,
            **({"chosen_method": det.params["chosen"], "method_reason": det.params["reason"]} if "chosen" in det.params else {}),
            "n_regions": len(det.regions),
            "changed_fraction": round(det.changed_px / max(det.valid_px, 1), 5),
            **{k: v for k, v in stats.items() if k not in ("timings_s", "options")},
            "change_tif": str(det.change_tif),
        }

    return StructuredTool.from_function(detect_changes, name="detect_changes", args_schema=DetectArgs, description=detect_changes.__doc__)
