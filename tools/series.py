"""`detect_series`: change along more than two dates — per interval, and when each place first changed."""

from __future__ import annotations

import hashlib
import json

import numpy as np
from langchain_core.tools import BaseTool, StructuredTool
from pydantic import BaseModel, ConfigDict, Field

from geodelta.errors import ToolInputError
from geodelta.perception.pipeline.series import interval_histograms, run_series
from geodelta.tools.context import ToolContext
from geodelta.tools.detect import MaskerName
from geodelta.tools.results import SeriesResult

MAX_REGIONS = 10  # regions (largest first) returned to the model; summary.json holds more


class SeriesArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    images: list[str] = Field(min_length=3, description="Three or more image paths exactly as the user gave them, oldest first.")
    method: MaskerName = Field(default="irmad", description="Change masker for every interval (irmad default).")  # type: ignore[valid-type]  # an Annotated alias built at run time
    min_area_m2: float = Field(default=0.0, ge=0, description="Drop regions smaller than this (m²).")
    analysis_id: str | None = Field(default=None, description="Optional: an analysis of the first -> last dates whose regions to date.")
    region_ids: list[int] = Field(default_factory=list, description="With analysis_id: the regions to date (describe_changes' region_ids).")


def make(ctx: ToolContext) -> BaseTool:
    def detect_series(images: list[str], method: str = "irmad", min_area_m2: float = 0.0, analysis_id: str | None = None,
                      region_ids: list[int] | None = None) -> dict:
        """Detect change between consecutive dates of three or more images (oldest first) and find in which
        interval each place first changed. Returns per-interval changed areas, the interval where most first
        changes happened, the largest regions with their first_interval and dates, and, given an analysis_id
        and region_ids, in which interval those regions first changed (`asked`)."""
        if len(images) < 3:
            raise ToolInputError("detect_series needs three or more images; use load_scene + detect_changes for two")
        paths = [ctx.check(p) for p in images]
        key = json.dumps([str(p) for p in paths] + [method, min_area_m2])
        sid = "ser_" + hashlib.sha256(key.encode()).hexdigest()[:12]
        out = ctx.workspace.root / sid
        s = run_series(paths, out, ctx.settings.detect_options(method=method, min_area_m2=min_area_m2), progress=ctx.progress)
        fc = s["first_change"]
        intervals = [{
            "interval": iv["interval"], "start": iv["start"], "end": iv["end"],
            "changed_m2": iv["change"].get("changed_m2"), "changed_px": iv["change"]["changed_px"],
            "first_change_m2": iv.get("first_change_m2"), "first_change_px": iv["first_change_px"],
            "n_regions": iv["n_regions"],
        } for iv in s["intervals"]]
        main = fc["main_interval"]
        asked = _date_regions(ctx, analysis_id, region_ids or [], out / "first_change.tif", s) if analysis_id else None
        return SeriesResult(
            asked=asked, series_id=sid, dates=s["dates"], intervals=intervals, main_interval=main,
            main_between=[s["dates"][main - 1], s["dates"][main]] if main else None, never_changed_px=fc["never_px"],
            n_regions=fc["n_regions"], regions=fc["regions"][:MAX_REGIONS], first_change_tif=str(out / "first_change.tif"),
            timeline_png=str(out / "timeline.png"),
        ).to_json()

    return StructuredTool.from_function(detect_series, name="detect_series", args_schema=SeriesArgs, description=detect_series.__doc__)


def _date_regions(ctx: ToolContext, analysis_id: str, region_ids: list[int], first_tif, s: dict) -> dict:
    """Pixels of the given regions of an analysis per first-change interval, and the interval holding most."""
    an = ctx.workspace.analysis(analysis_id)
    wanted = set(region_ids)
    regions = [r for r in an.regions if r.id in wanted] if wanted else list(an.regions)
    hists = interval_histograms(regions, first_tif, an.grid)
    n = len(s["intervals"])
    total = sum((h[: n + 1] for h in hists), start=np.zeros(n + 1, np.int64))
    px_m2 = an.grid.pixel_area_m2
    main = int(total[1:].argmax()) + 1 if total[1:].any() else None
    by = [{"interval": k, "start": s["dates"][k - 1], "end": s["dates"][k], "px": int(total[k]),
           **({"m2": round(float(total[k]) * px_m2, 2)} if px_m2 else {})} for k in range(1, n + 1)]
    return {"analysis_id": analysis_id, "n_regions": len(regions), "never_px": int(total[0]), "by_interval": by,
            "main_interval": main, "main_between": [s["dates"][main - 1], s["dates"][main]] if main else None}
