"""The embedded planner: a LangChain chat model that needs no server, network or downloaded weights.

It reads the conversation and emits, one step at a time, the same tool calls an LLM would
(ARCHITECTURE sections 2 and 6): set_query -> load_scene -> detect_changes -> classify_land_cover ->
describe_changes -> caption_changes -> render_map -> "done". The step logic is `next_step`, a pure
function over the message list: a table of steps, each with a "needed?" predicate and an args builder.
Deterministic: tool-call ids are "call_<n>_<tool>", n counting the thread's tool calls so far.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.utils.function_calling import convert_to_openai_tool

from geodelta.contracts import ChangeQuery

ASK_IMAGES = "Which images should I compare? Give a before and an after image (GeoTIFF, PNG or a Sentinel-2 folder)."


def _is_question(m: BaseMessage) -> bool:
    return isinstance(m, HumanMessage) and m.additional_kwargs.get("geodelta", {}).get("question", True)


def _json(content: Any) -> dict[str, Any]:
    if isinstance(content, list):  # content blocks
        content = "".join(c.get("text", "") if isinstance(c, dict) else str(c) for c in content)
    try:
        out = json.loads(content)
    except (TypeError, ValueError):
        return {}
    return out if isinstance(out, dict) else {}


def _text(m: BaseMessage) -> str:
    return m.content if isinstance(m.content, str) else " ".join(c.get("text", "") for c in m.content if isinstance(c, dict))


@dataclass
class Call:
    """One tool call of the thread with its result (None while pending) and whether it failed."""

    name: str
    args: dict[str, Any]
    id: str
    in_turn: bool
    result: dict[str, Any] | None = None
    error: str | None = None


@dataclass
class Thread:
    """What the planner needs to know about the conversation so far."""

    question: str
    replies: list[HumanMessage]
    calls: list[Call]
    asked: list[str]  # clarifying questions already asked in this turn
    previous_query: ChangeQuery | None
    paths: tuple[str, str] | None
    n_calls: int
    query: ChangeQuery | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def last_ok(self, name: str) -> Call | None:
        ok = [c for c in self.calls if c.name == name and c.result is not None and c.error is None]
        return ok[-1] if ok else None

    def done(self, name: str, *, in_turn: bool = False, **args: Any) -> bool:
        return any(c.name == name and c.error is None and c.result is not None and (c.in_turn or not in_turn)
                   and all(c.args.get(k) == v for k, v in args.items()) for c in self.calls)

    @property
    def scene_id(self) -> str | None:
        c = self.last_ok("load_scene")
        return c.result.get("scene_id") if c and c.result is not None else None  # last_ok: result is set

    @property
    def analysis_id(self) -> str | None:
        sid = self.scene_id
        ok = [c for c in self.calls if c.name == "detect_changes" and c.result and c.error is None and c.args.get("scene_id") == sid]
        return (ok[-1].result or {}).get("analysis_id") if ok else None  # ok: result is set


def read_thread(messages: Sequence[BaseMessage]) -> Thread:
    """Split the thread into the current turn (since the last user question) and what came before."""
    start = max((i for i, m in enumerate(messages) if _is_question(m)), default=0)
    calls: dict[str, Call] = {}
    prev_query = None
    for i, m in enumerate(messages):
        if isinstance(m, AIMessage):
            for tc in m.tool_calls:
                tc_id = cast(str, tc["id"])  # our models always give tool calls an id
                calls[tc_id] = Call(tc["name"], dict(tc["args"]), tc_id, i >= start)
        elif isinstance(m, ToolMessage) and m.tool_call_id in calls:
            c = calls[m.tool_call_id]
            text = _text(m)
            if m.status == "error" or text.lstrip().startswith("Error"):
                c.error = text or "the tool failed"
            c.result = _json(text)
            if c.name == "set_query" and i < start and c.error is None:
                try:
                    prev_query = ChangeQuery.model_validate(c.result.get("query") or c.args)
                except ValueError:
                    pass
    turn = list(messages[start:])
    humans = [m for m in turn if isinstance(m, HumanMessage)]
    paths = None
    for h in reversed(humans):
        g = h.additional_kwargs.get("geodelta", {}) or {}
        before, after, images = g.get("before"), g.get("after"), g.get("images") or []
        if not (before and after) and len(images) >= 2:
            before, after = images[0], images[-1]
        if before and after:
            paths = (str(before), str(after))
            break
    asked = [m.additional_kwargs["geodelta_clarify"] for m in turn if isinstance(m, AIMessage) and m.additional_kwargs.get("geodelta_clarify")]
    # more than two dates: a time series (detect_series), besides the first -> last pair
    series = next((list(g["images"]) for h in reversed(humans) if len((g := h.additional_kwargs.get("geodelta", {}) or {}).get("images") or []) > 2), [])
    bands = next(((h.additional_kwargs.get("geodelta", {}) or {}).get("bands") for h in reversed(humans)
                  if (h.additional_kwargs.get("geodelta", {}) or {}).get("bands")), None)
    return Thread(_text(humans[0]) if humans else "", humans[1:], list(calls.values()), asked, prev_query, paths, len(calls),
                  extra={"images": [str(p) for p in series], "bands": bands})


@dataclass(frozen=True)
class Step:
    tool: str
    needed: Callable[[Thread], bool]
    args: Callable[[Thread, str], dict[str, Any]]


def _paths(t: Thread) -> tuple[str, str]:
    """The before/after pair; only called by steps whose condition checked `t.paths is not None`."""
    return cast(tuple[str, str], t.paths)


def _result(t: Thread, name: str) -> dict[str, Any]:
    """The latest successful result of `name`; only called after `t.done(name)` held."""
    c = t.last_ok(name)
    return (c.result or {}) if c else {}


def _per_analysis(name: str) -> Callable[[Thread], bool]:
    """Step condition: an analysis exists and `name` has not run on it in this turn."""
    return lambda t: t.analysis_id is not None and not t.done(name, in_turn=True, analysis_id=t.analysis_id)


def _focus(t: Thread) -> str:
    """What the question's change of interest is about (ChangeQuery.focus; "any" before a query is set)."""
    return t.query.focus if t.query else "any"


