"""The embedded planner's step function over scripted conversations, and its chat-model interface."""

from __future__ import annotations

import json

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool

from geodelta.agent.models import get_chat_model, list_backends, register_backend
from geodelta.agent.models.embedded import ASK_IMAGES, EmbeddedChatModel, next_step
from geodelta.errors import ConfigError


def ask(text, before=None, after=None, images=None):
    return HumanMessage(content=text, additional_kwargs={"geodelta": {"question": True, "before": before, "after": after, "images": images or []}})


RESULTS = {
    "set_query": lambda args: {"query": args},
    "load_scene": lambda args: {"scene_id": "scn_1", "width": 10, "height": 10},
    "detect_changes": lambda args: {"analysis_id": "ana_1", "n_regions": 3},
    "classify_land_cover": lambda args: {"analysis_id": args["analysis_id"], "transitions": {}},
    "describe_changes": lambda args: {"n_regions": 2, "quadruples": []},
    "caption_changes": lambda args: {"caption": "two regions"},
    "render_map": lambda args: {"maps": {"png": "overlay.png"}},
}


def run_turn(messages, limit=12):
    """Feed scripted tool results back until the planner stops; returns the new messages and tool names."""
    names = []
    for _ in range(limit):
        msg = next_step(messages)
        messages.append(msg)
        if not msg.tool_calls:
            return messages, names
        (call,) = msg.tool_calls
        names.append(call["name"])
        messages.append(ToolMessage(content=json.dumps(RESULTS[call["name"]](call["args"])), tool_call_id=call["id"], name=call["name"]))
    raise AssertionError("planner did not stop")


def test_new_question_with_paths_runs_the_whole_pipeline():
    msgs, names = run_turn([ask("Where did farmland get built over?", before="a.tif", after="b.tif")])
    assert names == ["set_query", "load_scene", "detect_changes", "classify_land_cover", "describe_changes", "caption_changes", "render_map"]
    calls = [m.tool_calls[0] for m in msgs if isinstance(m, AIMessage) and m.tool_calls]
    assert calls[0]["args"]["to_classes"] == ["built_up"] and calls[0]["id"] == "call_1_set_query"
    assert calls[1]["args"] == {"before": "a.tif", "after": "b.tif"}
    assert calls[2]["args"] == {"scene_id": "scn_1", "method": "auto"}
    assert calls[4]["args"]["analysis_id"] == "ana_1" and calls[4]["args"]["query"]["direction"] == "convert"
    assert len({c["id"] for c in calls}) == len(calls)
    assert msgs[-1].content == "done" and not msgs[-1].tool_calls


def test_any_change_skips_land_cover():
    _, names = run_turn([ask("any change", images=["a.tif", "b.tif"])])
    assert "classify_land_cover" not in names and names[:2] == ["set_query", "load_scene"]


def test_no_images_and_no_scene_asks_which_images():
    msg = next_step([ask("Where did farmland get built over?")])
    assert not msg.tool_calls and msg.additional_kwargs["geodelta_clarify"] == ASK_IMAGES


def test_clarification_reply_with_paths_resumes():
    msgs = [ask("where did forest disappear"), AIMessage(content=ASK_IMAGES, additional_kwargs={"geodelta_clarify": ASK_IMAGES}),
            HumanMessage(content="these", additional_kwargs={"geodelta": {"question": False, "before": "x.tif", "after": "y.tif"}})]
    msgs, names = run_turn(msgs)
    assert names[:2] == ["set_query", "load_scene"]
    set_q = next(m.tool_calls[0] for m in msgs if isinstance(m, AIMessage) and m.tool_calls)
    assert set_q["args"]["from_classes"] == ["tree"]


def test_follow_up_reuses_scene_and_detection():
    msgs, _ = run_turn([ask("Where did farmland get built over?", before="a.tif", after="b.tif")])
    msgs.append(ask("and how much of that is in the north?"))
    msgs, names = run_turn(msgs)
    assert names == ["set_query", "describe_changes", "caption_changes", "render_map"]
    follow = [m.tool_calls[0] for m in msgs if isinstance(m, AIMessage) and m.tool_calls][-4:]
    assert follow[0]["args"]["area"] == {"kind": "sector", "sector": "north"}
    assert follow[0]["args"]["from_classes"] == ["low_vegetation", "cropland"]
    assert follow[1]["args"]["query"]["area"]["sector"] == "north"
    assert follow[0]["id"] == "call_8_set_query"


