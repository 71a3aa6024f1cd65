"""Tool-call validation with corrective retries, for any chat model's replies.

A model's tool calls are checked against the tools' pydantic argument schemas before anything
runs. A bad call (unknown tool, malformed JSON, invalid arguments) gets an error `ToolMessage`
the model can act on, and the model is asked again, a bounded number of times.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, TypeGuard

from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from pydantic import BaseModel, ValidationError

from geodelta.errors import ModelError

ProblemKind = Literal["unknown_tool", "malformed_json", "invalid_arguments"]
_MAX_ERRORS = 8  # pydantic errors quoted per call: enough to fix, short enough for a small context


class ToolCallProblem(BaseModel):
    """One bad tool call in a model reply."""

    tool_call_id: str
    name: str
    kind: ProblemKind
    detail: str
    raw_args: str = ""
    available: tuple[str, ...] = ()  # tool names, quoted back to the model for an unknown tool

    def summary(self) -> str:
        return f"{self.name}: {self.kind} ({self.detail})"


def tool_schemas(tools: Iterable[Any]) -> dict[str, type[BaseModel]]:
    """{name: args schema} for LangChain tools, the form `validate_tool_calls` takes.

    Uses the tool's own `args_schema` (validators included) unless the tool has injected
    arguments the model never supplies; then the model-facing `tool_call_schema`.
    """
    out: dict[str, type[BaseModel]] = {}
    for t in tools:
        full, facing = getattr(t, "args_schema", None), getattr(t, "tool_call_schema", None)
        schema = full
        if _is_model(full) and _is_model(facing) and set(full.model_fields) != set(facing.model_fields):
            schema = facing
        if not _is_model(schema):
            schema = facing if _is_model(facing) else None
        if schema is None:
            raise TypeError(f"tool {t.name!r} has no pydantic args schema to validate against")
        out[t.name] = schema
    return out


def _is_model(x: Any) -> TypeGuard[type[BaseModel]]:
    return isinstance(x, type) and issubclass(x, BaseModel)


def _validation_summary(exc: ValidationError) -> str:
    errs = exc.errors(include_url=False)
    parts = [f"{'.'.join(str(p) for p in e['loc']) or '(arguments)'}: {e['msg']}" for e in errs[:_MAX_ERRORS]]
    if len(errs) > _MAX_ERRORS:
        parts.append(f"... {len(errs) - _MAX_ERRORS} more")
    return "; ".join(parts)


def _call_id(message: AIMessage, raw: Any, index: int) -> str:
    """The call's own id, or one made from the reply's id and the call's position (stable across calls)."""
    if raw:
        return str(raw)
    stem = re.sub(r"[^A-Za-z0-9]", "", message.id or "")[-12:] or "geodelta"
    return f"call_{stem}_{index}"


def validate_tool_calls(message: AIMessage, tools: Mapping[str, type[BaseModel]]) -> list[ToolCallProblem]:
    """Problems with the reply's tool calls: unknown names, malformed JSON, arguments the schema refuses.

    `message.invalid_tool_calls` is where langchain puts calls whose JSON arguments did not parse.
    An empty list means every call can run.
    """
    problems: list[ToolCallProblem] = []
    for i, call in enumerate(message.tool_calls):
        name, cid = call.get("name") or "", _call_id(message, call.get("id"), i)
        schema = tools.get(name)
        if schema is None:
            problems.append(
                ToolCallProblem(
                    tool_call_id=cid,
                    name=name,
                    kind="unknown_tool",
                    detail=f"no tool named {name!r}",
                    available=tuple(sorted(tools)),
                )
            )
            continue
        try:
            schema.model_validate(call.get("args") or {})
        except ValidationError as exc:
            problems.append(
                ToolCallProblem(
                    tool_call_id=cid,
                    name=name,
                    kind="invalid_arguments",
                    detail=_validation_summary(exc),
                    raw_args=json.dumps(call.get("args"), default=str)[:500],
                )
            )
    offset = len(message.tool_calls)
    for j, bad in enumerate(message.invalid_tool_calls):
        name = bad.get("name") or ""
        cid = _call_id(message, bad.get("id"), offset + j)
        kind: ProblemKind = "malformed_json" if name in tools else "unknown_tool"
        detail = _json_error(bad.get("error")) if kind == "malformed_json" else f"no tool named {name!r}"
        problems.append(
            ToolCallProblem(
                tool_call_id=cid,
                name=name,
                kind=kind,
                detail=str(detail)[:300],
                raw_args=str(bad.get("args") or "")[:500],
                available=tuple(sorted(tools)) if kind == "unknown_tool" else (),
            )
        )
    return problems