def _q(t: Thread) -> dict[str, Any]:
    return t.query.model_dump(mode="json") if t.query else {}


STEPS: tuple[Step, ...] = (
    Step("set_query", lambda t: not any(c.name == "set_query" and c.in_turn for c in t.calls), lambda t, m: _q(t)),
    Step("load_scene", lambda t: t.paths is not None and not t.done("load_scene", before=t.paths[0], after=t.paths[1]),
         lambda t, m: {"before": _paths(t)[0], "after": _paths(t)[1], **({"bands": t.extra["bands"]} if t.extra.get("bands") else {})}),
    Step("detect_changes", lambda t: t.scene_id is not None and t.analysis_id is None,
         lambda t, m: {"scene_id": t.scene_id, "method": m, **({"focus": "buildings"} if _focus(t) == "buildings" else {})}),
    Step("classify_land_cover", lambda t: bool(t.query and (t.query.from_classes or t.query.to_classes))
         and t.analysis_id is not None and not t.done("classify_land_cover", analysis_id=t.analysis_id),
         lambda t, m: {"analysis_id": t.analysis_id}),
    *(Step(name, _per_analysis(name),
           lambda t, m: {"analysis_id": t.analysis_id, "query": _q(t)})
      for name in ("describe_changes", "caption_changes", "render_map")),
    # "when": with more than two dates, date the regions describe_changes kept (first -> last pair)
    Step("detect_series", lambda t: len(t.extra.get("images", [])) > 2 and t.done("describe_changes", in_turn=True)
         and not t.done("detect_series", in_turn=True),
         lambda t, m: {"images": t.extra["images"], "method": m, "analysis_id": t.analysis_id,
                       "region_ids": _result(t, "describe_changes").get("region_ids", [])}),
)


