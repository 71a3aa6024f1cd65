"""`Assistant`: the Python API chat platforms embed; the CLI is a thin shell over it.

    from geodelta import Assistant
    answer = Assistant().ask("where did farmland get built over?", before="a.tif", after="b.tif")
    answer.text, answer.quadruples, answer.maps["png"], answer.justification, answer.audit_id
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from langgraph.types import Command

from geodelta.agent.audit import Auditor, current_run
from geodelta.agent.state import question_message
from geodelta.contracts import Answer, ChangeQuery
from geodelta.errors import CLARIFICATION_EXIT, InputError
from geodelta.settings import Settings

# LangGraph persists a question's checkpoint when the graph exits (an answer, or an interrupt waiting
# for the user), not after every step: a crash mid-question loses that question only, and the
# thread resumes from its previous answer.
DURABILITY = "exit"


class Assistant:
    """One planner, one memory file, one workspace; many threads (conversations)."""

    def __init__(self, settings: Settings | None = None, *, model: Any = None, **overrides: Any):
        from geodelta.agent.models import get_chat_model
        from geodelta.memory import Memory
        from geodelta.memory.checkpoint import open_checkpointer
        from geodelta.tools import ToolContext, build_tools

        self.settings = (settings or Settings()).model_copy(update=overrides) if overrides else (settings or Settings())
        db = self.settings.db_path
        key = self.settings.audit_key.get_secret_value() if self.settings.audit_key else None
        self.memory = Memory(db, audit_key=key)
        self.checkpointer = open_checkpointer(db)
        self.ctx = ToolContext.create(self.settings, memory=self.memory)
        self.ctx.progress = _stream_progress
        self.tools = build_tools(self.ctx)
        self.model = model if model is not None else get_chat_model(self.settings.backend, self.settings)
        name = getattr(self.model, "_llm_type", type(self.model).__name__)
        if self.settings.backend == "openai" and model is None:
            name = f"openai:{self.settings.openai_model}@{self.settings.openai_base_url}"
        if self.settings.backend == "local" and model is None:
            from geodelta.agent.models.local import model_identity

            # backend, model folder and sha256 of its config and weights files go into every audit event
            name = json.dumps(model_identity(self.settings), sort_keys=True)
        if self.settings.backend == "local":
            self.ctx.captioner = self.model  # the in-process multimodal model words captions (grounding-checked)
        self.auditor = Auditor(self.memory, name)
        fallback = get_chat_model("embedded", self.settings) if self.settings.fallback_to_embedded and self.settings.backend != "embedded" else None
        from geodelta.agent.graph import build_graph

        self.graph = build_graph(self.settings, self.model, self.checkpointer, self.tools, self.auditor, self.ctx.workspace, fallback=fallback)

    # -- asking ---------------------------------------------------------------
    def ask(self, question: str, *, before: str | Path | None = None, after: str | Path | None = None,
            images: Sequence[str | Path] | None = None, thread_id: str | None = None,
            bands: str | list[str] | None = None) -> Answer:
        """Answer one question (a follow-up when `thread_id` names an earlier conversation).

        `bands` declares the band roles of the images in file order ("swir1,nir,green") when the files
        carry none; it is recorded in the audit trail and used by the change model and land cover."""
        *_, answer = self._run(question, before, after, images, thread_id, stream=False, bands=bands)
        return answer

    async def aask(self, question: str, **kwargs: Any) -> Answer:
        """`ask` for async chat platforms; the sync graph (SqliteSaver) runs in a worker thread."""
        return await asyncio.to_thread(self.ask, question, **kwargs)

    def stream(self, question: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """One event per step: {"type": "node"|"tool"|"progress"|"answer"|"clarify", ...} for chat UIs."""
        yield from self._run(question, kwargs.get("before"), kwargs.get("after"), kwargs.get("images"), kwargs.get("thread_id"), stream=True,
                             bands=kwargs.get("bands"))

    def resume(self, thread_id: str, reply: str, *, before: str | Path | None = None, after: str | Path | None = None) -> Answer:
        """Answer a clarifying question the assistant asked (LangGraph `Command(resume=...)`)."""
        self.ctx.allow(before, after)
        payload = {"text": reply, "before": _s(before), "after": _s(after)}
        run_id = self._last_run(thread_id) or self.memory.new_run_id()
        return self._drive(Command(resume=payload), thread_id, run_id)

    def plan(self, question: str, previous: ChangeQuery | None = None) -> ChangeQuery:
        """The explicit change-of-interest for a question, without running any tool."""
        from geodelta.agent.intent import parse_question

        res = parse_question(question, previous)
        if res.query is None:
            raise InputError(res.clarify or "the question could not be turned into a change query")
        return res.query

    def history(self, thread_id: str) -> list[dict[str, Any]]:
        """The thread's messages as plain dicts (role, content, tool calls)."""
        state = self.graph.get_state({"configurable": {"thread_id": thread_id}})
        out = []
        for m in state.values.get("messages", []) if state and state.values else []:
            out.append({"role": m.type, "content": m.content, "tool_calls": getattr(m, "tool_calls", None) or None, "name": getattr(m, "name", None)})
        return out

    def close(self) -> None:
        self.checkpointer.conn.close()
        self.memory.close()

    # -- internals -------------------------------------------------------------
    def _run(self, question, before, after, images, thread_id, *, stream: bool, bands: str | list[str] | None = None) -> Iterator[Any]:
        thread_id = thread_id or f"thr_{uuid.uuid4().hex[:12]}"
        paths = [str(p) for p in (images or [])]
        if images and not (before or after):
            before, after = (paths[0], paths[-1]) if len(paths) >= 2 else (None, None)
        self.ctx.allow(before, after, *paths)
        bands = ",".join(bands) if isinstance(bands, (list, tuple)) else bands
        if bands:
            from geodelta.perception.io.bands import parse_band_roles

            try:
                parse_band_roles(bands)
            except ValueError as e:
                raise InputError(str(e)) from None
        self.ctx.bands = bands or None  # load_scene's default when a planner does not pass bands
        run_id = self.memory.new_run_id()
        token = current_run.set((run_id, thread_id))
        try:
            self.auditor.record("question", actor="user", args={"question": question, "before": _s(before), "after": _s(after),
                                                                **({"bands": bands} if bands else {})})
            msg = question_message(question, before=_s(before), after=_s(after), images=paths, bands=bands)
            if stream:
                yield from self._stream_events({"messages": [msg]}, thread_id, run_id)
            else:
                yield self._drive({"messages": [msg]}, thread_id, run_id)
        finally:
            current_run.reset(token)

    def _drive(self, graph_input: Any, thread_id: str, run_id: str) -> Answer:
        token = current_run.set((run_id, thread_id))
        try:
            config = {"configurable": {"thread_id": thread_id}, "recursion_limit": 40}
            result = self.graph.invoke(graph_input, config, durability=DURABILITY)
            self._prune(thread_id)
            return self._finish(result, thread_id, run_id)
        finally:
            current_run.reset(token)

    def _finish(self, result: dict[str, Any], thread_id: str, run_id: str) -> Answer:
        interrupts = result.get("__interrupt__") if isinstance(result, dict) else None
        if interrupts:
            question = interrupts[0].value["question"]
            self.auditor.record("clarification", actor="agent", result={"question": question})
            return Answer(text=question, query=ChangeQuery(), clarification=question, thread_id=thread_id, audit_id=run_id,
                          status="clarification", exit_code=CLARIFICATION_EXIT)
        answer = Answer.model_validate(result["answer"])
        self.auditor.record("answer", actor="agent", result={"text": answer.text, "n_regions": len(answer.regions), "maps": answer.maps, "confidence": answer.confidence,
                                                                "status": answer.status})
        return answer

    def _stream_events(self, graph_input: Any, thread_id: str, run_id: str) -> Iterator[dict[str, Any]]:
        config = {"configurable": {"thread_id": thread_id}, "recursion_limit": 40}
        final = None  # the answer node's update (the answer channel is not checkpointed: state.py)
        for mode, chunk in self.graph.stream(graph_input, config, stream_mode=["updates", "custom"], durability=DURABILITY):
            if mode == "custom":
                yield {"type": "progress", **chunk}
                continue
            for node, update in chunk.items():
                if node == "__interrupt__":
                    yield {"type": "clarify", "question": update[0].value["question"], "thread_id": thread_id}
                    continue
                if node == "answer" and update:
                    final = update.get("answer")
                event: dict[str, Any] = {"type": "node", "node": node}
                msgs = (update or {}).get("messages") or []
                if node == "plan" and msgs and getattr(msgs[-1], "tool_calls", None):
                    event["tool_calls"] = [c["name"] for c in msgs[-1].tool_calls]
                if node == "tools":
                    event = {"type": "tool", "results": [{"tool": m.name, "status": m.status} for m in msgs]}
                yield event
        self._prune(thread_id)
        state = self.graph.get_state(config)
        if final and not state.next:
            answer = self._finish({"answer": final}, thread_id, run_id)
            yield {"type": "answer", "answer": answer.model_dump(mode="json")}

    def _prune(self, thread_id: str) -> None:
        """Keep only the thread's latest checkpoint (what a follow-up or a resume after a restart reads)."""
        from geodelta.memory.checkpoint import prune_thread

        prune_thread(self.checkpointer, thread_id)

    def _last_run(self, thread_id: str) -> str | None:
        runs = self.memory.runs(thread_id=thread_id, limit=1)
        return runs[0].get("run_id") if runs else None


def _s(p: str | Path | None) -> str | None:
    return str(p) if p is not None else None


def _stream_progress(stage: str, done: int, total: int) -> None:
    """Progress from tools: a `custom` stream event inside a graph run, nothing outside one."""
    try:
        from langgraph.config import get_stream_writer

        get_stream_writer()({"stage": stage, "done": done, "total": total})
    except Exception:  # outside a runnable context (a tool called directly): no stream to write to
        pass
