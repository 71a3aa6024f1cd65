"""`recall`: what this workspace already knows (scenes loaded, analyses run) so follow-ups reuse them."""

from __future__ import annotations

import json

from langchain_core.tools import BaseTool, StructuredTool
from pydantic import BaseModel, ConfigDict

from geodelta.tools.context import ToolContext
from geodelta.tools.results import RecallResult


class RecallArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")


def make(ctx: ToolContext) -> BaseTool:
    def recall() -> dict:
        """List the scenes and analyses stored in the workspace (ids, images, methods, region counts)."""
        root = ctx.workspace.root
        scenes = [json.loads(p.read_text()) for p in sorted((root / "scenes").glob("*.json"))]
        analyses = []
        for p in sorted(root.glob("ana_*/analysis.json")):
            d = json.loads(p.read_text())
            analyses.append({"analysis_id": d["analysis_id"], "scene_id": d["scene_id"], "method": d["method"], "n_regions": len(d["regions"])})
        return RecallResult(scenes=scenes, analyses=analyses).to_json()

    return StructuredTool.from_function(recall, name="recall", args_schema=RecallArgs, description=recall.__doc__)