def _json_error(error: Any) -> str:
    """The parser's complaint from langchain's long invalid-call text ("Received JSONDecodeError ...")."""
    text = str(error or "arguments are not a JSON object")
    found = re.search(r"Received (\w+Error):? ?(.*)", text)
    return f"{found.group(1)}: {found.group(2).strip()}" if found else text.strip().splitlines()[0]


def _problem_text(p: ToolCallProblem) -> str:
    available = ", ".join(p.available) or "none"
    if p.kind == "unknown_tool":
        return f"Error: unknown tool {p.name!r}; available: {available}. Call one of these tools instead."
    if p.kind == "malformed_json":
        return (
            f"Error: the arguments of your call to {p.name!r} are not valid JSON ({p.detail}); you sent: {p.raw_args}. "
            "Call the tool again with valid JSON arguments (one JSON object)."
        )
    return (
        f"Error: arguments invalid for {p.name!r}: {p.detail}. "
        "Call the tool again with valid JSON arguments that follow its schema."
    )


def corrective_messages(message: AIMessage, problems: Sequence[ToolCallProblem]) -> list[BaseMessage]:
    """The messages to append after `message` is rejected: a repaired copy of it, then one ToolMessage per call.

    The copy moves malformed calls into `tool_calls` with empty arguments (their ids kept, missing
    ids filled) so the next request is valid for strict servers (vLLM parses every `arguments`
    string). Every call id gets a ToolMessage: the bad ones an error saying what to fix, the good
    ones "not run" because the reply is asked for again as a whole.
    """
    by_id = {p.tool_call_id: p for p in problems}
    calls: list[dict[str, Any]] = []
    for i, call in enumerate(message.tool_calls):
        calls.append(
            {
                "name": call.get("name") or "unknown",
                "args": call.get("args") or {},
                "id": _call_id(message, call.get("id"), i),
                "type": "tool_call",
            }
        )
    offset = len(message.tool_calls)
    for j, bad in enumerate(message.invalid_tool_calls):
        calls.append(
            {
                "name": bad.get("name") or "unknown",
                "args": {},
                "id": _call_id(message, bad.get("id"), offset + j),
                "type": "tool_call",
            }
        )
    ordered = [by_id.get(c["id"]) for c in calls]
    repaired = AIMessage(content=message.content, tool_calls=calls, id=message.id, name=message.name)
    out: list[BaseMessage] = [repaired]
    for c, p in zip(calls, ordered, strict=True):
        if p is not None:
            out.append(ToolMessage(tool_call_id=c["id"], name=c["name"], status="error", content=_problem_text(p)))
        else:
            out.append(
                ToolMessage(
                    tool_call_id=c["id"],
                    name=c["name"],
                    status="error",
                    content="Not run: another tool call in the same reply was invalid. "
                    "Repeat this call together with the corrected ones.",
                )
            )
    return out


def with_ids(message: AIMessage) -> AIMessage:
    """The reply with an id on every tool call (some servers omit them; ToolMessages need them)."""
    if all(c.get("id") for c in message.tool_calls):
        return message
    calls = [{**c, "id": _call_id(message, c.get("id"), i)} for i, c in enumerate(message.tool_calls)]
    return message.model_copy(update={"tool_calls": calls})


def with_corrections(
    model: Any,
    messages: Sequence[BaseMessage],
    tools: Mapping[str, type[BaseModel]],
    max_corrections: int = 2,
) -> AIMessage:
    """Ask `model` (already `bind_tools`-bound), and re-ask with corrective messages while its tool calls are bad.

    At most 1 + max_corrections requests. Returns the first reply whose calls all validate (ids
    filled; `response_metadata["geodelta_corrections"]` says how many retries it took). Raises
    `ModelError` when the last reply is still bad; the graph may then fall back to the embedded
    planner (settings.fallback_to_embedded). Transport failures raise `ModelError` at once.
    """
    from geodelta.agent.models.openai import call_model  # light: langchain_openai is imported lazily there

    history = list(messages)
    reply = call_model(model, history)
    for attempt in range(max_corrections + 1):
        problems = validate_tool_calls(reply, tools)
        if not problems:
            reply = with_ids(reply)
            reply.response_metadata["geodelta_corrections"] = attempt
            return reply
        if attempt == max_corrections:
            what = "; ".join(p.summary() for p in problems)
            raise ModelError(
                f"The model kept producing invalid tool calls after {max_corrections} corrections: {what}. "
                "Use a model with reliable tool calling, set GEODELTA_FALLBACK_TO_EMBEDDED=true to let the embedded "
                "planner take over, or use --backend embedded."
            )
        history.extend(corrective_messages(reply, problems))
        reply = call_model(model, history)
    raise AssertionError("unreachable")  # the loop returns or raises
