"""The graph factory `langgraph.json` names, for LangGraph's own server tooling (`langgraph dev`, Agent Server).

    langgraph.json: {"graphs": {"geodelta": "geodelta.agent.langgraph_app:make_graph"}}

The server calls `make_graph(config)` and brings its own checkpointer (threads live in its store),
so the graph is compiled without one. Settings come from the environment (GEODELTA_DB,
GEODELTA_OUT, GEODELTA_BACKEND, ...); tools may open files under GEODELTA_ALLOWED_ROOTS (default:
the server's working folder) because a served graph has no `Assistant` to allow the files a user
named. Input: `{"messages": [question]}` where the question is a human message whose
`additional_kwargs.geodelta` holds `before` / `after` (see `agent/state.py:question_message`).
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from geodelta.settings import Settings


def make_graph(config: Any = None, *, settings: Settings | None = None, checkpointer: Any = None) -> Any:
    """Compile GeoDelta's agent graph with the planner of `settings.backend` (embedded by default).

    `config` (the server's RunnableConfig) may carry `configurable.backend` to pick another planner."""
    settings = settings or Settings()
    backend = ((config or {}).get("configurable") or {}).get("backend") or settings.backend
    if backend != settings.backend:
        settings = settings.model_copy(update={"backend": backend})
    if checkpointer is not None:
        return _build(settings, checkpointer)
    return _cached(settings.model_dump_json())


@lru_cache(maxsize=8)
def _cached(settings_json: str) -> Any:
    """One compiled graph (and one memory connection) per distinct settings: the server calls the factory per run."""
    return _build(Settings.model_validate(json.loads(settings_json)), None)


def _build(settings: Settings, checkpointer: Any) -> Any:
    from geodelta.agent.api import _stream_progress
    from geodelta.agent.audit import Auditor
    from geodelta.agent.graph import build_graph
    from geodelta.agent.mcp_service import allowed_roots
    from geodelta.agent.models import get_chat_model
    from geodelta.memory import Memory
    from geodelta.tools import ToolContext, build_tools

    memory = Memory(settings.db_path)
    ctx = ToolContext.create(settings, memory=memory)
    ctx.allow(*allowed_roots(settings))
    ctx.progress = _stream_progress
    model = get_chat_model(settings.backend, settings)
    auditor = Auditor(memory, getattr(model, "_llm_type", type(model).__name__))
    return build_graph(settings, model, checkpointer, build_tools(ctx), auditor, ctx.workspace)