def _resolve_query(t: Thread) -> AIMessage | None:
    """Set `t.query` from the turn (set_query already made, or the question read now); else a reply to send."""
    from geodelta.agent.intent import parse_question

    made = [c for c in t.calls if c.name == "set_query" and c.in_turn]
    if made:
        t.query = ChangeQuery.model_validate((made[-1].result or {}).get("query") or made[-1].args)
        return None
    res = parse_question(t.question, t.previous_query)
    if res.clarify:
        texts = [_text(r) for r in t.replies if _text(r).strip()]
        if not t.asked or (not texts and not t.paths):
            if t.asked and res.query is None:
                return AIMessage(content=f"I could not resolve the question: {res.clarify}")
            return AIMessage(content=res.clarify, additional_kwargs={"geodelta_clarify": res.clarify})
        better = parse_question(texts[-1], res.query) if texts else None
        if better is not None and better.query is not None and not better.clarify:
            if res.query is not None:  # the reply answers what was unsure; where and how big stay the question's
                keep = {k: getattr(res.query, k) for k in ("area", "min_area_m2")
                        if getattr(better.query, k) == ChangeQuery.model_fields[k].get_default(call_default_factory=True)}
                better = type(better)(better.query.model_copy(update=keep), None, better.confidence, better.matched,
                                      better.field_confidence)
            res = better
        elif res.query is None:
            return AIMessage(content=f"I could not resolve the question: {res.clarify}")
    t.query = res.query
    return None


def next_step(messages: Sequence[BaseMessage], *, method: str = "auto", tools: Sequence[str] | None = None) -> AIMessage:
    """The planner's next message for this conversation: one tool call, a clarifying question, or "done"."""
    t = read_thread(messages)
    failed = [c for c in t.calls if c.in_turn and c.error]
    if failed:
        return AIMessage(content=f"{failed[-1].name} failed: {failed[-1].error}")
    reply = _resolve_query(t)
    if reply is not None:
        return reply
    if t.paths is None and t.scene_id is None:
        if ASK_IMAGES in t.asked:
            return AIMessage(content="I cannot answer without a before and an after image.")
        return AIMessage(content=ASK_IMAGES, additional_kwargs={"geodelta_clarify": ASK_IMAGES})
    for step in STEPS:
        if (tools is None or step.tool in tools) and step.needed(t):
            call = {"name": step.tool, "args": step.args(t, method), "id": f"call_{t.n_calls + 1}_{step.tool}", "type": "tool_call"}
            return AIMessage(content="", tool_calls=[call])
    return AIMessage(content="done")


class EmbeddedChatModel(BaseChatModel):
    """Deterministic offline planner with the chat-model interface the graph expects (`bind_tools`)."""

    method: str = "auto"
    tool_names: tuple[str, ...] | None = None

    @property
    def _llm_type(self) -> str:
        return "geodelta-embedded"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"method": self.method, "tools": self.tool_names}

    def bind_tools(self, tools: Sequence[Any], *, tool_choice: str | None = None, **kwargs: Any) -> EmbeddedChatModel:
        """A copy that knows the tool names (BaseTool, function, pydantic class or OpenAI dict); steps whose
        tool is not bound are skipped."""
        names = tuple(convert_to_openai_tool(t)["function"]["name"] for t in tools)
        return self.model_copy(update={"tool_names": names})

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None, **kwargs: Any) -> ChatResult:
        msg = next_step(messages, method=self.method, tools=self.tool_names)
        return ChatResult(generations=[ChatGeneration(message=msg)])


def make_embedded_model(settings: Any = None) -> EmbeddedChatModel:
    """The registry factory: the change method comes from settings (auto by default)."""
    method = getattr(settings, "method", "auto") if settings is not None else "auto"
    return EmbeddedChatModel(method=method)
