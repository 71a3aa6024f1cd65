"""`caption_changes`: a deterministic sentence from the quadruples (CCExpert-style content, S2M template)."""

from __future__ import annotations

from langchain_core.tools import BaseTool, StructuredTool

from geodelta.contracts import ChangeQuery
from geodelta.perception.pipeline.detect import describe_stage
from geodelta.tools.context import ToolContext
from geodelta.tools.describe import DescribeArgs


def make(ctx: ToolContext) -> BaseTool:
    def caption_changes(analysis_id: str, query: ChangeQuery | dict | None = None) -> dict:
        """Write a short caption of the changes that match the query: category, location and dynamics of the
        changed areas, built only from the measured quadruples."""
        q = ChangeQuery.model_validate(query or {})
        an = ctx.workspace.analysis(analysis_id)
        _, _, text = describe_stage(an.regions, q, an.grid)
        return {"analysis_id": analysis_id, "caption": text, "captioner": "template"}

    return StructuredTool.from_function(caption_changes, name="caption_changes", args_schema=DescribeArgs, description=caption_changes.__doc__)
