"""The agent end to end on real data: scripted and embedded planners, threads, clarification, paths, audit."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from geodelta.agent.api import Assistant
from geodelta.errors import ToolInputError
from geodelta.memory import Memory
from geodelta.settings import Settings
from geodelta.tools import ToolContext, build_tools

SNAPSHOT = Path(__file__).parent / "data" / "tool_schemas.json"


class ScriptedChatModel(BaseChatModel):
    """A real LangChain chat model that replays scripted replies, with tool args built from earlier results."""

    script: list[Any]
    seen: list[list[BaseMessage]] = []

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def bind_tools(self, tools, **kwargs):
        return self

    def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        self.seen.append(list(messages))
        step = self.script.pop(0)
        msg = step(messages) if callable(step) else step
        return ChatResult(generations=[ChatGeneration(message=msg)])


def _result(messages, name: str) -> dict:
    for m in reversed(messages):
        if getattr(m, "name", None) == name:
            return json.loads(m.content)
    raise AssertionError(f"no {name} result")


def _call(name: str, args_fn, i: int):
    return lambda msgs: AIMessage(content="", tool_calls=[{"name": name, "args": args_fn(msgs), "id": f"c{i}"}])


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(db=tmp_path / "g.db", out=tmp_path / "out")


def test_scripted_model_drives_the_whole_graph(settings: Settings, demo_pair) -> None:
    before, after = demo_pair
    query = {"from_classes": ["cropland", "low_vegetation"], "to_classes": ["built_up"], "direction": "convert"}
    script = [
        _call("set_query", lambda m: query, 1),
        _call("load_scene", lambda m: {"before": str(before), "after": str(after)}, 2),
        _call("detect_changes", lambda m: {"scene_id": _result(m, "load_scene")["scene_id"]}, 3),
        _call("classify_land_cover", lambda m: {"analysis_id": _result(m, "detect_changes")["analysis_id"]}, 4),
        _call("describe_changes", lambda m: {"analysis_id": _result(m, "detect_changes")["analysis_id"], "query": query}, 5),
        _call("render_map", lambda m: {"analysis_id": _result(m, "detect_changes")["analysis_id"], "query": query}, 6),
        AIMessage(content="done"),
    ]
    a = Assistant(settings, model=ScriptedChatModel(script=script))
    ans = a.ask("where did farmland get built over?", before=before, after=after)
    assert ans.regions and all(r.to_class == "built_up" and r.from_class in ("cropland", "low_vegetation") for r in ans.regions)
    assert ans.quadruples and sum(q.how_many for q in ans.quadruples) == len(ans.regions)
    assert {"png", "html", "geojson", "geotiff"} <= set(ans.maps) and all(Path(p).is_file() for p in ans.maps.values())
    # every number in the justification cites a tool call that really happened in this run
    events = Memory(settings.db_path).run_events(ans.audit_id)
    call_ids = {e.tool_call_id for e in events if e.kind == "tool_result"}
    assert ans.justification and {e.tool_call_id for e in ans.justification} <= call_ids
    total = next(e.value for e in ans.justification if e.claim.startswith("total area"))
    assert total == pytest.approx(sum(r.area_m2 for r in ans.regions), rel=1e-6)
    kinds = [e.kind for e in events]
    assert kinds[0] == "question" and kinds[-1] == "answer" and kinds.count("tool_call") == 6
    assert all(e.tool_schema_hash for e in events if e.kind == "tool_call")
    assert Memory(settings.db_path).verify().ok
    a.close()


def test_embedded_demo_question_and_follow_up_in_a_new_process(settings: Settings, demo_pair, tmp_path: Path) -> None:
    before, after = demo_pair
    a = Assistant(settings)
    first = a.ask("Where did farmland get built over?", before=before, after=after)
    a.close()
    assert first.query.to_classes == ["built_up"] and "cropland" in first.query.from_classes
    assert first.regions and first.text.split()[0].isdigit()
    assert "built" in first.text
    # follow-up in a new process, same thread and files: reuses the detection, narrows the area
    code = (
        "import json,sys; from geodelta.agent.api import Assistant; from geodelta.settings import Settings;"
        f"a=Assistant(Settings(db={str(settings.db_path)!r}, out={str(settings.out)!r}));"
        f"ans=a.ask('and how much of that is in the north?', thread_id={first.thread_id!r});"
        "print(ans.model_dump_json())"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    follow = json.loads(res.stdout.strip().splitlines()[-1])
    assert follow["query"]["area"] == {"kind": "sector", "sector": "north"}
    assert follow["query"]["to_classes"] == ["built_up"]
    assert follow["thread_id"] == first.thread_id
    assert all(r["sector"] == "north" for r in follow["regions"])
    assert 0 < len(follow["regions"]) < len(first.regions)
    ev = Memory(settings.db_path).run_events(follow["audit_id"])
    assert not any(e.tool == "detect_changes" for e in ev if e.kind == "tool_call"), "follow-up must reuse the detection"


def test_no_scene_asks_back_and_resumes(settings: Settings, demo_pair) -> None:
    before, after = demo_pair
    a = Assistant(settings)
    ans = a.ask("did the town grow?")
    assert ans.clarification and "images" in ans.clarification.lower()
    resumed = a.resume(ans.thread_id, "here they are", before=before, after=after)
    assert resumed.clarification is None and resumed.maps
    assert resumed.thread_id == ans.thread_id
    a.close()


def test_stream_and_aask(settings: Settings, demo_pair) -> None:
    before, after = demo_pair
    a = Assistant(settings)
    events = list(a.stream("where did new buildings appear?", before=before, after=after))
    types = [e["type"] for e in events]
    assert types[-1] == "answer" and "tool" in types and "progress" in types
    assert any("detect_changes" in e.get("tool_calls", []) for e in events)
    ans = asyncio.run(a.aask("where did water disappear?", before=before, after=after))
    assert ans.query.from_classes == ["water"]
    a.close()


@pytest.mark.parametrize("bad", ["../../etc/passwd", "/etc/passwd", "~/.ssh/id_rsa", "{out}/../../secret.tif"])
def test_tools_refuse_paths_outside_the_allowed_roots(settings: Settings, demo_pair, bad: str) -> None:
    ctx = ToolContext.create(settings)
    before, after = demo_pair
    ctx.allow(before, after)
    load = next(t for t in build_tools(ctx) if t.name == "load_scene")
    with pytest.raises(ToolInputError):
        load.invoke({"before": bad.format(out=settings.out), "after": str(after)})
    assert load.invoke({"before": str(before), "after": str(after)})["scene_id"].startswith("scn_")


def test_tool_schemas_match_snapshot(settings: Settings) -> None:
    """The tool descriptions are the model's contract: a change must be deliberate (update the snapshot)."""
    tools = build_tools(ToolContext.create(settings))
    current = {t.name: {"description": t.description, "args": t.tool_call_schema.model_json_schema()} for t in tools}
    if not SNAPSHOT.is_file():  # pragma: no cover - first run writes it
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(json.dumps(current, indent=1, sort_keys=True))
    assert json.loads(json.dumps(current, sort_keys=True)) == json.loads(SNAPSHOT.read_text())
    assert [t.name for t in tools][:3] == ["set_query", "load_scene", "detect_changes"]


def test_openai_backend_through_the_graph_with_fallback(settings: Settings, demo_pair) -> None:
    """A dead model server: clear ModelError, or the embedded planner takes over when allowed."""
    from openai_server import unused_port_url

    from geodelta.errors import ModelError

    before, after = demo_pair
    s = settings.model_copy(update={"backend": "openai", "openai_base_url": unused_port_url(), "openai_max_retries": 0, "openai_timeout_s": 2})
    a = Assistant(s)
    with pytest.raises(ModelError, match="No model server answers"):
        a.ask("where did farmland get built over?", before=before, after=after)
    a.close()
    b = Assistant(s.model_copy(update={"fallback_to_embedded": True}))
    ans = b.ask("where did farmland get built over?", before=before, after=after)
    assert ans.regions
    ev = Memory(s.db_path).run_events(ans.audit_id)
    assert any(e.kind == "plan" and (e.result or {}).get("fallback") == "embedded" for e in ev)
    b.close()
