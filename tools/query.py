"""`set_query`: make the change-of-interest explicit, printed and audited before any detection."""

from __future__ import annotations

from langchain_core.tools import BaseTool, StructuredTool

from geodelta.contracts import ChangeQuery
from geodelta.tools.context import ToolContext
from geodelta.tools.results import QueryResult


def make(ctx: ToolContext) -> BaseTool:
    def set_query(**kwargs) -> dict:
        """Record the explicit change-of-interest for this question: from_classes and to_classes over the
        vocabulary (water, tree, low_vegetation, cropland, bare_ground, built_up, other; empty = any), direction
        (appear|disappear|convert|any), area (scene, one of nine sectors, or a lon/lat bbox), min_area_m2 and
        what to report. Call it first for every new question."""
        q = ChangeQuery.model_validate(kwargs)
        return QueryResult(query=q).to_json()

    return StructuredTool.from_function(set_query, name="set_query", args_schema=ChangeQuery, description=set_query.__doc__)
