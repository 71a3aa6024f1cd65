"""Tool-call validation and corrective messages, on hand-built replies (no server).

The corrected conversation is converted with langchain-openai's own message converter and checked
with the strict rules of the scripted server: every tool call answered, every `arguments` JSON.
"""

from __future__ import annotations

from typing import Literal

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai.chat_models.base import _convert_message_to_dict
from openai_server import _conversation_problem
from pydantic import BaseModel

from geodelta.agent.toolcalls import ToolCallProblem, corrective_messages, tool_schemas, validate_tool_calls, with_ids
from geodelta.contracts import ChangeQuery


class DetectArgs(BaseModel):
    method: Literal["irmad", "cva"] = "irmad"
    min_area_m2: float = 0.0


@tool("set_query", args_schema=ChangeQuery)
def set_query(**kwargs: object) -> str:
    """Record the explicit change-of-interest."""
    return "ok"


@tool("detect_changes", args_schema=DetectArgs)
def detect_changes(method: str = "irmad", min_area_m2: float = 0.0) -> str:
    """Detect changes."""
    return "ok"


TOOLS = tool_schemas([set_query, detect_changes])


def _ai(tool_calls=(), invalid=(), msg_id="chatcmpl-abc123") -> AIMessage:
    return AIMessage(content="", id=msg_id, tool_calls=list(tool_calls), invalid_tool_calls=list(invalid))


def _wire_ok(history) -> str | None:
    return _conversation_problem([_convert_message_to_dict(m) for m in history])


def test_tool_schemas_keep_the_contract_validators():
    assert TOOLS == {"set_query": ChangeQuery, "detect_changes": DetectArgs}
    # ChangeQuery's bbox validator (west < east) must still run through the schema we validate with.
    bad = _ai([{"name": "set_query", "args": {"area": {"kind": "bbox", "bbox": [5, 0, 1, 1]}}, "id": "c1"}])
    (p,) = validate_tool_calls(bad, TOOLS)
    assert p.kind == "invalid_arguments" and "west < east" in p.detail


def test_valid_calls_have_no_problems():
    msg = _ai(
        [
            {"name": "set_query", "args": {"from_classes": ["cropland"], "to_classes": ["built_up"]}, "id": "c1"},
            {"name": "detect_changes", "args": {"method": "cva"}, "id": "c2"},
        ]
    )
    assert validate_tool_calls(msg, TOOLS) == []
    assert validate_tool_calls(AIMessage(content="all done"), TOOLS) == []


def test_unknown_tool_and_bad_arguments_are_reported_with_a_fix():
    msg = _ai(
        [
            {"name": "delete_everything", "args": {}, "id": "c1"},
            {"name": "set_query", "args": {"to_classes": ["forest"], "direction": "sideways"}, "id": "c2"},
            {"name": "detect_changes", "args": {}, "id": "c3"},
        ]
    )
    problems = validate_tool_calls(msg, TOOLS)
    assert [(p.tool_call_id, p.kind) for p in problems] == [("c1", "unknown_tool"), ("c2", "invalid_arguments")]
    assert "to_classes.0" in problems[1].detail and "direction" in problems[1].detail

    follow = corrective_messages(msg, problems)
    repaired, *tool_msgs = follow
    assert isinstance(repaired, AIMessage) and [c["id"] for c in repaired.tool_calls] == ["c1", "c2", "c3"]
    assert all(isinstance(t, ToolMessage) and t.status == "error" for t in tool_msgs)
    by_id = {t.tool_call_id: t.content for t in tool_msgs}
    assert "unknown tool 'delete_everything'" in by_id["c1"] and "detect_changes, set_query" in by_id["c1"]
    assert "arguments invalid" in by_id["c2"] and "to_classes.0" in by_id["c2"]
    assert by_id["c3"].startswith("Not run")  # a valid sibling still needs its ToolMessage
    assert _wire_ok([HumanMessage("q"), *follow]) is None


def test_malformed_json_is_re_emitted_as_a_valid_call():
    msg = _ai(
        [{"name": "detect_changes", "args": {"method": "cva"}, "id": "ok1"}],
        invalid=[
            {
                "name": "set_query",
                "args": '{"to_classes": ["built_up"',
                "id": "bad1",
                "error": "Received JSONDecodeError Expecting ','",
                "type": "invalid_tool_call",
            }
        ],
    )
    # langchain-openai sends invalid calls back verbatim: a strict server refuses that history.
    assert "not valid JSON" in _wire_ok(
        [HumanMessage("q"), msg, ToolMessage("x", tool_call_id="ok1"), ToolMessage("x", tool_call_id="bad1")]
    )

    problems = validate_tool_calls(msg, TOOLS)
    assert [(p.tool_call_id, p.kind) for p in problems] == [("bad1", "malformed_json")]
    assert problems[0].detail.startswith("JSONDecodeError")
    follow = corrective_messages(msg, problems)
    repaired = follow[0]
    assert repaired.invalid_tool_calls == [] and repaired.tool_calls[1] == {
        "name": "set_query",
        "args": {},
        "id": "bad1",
        "type": "tool_call",
    }
    text = {t.tool_call_id: t.content for t in follow[1:]}["bad1"]
    assert "not valid JSON" in text and '{"to_classes": ["built_up"' in text and "valid JSON arguments" in text
    assert _wire_ok([HumanMessage("q"), *follow]) is None


def test_calls_without_ids_get_stable_ids():
    msg = _ai(
        [{"name": "nope", "args": {}, "id": None}],
        invalid=[{"name": None, "args": "{", "id": None, "error": "bad", "type": "invalid_tool_call"}],
    )
    problems = validate_tool_calls(msg, TOOLS)
    assert len({p.tool_call_id for p in problems}) == 2 and all(p.tool_call_id for p in problems)
    assert [p.kind for p in problems] == ["unknown_tool", "unknown_tool"]
    follow = corrective_messages(msg, problems)
    assert [t.tool_call_id for t in follow[1:]] == [p.tool_call_id for p in problems]
    assert _wire_ok([HumanMessage("q"), *follow]) is None
    assert validate_tool_calls(msg, TOOLS) == problems  # same ids on a second look

    fine = with_ids(_ai([{"name": "detect_changes", "args": {}, "id": None}]))
    assert fine.tool_calls[0]["id"] and validate_tool_calls(fine, TOOLS) == []


def test_problem_summary_names_the_tool():
    p = ToolCallProblem(tool_call_id="c", name="set_query", kind="malformed_json", detail="JSONDecodeError: x")
    assert p.summary() == "set_query: malformed_json (JSONDecodeError: x)"


def test_tool_without_pydantic_schema_is_refused():
    class Bare:
        name = "bare"
        args_schema = {"type": "object"}
        tool_call_schema = {"type": "object"}

    with pytest.raises(TypeError, match="bare"):
        tool_schemas([Bare()])
