"""One LangChain tool per capability: thin typed adapters over `geodelta.perception`.

Tools return small JSON that points at artefacts on disk by id; rasters never go through a model's
context. `build_tools(ctx)` makes the set for one assistant; the order is the order a plan uses them.
"""

from __future__ import annotations

from langchain_core.tools import BaseTool

from geodelta.tools import caption, describe, detect, landcover, query, recall, refine, render, scene, series
from geodelta.tools.context import ToolContext

_MODULES = (query, scene, detect, landcover, refine, describe, caption, render, series, recall)


def build_tools(ctx: ToolContext) -> list[BaseTool]:
    return [m.make(ctx) for m in _MODULES]


__all__ = ["ToolContext", "build_tools"]
