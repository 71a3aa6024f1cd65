"""Pydantic models at the memory boundary: audit events in and out, stored records, verify results.

Conventions for audit event content (what the interceptor and the agent write):
- `question`: args = {"question": text}; `answer`: result = {"text": ..., ...}; `clarification`:
  result = {"question": text} (and args = {"reply": text} when resumed).
- `tool_call`: tool, tool_schema_hash (sha256 of the tool's JSON schema), tool_call_id, args.
- `tool_result`: tool, tool_call_id, result (a small JSON summary, never rasters), artefact_hashes,
  duration_ms. `llm_call`: model, duration_ms. `error`: error text (and tool when a tool failed).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from geodelta.contracts import SceneRef

EventKind = Literal["question", "plan", "tool_call", "tool_result", "llm_call", "clarification", "answer", "error"]
EVENT_KINDS: tuple[str, ...] = ("question", "plan", "tool_call", "tool_result", "llm_call", "clarification", "answer", "error")

# prev_hash of the first row of the chain (64 hex zeros).
GENESIS_HASH = "0" * 64


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AuditEventIn(_Model):
    """One event as the writer gives it; `Memory.record` adds id, timestamp and the hash links."""

    kind: EventKind
    run_id: str | None = Field(default=None, description="The audit id: groups all events of one question.")
    thread_id: str | None = None
    actor: str = Field(default="agent", description="Who acted: user, agent, tool, model, system.")
    tool: str | None = None
    tool_schema_hash: str | None = Field(default=None, description="sha256 of the tool's JSON schema.")
    tool_call_id: str | None = None
    args: Any = Field(default=None, description="JSON-able arguments (stored as canonical JSON text).")
    result: Any = Field(default=None, description="JSON-able result summary (stored as canonical JSON text).")
    artefact_hashes: list[str] = Field(default_factory=list, description="sha256 of files the event produced.")
    model: str | None = Field(default=None, description="Model identity, e.g. 'embedded', 'openai:qwen2.5vl'.")
    duration_ms: float | None = Field(default=None, ge=0)
    error: str | None = None


class AuditEvent(AuditEventIn):
    """One stored row of `audit_events`: `hash = sha256(prev_hash + canonical JSON of the row)`."""

    id: int
    ts: datetime = Field(description="UTC time the row was written.")
    prev_hash: str
    hash: str


class VerifyResult(_Model):
    """Outcome of walking the chain; `first_bad_id` and `reason` name the first row that fails."""

    ok: bool
    n: int = Field(description="Rows checked.")
    first_bad_id: int | None = None
    reason: str | None = None
    head_hash: str | None = Field(default=None, description="hash of the last row; keep it to detect truncation.")
    keyed: int = Field(default=0, description="Rows whose HMAC checked under GEODELTA_AUDIT_KEY.")


class SceneRecord(_Model):
    """A scene read from disk once (deduplicated by its files' sha256)."""

    id: str
    created: datetime
    ref: SceneRef