@pytest.mark.parametrize("error", [{"status": "error", "content": "boom"}, {"content": "Error: file not found: a.tif"}])
def test_error_tool_message_stops(error):
    msgs = [ask("new buildings", before="a.tif", after="b.tif")]
    msgs.append(next_step(msgs))
    call = msgs[-1].tool_calls[0]
    msgs.append(ToolMessage(content=json.dumps({"query": call["args"]}), tool_call_id=call["id"], name="set_query"))
    msgs.append(next_step(msgs))
    load = msgs[-1].tool_calls[0]
    assert load["name"] == "load_scene"
    msgs.append(ToolMessage(tool_call_id=load["id"], name="load_scene", **error))
    final = next_step(msgs)
    assert not final.tool_calls and "load_scene" in final.content
    assert "geodelta_clarify" not in final.additional_kwargs


def test_unresolvable_area_asks_back_then_gives_up_without_looping():
    first = next_step([ask("what changed in the north-north-west corner of Mars", before="a.tif", after="b.tif")])
    assert not first.tool_calls and "Mars" in first.additional_kwargs["geodelta_clarify"]
    again = next_step([ask("what changed in the north-north-west corner of Mars", before="a.tif", after="b.tif"), first,
                       HumanMessage(content="the moon again", additional_kwargs={"geodelta": {"question": False}})])
    assert not again.tool_calls and not again.additional_kwargs.get("geodelta_clarify")


def test_deterministic_steps():
    convo = [ask("deforestation in the west bigger than 1 ha", before="a.tif", after="b.tif")]
    assert next_step(convo) == next_step(convo)


@tool
def set_query(from_classes: list[str] | None = None, to_classes: list[str] | None = None, direction: str = "any",
              area: dict | None = None, min_area_m2: float = 0.0, report: list[str] | None = None, rationale: str = "",
              time_window: list[str] | None = None) -> dict:
    """Record the change of interest."""
    return {}


@tool
def load_scene(before: str, after: str) -> dict:
    """Open the two images."""
    return {}


def test_bind_tools_returns_valid_tool_calls_and_skips_unbound_tools():
    model = EmbeddedChatModel()
    bound = model.bind_tools([set_query, load_scene])
    assert bound.tool_names == ("set_query", "load_scene") and model.tool_names is None
    msg = bound.invoke([ask("new buildings", before="a.tif", after="b.tif")])
    assert isinstance(msg, AIMessage) and msg.tool_calls[0]["name"] == "set_query"
    assert msg.tool_calls[0]["id"] == "call_1_set_query" and isinstance(msg.tool_calls[0]["args"], dict)
    convo = [ask("new buildings", before="a.tif", after="b.tif"), msg,
             ToolMessage(content=json.dumps({"query": msg.tool_calls[0]["args"]}), tool_call_id=msg.tool_calls[0]["id"]),
             AIMessage(content="", tool_calls=[{"name": "load_scene", "args": {"before": "a.tif", "after": "b.tif"}, "id": "call_2_load_scene"}]),
             ToolMessage(content=json.dumps({"scene_id": "s"}), tool_call_id="call_2_load_scene")]
    assert bound.invoke(convo).content == "done"  # detect_changes is not bound: nothing left to call
    assert model._llm_type == "geodelta-embedded"


def test_registry():
    assert {"embedded", "openai"} <= set(list_backends())
    assert isinstance(get_chat_model("embedded"), EmbeddedChatModel)
    with pytest.raises(ConfigError):
        get_chat_model("nope")
    register_backend("scripted-test", lambda s: EmbeddedChatModel(method="cva"))
    assert get_chat_model("scripted-test").method == "cva"


def test_registry_import_is_light():
    import subprocess
    import sys

    code = "import sys, geodelta.agent.models as m; m.list_backends(); print('langchain_openai' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


def test_unsure_reading_asks_back_and_yes_keeps_the_guess():
    """A field the planner is unsure of goes through the clarification path, not into a guessed query."""
    first = [ask("forest in the north?", before="a.tif", after="b.tif")]
    msg = next_step(first)
    assert not msg.tool_calls and "not sure" in msg.additional_kwargs["geodelta_clarify"]
    convo = [*first, msg, HumanMessage(content="yes", additional_kwargs={"geodelta": {"question": False}})]
    convo, names = run_turn(convo)
    assert names[:2] == ["set_query", "load_scene"]
    set_q = next(m.tool_calls[0] for m in convo if isinstance(m, AIMessage) and m.tool_calls)
    assert set_q["args"]["from_classes"] == ["tree"] and set_q["args"]["area"] == {"kind": "sector", "sector": "north"}


def test_unsure_reading_corrected_by_the_reply():
    first = [ask("forest in the north?", before="a.tif", after="b.tif")]
    convo = [*first, next_step(first),
             HumanMessage(content="forest turned into cropland", additional_kwargs={"geodelta": {"question": False}})]
    convo, _ = run_turn(convo)
    set_q = next(m.tool_calls[0] for m in convo if isinstance(m, AIMessage) and m.tool_calls)
    assert (set_q["args"]["from_classes"], set_q["args"]["to_classes"]) == (["tree"], ["cropland"])
    assert set_q["args"]["area"] == {"kind": "sector", "sector": "north"}  # the reply did not name an area
