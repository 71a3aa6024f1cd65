"""What the MCP server does, without the MCP SDK: path policy, the calls, and their audit events.

`McpService` owns one `Assistant` (one planner, one memory file, many threads) and answers the
server's tools synchronously; `agent/mcp_server.py` runs these methods in worker threads and turns
their progress callbacks into MCP progress notifications. Every call writes `tool_call` and then
`tool_result` or `error` events (actor `mcp_client`, tool `mcp.<name>`) to the same audit chain as
the agent's own tool calls, so a refused path is on record too.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from geodelta.errors import GeoDeltaError, ToolInputError
from geodelta.settings import Settings

# what a `tool_result` event keeps of a call's result (small JSON, never regions or rasters)
_SUMMARY_KEYS = ("audit_id", "thread_id", "text", "maps", "clarification", "ok", "n", "caption", "change", "outputs", "n_regions")
# progress(message): one step of long work, forwarded to the client as a progress notification
Progress = Callable[[str], None]


def allowed_roots(settings: Settings, cwd: Path | None = None) -> list[Path]:
    """GEODELTA_ALLOWED_ROOTS split on os.pathsep and resolved; the working folder when empty."""
    parts = [p for p in settings.allowed_roots.split(os.pathsep) if p.strip()]
    base = (cwd or Path.cwd()).resolve()
    roots = [(base / Path(p).expanduser()).resolve() for p in parts] or [base]
    return list(dict.fromkeys(roots))


def check_allowed(path: str, roots: list[Path]) -> Path:
    """Resolve `path` (relative to the working folder) and accept it only under an allowed root.

    A STAC Item is accepted only when every asset file it points at is allowed too, so an item
    cannot smuggle in a file outside the roots."""
    from geodelta.perception.io.stac import is_stac_path, read_item
    from geodelta.tools.paths import check_path

    shown = os.pathsep.join(str(r) for r in roots)
    try:
        resolved = check_path(path, list(roots))
    except ToolInputError:
        raise ToolInputError(f"path {path!r} is outside the allowed roots ({shown}): move the file under one of them, "
                             "or start the server with GEODELTA_ALLOWED_ROOTS naming its folder") from None
    if is_stac_path(resolved):
        for f in read_item(resolved).files:
            try:
                check_path(f, list(roots))
            except ToolInputError:
                raise ToolInputError(f"STAC item {path!r} points at {f}, outside the allowed roots ({shown}): "
                                     "keep the item's assets under an allowed root") from None
    return resolved


class McpService:
    """The GeoDelta side of `geodelta mcp`: one Assistant, one memory file, the allowed roots."""

    def __init__(self, settings: Settings | None = None, *, cwd: Path | None = None):
        from geodelta.memory import Memory

        settings = settings or Settings()
        base = (cwd or Path.cwd()).resolve()
        out = settings.out.expanduser()
        self.settings = settings.model_copy(update={"out": out if out.is_absolute() else base / out})
        self.roots = allowed_roots(self.settings, base)
        self.memory = Memory(self.settings.db_path)
        self._assistant: Any = None
        self._lock = threading.Lock()  # one graph run at a time: the thread checkpointer shares one connection

    @property
    def assistant(self) -> Any:
        """Built on first use: loading the embedded planner takes a few seconds."""
        if self._assistant is None:
            from geodelta.agent.api import Assistant

            self._assistant = Assistant(self.settings)
        return self._assistant

    def close(self) -> None:
        if self._assistant is not None:
            self._assistant.close()
        self.memory.close()

    # -- audit -----------------------------------------------------------------
    def audited(self, tool: str, args: dict[str, Any], fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Run `fn` between a `tool_call` and a `tool_result` / `error` event; GeoDeltaError re-raised."""
        from geodelta.memory.models import AuditEventIn

        run_id = self.memory.new_run_id()
        call_id = "mcp_" + hashlib.sha256(f"{run_id}:{tool}".encode()).hexdigest()[:12]
        common = {"run_id": run_id, "actor": "mcp_client", "tool": f"mcp.{tool}", "tool_call_id": call_id}
        self.memory.record(AuditEventIn(kind="tool_call", args=args, **common))
        t0 = time.perf_counter()
        try:
            result = fn()
        except GeoDeltaError as exc:
            self.memory.record(AuditEventIn(kind="error", error=str(exc), duration_ms=(time.perf_counter() - t0) * 1000, **common))
            raise
        summary = {k: v for k, v in result.items() if k in _SUMMARY_KEYS}
        self.memory.record(AuditEventIn(kind="tool_result", result=summary, duration_ms=(time.perf_counter() - t0) * 1000, **common))
        return result

    # -- tools -----------------------------------------------------------------
    def ask(self, question: str, before: str | None = None, after: str | None = None, images: list[str] | None = None,
            thread_id: str | None = None, progress: Progress | None = None) -> dict[str, Any]:
        """The Answer JSON (maps as absolute paths); a clarifying question comes back as `clarification`."""
        args = {"question": question, "before": before, "after": after, "images": images, "thread_id": thread_id}

        def run() -> dict[str, Any]:
            b = str(check_allowed(before, self.roots)) if before else None
            a = str(check_allowed(after, self.roots)) if after else None
            imgs = [str(check_allowed(p, self.roots)) for p in images or []] or None
            with self._lock:
                for event in self.assistant.stream(question, before=b, after=a, images=imgs, thread_id=thread_id):
                    if event["type"] == "answer":
                        return event["answer"]
                    if event["type"] == "clarify":
                        return {"text": event["question"], "clarification": event["question"], "thread_id": event["thread_id"]}
                    if progress is not None:
                        progress(_describe(event))
            raise ToolInputError("the assistant finished without an answer: ask again, naming the BEFORE and AFTER images")

        # the MCP call is its own audit run (its args name the thread); the answer's own run sits in the thread
        return self.audited("ask", args, run)

    def detect(self, before: str, after: str, method: str = "irmad", min_area_m2: float = 0.0,
               aoi: list[float] | None = None, progress: Progress | None = None) -> dict[str, Any]:
        """`geodelta detect` on two dates: the summary (without per-region polygons) and absolute output paths."""
        args = {"before": before, "after": after, "method": method, "min_area_m2": min_area_m2, "aoi": aoi}

        def run() -> dict[str, Any]:
            from geodelta.perception.pipeline.detect import run_detect

            b, a = check_allowed(before, self.roots), check_allowed(after, self.roots)
            if aoi is not None and len(aoi) != 4:
                raise ToolInputError(f"aoi must be four numbers [west, south, east, north] in degrees, got {aoi}")
            key = json.dumps([str(b), str(a), method, min_area_m2, aoi])
            out = self.settings.out / ("mcp_detect_" + hashlib.sha256(key.encode()).hexdigest()[:12])
            cb = (lambda stage, done, total: progress(f"{stage} {done}/{total}")) if progress else None
            summary = run_detect(b, a, out, self.settings.detect_options(method=method, min_area_m2=min_area_m2), aoi=(aoi[0], aoi[1], aoi[2], aoi[3]) if aoi else None, progress=cb)
            regions = summary.pop("regions")
            summary["n_regions"] = len(regions)
            summary["outputs"] = {k: str(out / v) for k, v in summary["outputs"].items()} | {"summary": str(out / "summary.json")}
            return summary

        return self.audited("detect", args, run)

    def plan(self, question: str) -> dict[str, Any]:
        """The explicit ChangeQuery a question is turned into (no tool runs)."""
        from geodelta.agent.intent import parse_question

        def run() -> dict[str, Any]:
            res = parse_question(question)
            if res.query is None:
                raise ToolInputError(res.clarify or "the question could not be turned into a change query")
            return res.query.model_dump(mode="json")

        return self.audited("plan", {"question": question}, run)

    def audit_verify(self) -> dict[str, Any]:
        """Walk the hash chain of the memory file: ok, n, first_bad_id, reason."""
        return self.audited("audit_verify", {}, lambda: self.memory.verify().model_dump(mode="json"))

    # -- resources ---------------------------------------------------------------
    def scenes(self) -> list[dict[str, Any]]:
        return [s.model_dump(mode="json") for s in self.memory.list_scenes()]

    def history(self, thread_id: str) -> list[dict[str, Any]]:
        return self.memory.runs(thread_id=thread_id, limit=10_000)


def _describe(event: dict[str, Any]) -> str:
    """A one-line progress message for a stream event of `Assistant.stream`."""
    if event["type"] == "progress":
        return f"{event['stage']} {event['done']}/{event['total']}"
    if event["type"] == "tool":
        return "tool " + ", ".join(f"{r['tool']} ({r['status']})" for r in event["results"])
    if event.get("tool_calls"):
        return "plan: " + ", ".join(event["tool_calls"])
    return f"step {event.get('node', event['type'])}"
