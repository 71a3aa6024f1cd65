"""The OpenAI-compatible backend through the real client path: ChatOpenAI -> HTTP -> a scripted local server."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Literal

import pytest
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.tools import tool
from openai_server import HANG, ScriptedOpenAIServer, call, calls, fail, say, unused_port_url
from PIL import Image
from pydantic import BaseModel

from geodelta.agent.models.openai import (
    call_model,
    classify_chips,
    image_part,
    make_openai_model,
    served_models,
    vision_message,
)
from geodelta.agent.toolcalls import tool_schemas, with_corrections
from geodelta.contracts import ChangeQuery
from geodelta.errors import ModelError
from geodelta.settings import Settings


class DetectArgs(BaseModel):
    method: Literal["irmad", "cva"] = "irmad"


@tool("set_query", args_schema=ChangeQuery)
def set_query(**kwargs: object) -> str:
    """Record the explicit change-of-interest."""
    return "ok"


@tool("detect_changes", args_schema=DetectArgs)
def detect_changes(method: str = "irmad") -> str:
    """Detect changes between the two dates."""
    return "ok"


TOOLS = [set_query, detect_changes]
QUESTION = [SystemMessage("You plan land-change analyses."), HumanMessage("where did farmland get built over?")]
GOOD_QUERY = {"from_classes": ["cropland"], "to_classes": ["built_up"], "direction": "convert"}


def _bound(server: ScriptedOpenAIServer, **overrides):
    return make_openai_model(server.settings(**overrides)).bind_tools(TOOLS)


def _decode(part: dict) -> Image.Image:
    url = part["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))


def test_make_openai_model_wires_the_settings():
    s = Settings(
        openai_base_url="http://gpu-box:8000/v1", openai_model="qwen", openai_timeout_s=7, openai_max_retries=3
    )
    m = make_openai_model(s)
    assert (m.openai_api_base, m.model_name, m.request_timeout, m.max_retries, m.temperature) == (
        "http://gpu-box:8000/v1",
        "qwen",
        7,
        3,
        0,
    )
    assert m.use_responses_api is False


def test_valid_tool_call_round_trip_sends_the_tool_schemas():
    with ScriptedOpenAIServer([call("set_query", GOOD_QUERY)]) as server:
        reply = call_model(_bound(server), QUESTION)
    assert reply.tool_calls == [{"name": "set_query", "args": GOOD_QUERY, "id": "call_0_0", "type": "tool_call"}]
    (body,) = server.requests
    assert body["model"] == "geodelta-test" and body["temperature"] == 0 and not body.get("stream")
    names = [t["function"]["name"] for t in body["tools"]]
    assert names == ["set_query", "detect_changes"]
    params = body["tools"][0]["function"]["parameters"]["properties"]
    assert "cropland" in params["from_classes"]["items"]["enum"]
    assert [m["role"] for m in body["messages"]] == ["system", "user"]


def test_streaming_is_understood_too():
    with ScriptedOpenAIServer([calls([("detect_changes", {"method": "cva"}), ("set_query", GOOD_QUERY)])]) as server:
        chunks = list(_bound(server).stream(QUESTION))
    merged = chunks[0]
    for c in chunks[1:]:
        merged = merged + c
    assert [(c["name"], c["args"]) for c in merged.tool_calls] == [
        ("detect_changes", {"method": "cva"}),
        ("set_query", GOOD_QUERY),
    ]
    assert server.requests[0]["stream"] is True


def test_image_parts_are_sent(data_dir: Path):
    png = sorted((data_dir / "levir_crops" / "A").glob("*.png"))[0]
    part = image_part(png, max_size=128)
    assert _decode(part).size == (128, 128)  # 256 x 256 crop -> thumbnail
    msg = vision_message("What changed?", [png, data_dir / "levir_crops" / "B" / png.name])
    with ScriptedOpenAIServer([say("New buildings in the north.")]) as server:
        reply = call_model(make_openai_model(server.settings()), [msg])
    assert reply.content == "New buildings in the north."
    content = server.requests[0]["messages"][0]["content"]
    assert [p["type"] for p in content] == ["text", "image_url", "image_url"]
    sent = _decode(content[1])
    assert sent.size == (256, 256) and sent.mode == "RGB"
    assert sent.tobytes() == Image.open(png).convert("RGB").tobytes()  # lossless PNG, same pixels


def test_malformed_json_gets_a_correction_then_succeeds():
    script = [call("set_query", '{"from_classes": ["cropland"], "to_classes": '), call("set_query", GOOD_QUERY)]
    with ScriptedOpenAIServer(script) as server:
        reply = with_corrections(_bound(server), QUESTION, tool_schemas(TOOLS), max_corrections=2)
    assert reply.tool_calls[0]["args"] == GOOD_QUERY and reply.response_metadata["geodelta_corrections"] == 1
    assert len(server.requests) == 2
    second = server.requests[1]["messages"]
    assert [m["role"] for m in second] == ["system", "user", "assistant", "tool"]
    assert json.loads(second[2]["tool_calls"][0]["function"]["arguments"]) == {}  # re-emitted as valid JSON
    assert second[3]["tool_call_id"] == "call_0_0" and "not valid JSON" in second[3]["content"]
    assert "valid JSON arguments" in second[3]["content"]


def test_unknown_tool_gets_a_correction_then_succeeds():
    script = [call("detect_everything", {"method": "cva"}), call("detect_changes", {"method": "cva"})]
    with ScriptedOpenAIServer(script) as server:
        reply = with_corrections(_bound(server), QUESTION, tool_schemas(TOOLS), max_corrections=1)
    assert reply.tool_calls[0]["name"] == "detect_changes"
    tool_msg = server.requests[1]["messages"][-1]
    assert tool_msg["role"] == "tool" and "unknown tool 'detect_everything'" in tool_msg["content"]
    assert "detect_changes, set_query" in tool_msg["content"]


def test_invalid_arguments_are_corrected():
    script = [call("set_query", {"to_classes": ["skyscrapers"]}), call("set_query", GOOD_QUERY)]
    with ScriptedOpenAIServer(script) as server:
        reply = with_corrections(_bound(server), QUESTION, tool_schemas(TOOLS), max_corrections=1)
    assert reply.tool_calls[0]["args"] == GOOD_QUERY
    assert "to_classes.0" in server.requests[1]["messages"][-1]["content"]


def test_always_invalid_raises_after_max_corrections():
    script = [call("set_query", "{nope")] * 5
    with ScriptedOpenAIServer(script) as server:
        with pytest.raises(ModelError, match="after 2 corrections") as err:
            with_corrections(_bound(server), QUESTION, tool_schemas(TOOLS), max_corrections=2)
    assert len(server.requests) == 3  # the question plus two corrections
    assert "set_query: malformed_json" in str(err.value) and "GEODELTA_FALLBACK_TO_EMBEDDED" in str(err.value)
    # each retry carries the whole corrected history: 2 more messages per correction
    assert [len(r["messages"]) for r in server.requests] == [2, 4, 6]


def test_plain_answer_needs_no_correction():
    with ScriptedOpenAIServer([say("Nothing to do.")]) as server:
        reply = with_corrections(_bound(server), QUESTION, tool_schemas(TOOLS), max_corrections=2)
    assert reply.content == "Nothing to do." and reply.tool_calls == []


def test_http_500_is_a_model_error():
    with ScriptedOpenAIServer([fail(500, "CUDA out of memory")]) as server:
        with pytest.raises(ModelError, match="returned HTTP 500") as err:
            call_model(_bound(server), QUESTION)
    assert "CUDA out of memory" in str(err.value) and server.url in str(err.value)
    assert len(server.requests) == 1  # max_retries=0


def test_retries_follow_the_setting():
    with ScriptedOpenAIServer([fail(503, "loading model"), say("ready")]) as server:
        reply = call_model(_bound(server, openai_max_retries=1), QUESTION)
    assert reply.content == "ready" and len(server.requests) == 2


def test_unknown_model_is_a_model_error():
    with ScriptedOpenAIServer([say("unused")]) as server:
        with pytest.raises(ModelError, match="HTTP 404 for model 'llava-huge'") as err:
            call_model(_bound(server, openai_model="llava-huge"), QUESTION)
        assert "ollama pull llava-huge" in str(err.value)
        with pytest.raises(ModelError, match="does not serve 'llava-huge'.*geodelta-test"):
            served_models(server.settings(openai_model="llava-huge"))
        assert served_models(server.settings()) == ["geodelta-test"]


def test_a_server_that_never_answers_times_out():
    with ScriptedOpenAIServer([HANG]) as server:
        with pytest.raises(ModelError, match="did not answer within 1 s"):
            call_model(_bound(server, openai_timeout_s=1), QUESTION)
    assert len(server.requests) == 1


def test_a_server_that_is_down():
    url = unused_port_url()
    model = make_openai_model(Settings(openai_base_url=url, openai_model="m", openai_max_retries=0, openai_timeout_s=5))
    with pytest.raises(ModelError, match=f"No model server answers at {url}.*--backend embedded"):
        call_model(model.bind_tools(TOOLS), QUESTION)
    with pytest.raises(ModelError, match="No model server answers"):
        served_models(Settings(openai_base_url=url, openai_max_retries=0, openai_timeout_s=5))


def _chips(data_dir: Path, tmp_path: Path, n: int) -> list[tuple[Path, Path]]:
    """n real before/after chip pairs: 64 x 64 crops of LEVIR-CD pairs."""
    names = sorted(p.name for p in (data_dir / "levir_crops" / "A").glob("*.png"))[:n]
    out = []
    for name in names:
        pair = []
        for date in ("A", "B"):
            chip = tmp_path / f"{date}_{name}"
            Image.open(data_dir / "levir_crops" / date / name).crop((96, 96, 160, 160)).save(chip)
            pair.append(chip)
        out.append((pair[0], pair[1]))
    return out


def test_classify_chips_parses_and_rejects(data_dir: Path, tmp_path: Path):
    chips = _chips(data_dir, tmp_path, 4)
    script = [
        say('```json\n{"before": "bare_ground", "after": "built_up"}\n```'),
        say('{"before": "Low vegetation", "after": "built-up"}'),
        say('{"before": "forest", "after": "built_up"}'),  # outside the vocabulary
        say("I think it became a house."),  # not JSON
    ]
    notes: list[str] = []
    with ScriptedOpenAIServer(script) as server:
        got = classify_chips(make_openai_model(server.settings()), chips, notes=notes)
    assert got == [
        ("bare_ground", "built_up"),
        ("low_vegetation", "built_up"),
        ("unknown", "unknown"),
        ("unknown", "unknown"),
    ]
    assert (
        len(notes) == 2 and notes[0].startswith("chip 2:") and "before" in notes[0] and notes[1].startswith("chip 3:")
    )
    assert len(server.requests) == 4
    content = server.requests[0]["messages"][0]["content"]
    assert [p["type"] for p in content] == ["text", "image_url", "image_url"]
    assert "low_vegetation" in content[0]["text"] and _decode(content[1]).size == (64, 64)
