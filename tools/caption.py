"""`caption_changes`: a caption of the changes from the quadruples: the S2M template, or the multimodal
model's wording when one is active and every number it writes comes from the quadruples (grounding check)."""

from __future__ import annotations

from langchain_core.tools import BaseTool, StructuredTool

from geodelta.contracts import ChangeQuery
from geodelta.perception.describe.grounding import caption_from_quadruples
from geodelta.perception.pipeline.detect import describe_stage
from geodelta.tools.context import ToolContext
from geodelta.tools.describe import DescribeArgs
from geodelta.tools.results import CaptionResult


def make(ctx: ToolContext) -> BaseTool:
    def caption_changes(analysis_id: str, query: ChangeQuery | dict | None = None) -> dict:
        """Write a short caption of the changes that match the query: category, location and dynamics of the
        changed areas, built only from the measured quadruples."""
        q = ChangeQuery.model_validate(query or {})
        an = ctx.workspace.analysis(analysis_id)
        _, quads, template = describe_stage(an.regions, q, an.grid)
        if ctx.captioner is None:
            return CaptionResult(analysis_id=analysis_id, caption=template, captioner="template").to_json()
        notes: list[str] = []
        text = caption_from_quadruples(ctx.captioner, quads, georeferenced=an.grid.georeferenced, query=q, notes=notes)
        return CaptionResult(analysis_id=analysis_id, caption=text, captioner="model" if text != template else "template",
                             caption_notes=notes or None).to_json()

    return StructuredTool.from_function(caption_changes, name="caption_changes", args_schema=DescribeArgs,
                                        description=caption_changes.__doc__)
