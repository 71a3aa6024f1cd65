"""The one interceptor every tool call goes through: time it, and write call/result/error to the audit chain.

Argument validation happens in the tool (pydantic schema), path checks in `tools.paths`; this wrapper
only observes, so a tool behaves the same with or without an audit trail.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast

from langchain_core.messages import ToolMessage
from langgraph.prebuilt.tool_node import ToolCallRequest
from langgraph.types import Command

from geodelta.errors import GeoDeltaError

# The audit id of the question being answered; a ContextVar so concurrent asks in threads stay apart.
current_run: contextvars.ContextVar[tuple[str | None, str | None]] = contextvars.ContextVar("geodelta_run", default=(None, None))


def schema_hash(tool: Any) -> str | None:
    """sha256 of the tool's JSON schema as the model sees it (a changed docstring changes the hash)."""
    if tool is None:
        return None
    schema = {"name": tool.name, "description": tool.description, "args": tool.tool_call_schema.model_json_schema()}
    return hashlib.sha256(json.dumps(schema, sort_keys=True).encode()).hexdigest()


def _artefact_hashes(result: dict[str, Any]) -> list[str]:
    from geodelta.perception.io.checksum import file_sha256

    paths = list((result.get("maps") or {}).values())
    if result.get("change_tif"):
        paths.append(result["change_tif"])
    return [file_sha256(p) for p in paths if p and Path(p).is_file()]


def tool_error(call: Mapping[str, Any], exc: GeoDeltaError) -> ToolMessage:
    """An error ToolMessage for a refused call; the artifact keeps the error kind and its exit code."""
    return ToolMessage(content=f"Error: {exc}", name=call["name"], tool_call_id=call["id"], status="error",
                       artifact={"error_type": type(exc).__name__, "exit_code": exc.exit_code})


class Auditor:
    """Writes audit events through `Memory.record`; a no-op when the assistant runs without memory."""

    def __init__(self, memory: Any, model_name: str):
        self.memory = memory
        self.model_name = model_name

    def record(self, kind: str, **fields: Any) -> Any:
        if self.memory is None:
            return None
        from geodelta.memory.models import AuditEventIn

        run_id, thread_id = current_run.get()
        return self.memory.record(AuditEventIn(kind=kind, run_id=run_id, thread_id=thread_id, **fields))

    def wrap_tool_call(self, request: ToolCallRequest,
                       execute: Callable[[ToolCallRequest], ToolMessage | Command[Any]]) -> ToolMessage | Command[Any]:
        call = request.tool_call
        common = {"tool": call["name"], "tool_call_id": call["id"]}
        self.record("tool_call", actor="model", args=call["args"], tool_schema_hash=schema_hash(request.tool), model=self.model_name, **common)
        t0 = time.perf_counter()
        try:
            msg = execute(request)
        except GeoDeltaError as exc:  # the tool refused: the model and the person see the actionable message
            msg = tool_error(call, exc)
        ms = (time.perf_counter() - t0) * 1000
        if isinstance(msg, ToolMessage) and msg.status == "error":
            self.record("error", actor="tool", error=str(msg.content), duration_ms=ms, **common)
            return msg
        try:
            result = json.loads(cast(str, msg.content)) if isinstance(msg, ToolMessage) else {}  # list content: TypeError
        except (TypeError, json.JSONDecodeError):
            result = {"text": str(getattr(msg, "content", ""))[:2000]}
        summary = {k: v for k, v in result.items() if k not in ("region_ids",)}
        self.record("tool_result", actor="tool", result=summary, artefact_hashes=_artefact_hashes(result), duration_ms=ms, **common)
        return msg
