"""`langgraph.json` at the root names a graph factory that imports, compiles and answers with the embedded planner."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

from langgraph.graph.state import CompiledStateGraph

from geodelta.agent.state import question_message
from geodelta.memory import Memory
from geodelta.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def _factory():
    config = json.loads((ROOT / "langgraph.json").read_text())
    assert config["dependencies"] == ["."]
    module, _, attr = config["graphs"]["geodelta"].partition(":")
    return getattr(importlib.import_module(module), attr)


def test_langgraph_json_names_an_importable_factory() -> None:
    make_graph = _factory()
    assert callable(make_graph) and make_graph.__module__ == "geodelta.agent.langgraph_app"


def test_factory_compiles_and_answers_with_the_embedded_planner(demo_pair, tmp_path: Path, monkeypatch) -> None:
    before, after = demo_pair
    # what `langgraph dev` would see: settings from the environment, a RunnableConfig, no checkpointer of ours
    monkeypatch.setenv("GEODELTA_DB", str(tmp_path / "gd.db"))
    monkeypatch.setenv("GEODELTA_OUT", str(tmp_path / "out"))
    monkeypatch.setenv("GEODELTA_ALLOWED_ROOTS", str(before.parent))
    graph = _factory()({"configurable": {"thread_id": "t1"}})
    assert isinstance(graph, CompiledStateGraph)
    assert {"plan", "tools", "clarify", "answer"} <= set(graph.get_graph().nodes)
    assert graph is _factory()({"configurable": {"thread_id": "t2"}}), "one compiled graph per settings"
    result = graph.invoke({"messages": [question_message("Where did farmland get built over?", before=str(before), after=str(after))]})
    answer = result["answer"]
    assert answer["query"]["to_classes"] == ["built_up"] and answer["regions"]
    assert re.search(r"\d[\d.,]* ?(ha|km²)", answer["text"])
    with Memory(Settings().db_path) as mem:
        rows = list(mem.raw_events())
    assert any(r["kind"] == "llm_call" and r["model"] == "geodelta-embedded" for r in rows)
    assert any(r["kind"] == "tool_call" and r["tool"] == "detect_changes" for r in rows)


def test_files_outside_the_allowed_roots_are_refused(demo_pair, tmp_path: Path) -> None:
    before, after = demo_pair
    settings = Settings(db=tmp_path / "gd.db", out=tmp_path / "out", allowed_roots=str(tmp_path))
    graph = _factory()(settings=settings, checkpointer=None)
    result = graph.invoke({"messages": [question_message("Where did farmland get built over?", before=str(before), after=str(after))]})
    msgs = [m for m in result["messages"] if getattr(m, "name", None) == "load_scene"]
    assert msgs and msgs[0].status == "error" and "outside the allowed roots" in msgs[0].content
    assert not result.get("answer", {}).get("regions")
