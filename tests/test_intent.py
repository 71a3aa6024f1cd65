"""The embedded planner's question -> ChangeQuery reading (agent/intent.py) and its benchmark floor."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from geodelta.agent.intent import load_wordllama, parse_question
from geodelta.contracts import ChangeQuery

# Measured over every benchmarks/intent_questions*.jsonl (all fields right, asked-back rows count as not
# right) after issue 16: heldout 182/190 (the 31 "uz" rows, never tuned on, 23/31), blind 149/155 (core
# 29/32, users 120/123). Floors sit a little below so a regression fails and small wording changes do not.
HELDOUT_ALL_FIELDS_FLOOR = 0.93
BLIND_ALL_FIELDS_FLOOR = 0.92


def q(text: str, previous: ChangeQuery | None = None) -> ChangeQuery:
    res = parse_question(text, previous)
    assert res.clarify is None, res.clarify
    assert res.query is not None
    return res.query


def test_farmland_built_over_reads_as_cropland_or_grassland_to_built_up():
    got = q("Where did farmland get built over?")
    assert (got.from_classes, got.to_classes, got.direction) == (["low_vegetation", "cropland"], ["built_up"], "convert")
    assert got.area.kind == "scene" and got.rationale


@pytest.mark.parametrize(
    ("text", "frm", "to", "direction"),
    [
        ("new buildings", [], ["built_up"], "appear"),
        ("did the reservoir shrink", ["water"], [], "disappear"),
        ("where did forest disappear", ["tree"], [], "disappear"),
        ("any change", [], [], "any"),
        ("paved over", [], ["built_up"], "appear"),
        ("urban sprawl", [], ["built_up"], "appear"),
        ("new housing estates", [], ["built_up"], "appear"),
        ("fields left fallow", ["cropland"], ["low_vegetation", "bare_ground"], "convert"),
        ("the reservoir dried out", ["water"], [], "disappear"),
        ("deforestation", ["tree"], [], "disappear"),
        ("where did the lake grow", [], ["water"], "appear"),
        ("forest cleared for farming", ["tree"], ["low_vegetation", "cropland"], "convert"),
    ],
)
def test_issue_wordings(text, frm, to, direction):
    got = q(text)
    assert (got.from_classes, got.to_classes, got.direction) == (frm, to, direction)


def test_sector_size_and_bbox():
    got = q("Show me new buildings bigger than 2 ha in the north-east")
    assert got.area.kind == "sector" and got.area.sector == "north-east"
    assert got.min_area_m2 == pytest.approx(20000)
    assert q("cropland lost, at least 500 m2").min_area_m2 == pytest.approx(500)
    assert q("water loss over 1 km² in the west").min_area_m2 == pytest.approx(1e6)
    box = q("any change inside bbox 121.0,28.1,121.2,28.3").area
    assert box.kind == "bbox" and box.bbox == (121.0, 28.1, 121.2, 28.3)


def test_follow_up_inherits_classes_and_changes_area_and_report():
    first = q("Where did farmland get built over?")
    got = q("and how much of that is in the north?", previous=first)
    assert (got.from_classes, got.to_classes, got.direction) == (first.from_classes, first.to_classes, "convert")
    assert got.area.kind == "sector" and got.area.sector == "north"
    assert "how_much" in got.report


@pytest.mark.parametrize("text", ["where did the glaciers melt", "what changed in the north-north-west corner of Mars",
                                  "any change inside bbox 200,28.1,121.2,95", "tell me a joke"])
def test_unresolvable_questions_ask_back(text):
    res = parse_question(text)
    assert res.clarify and res.confidence < 0.5


def test_out_of_vocabulary_offers_closest_reading():
    res = parse_question("where did the glaciers melt")
    assert res.query is not None and res.query.from_classes == ["other"]
    assert "snow and ice" in res.matched["out_of_vocabulary"]


def test_matched_explains_the_reading():
    res = parse_question("were did the forrest dissapear in the nortwest")
    assert res.matched["typos"]["forrest"] == "forest"
    assert res.query.area.sector == "north-west" and res.query.from_classes == ["tree"]
    emb = parse_question("where did the woodlands shrink").matched
    assert "classes" in emb


def test_deterministic():
    texts = ["Where did farmland get built over?", "yo where'd all the trees go", "urbanisation bigger than 2 ha in the south west"]
    first = [parse_question(t) for t in texts]
    again = [parse_question(t) for t in texts]
    assert [(r.query.model_dump(), r.confidence, r.matched) for r in first] == [(r.query.model_dump(), r.confidence, r.matched) for r in again]


def test_wordllama_loads_offline_without_sockets():
    """A fresh interpreter with HF_HUB_OFFLINE=1 and socket connects forbidden still loads and embeds."""
    code = (
        "import socket\n"
        "def no(*a, **k): raise OSError('network used')\n"
        "socket.socket.connect = no; socket.socket.connect_ex = no; socket.create_connection = no\n"
        "from geodelta.agent.intent import load_wordllama, parse_question\n"
        "m = load_wordllama(); assert m.embed(['forest']).shape == (1, 256)\n"
        "assert parse_question('where did forest disappear').query.from_classes == ['tree']\n"
        "print('ok')\n"
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HOME="/nonexistent-hf-home")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("ok")


def test_model_loaded_once():
    assert load_wordllama() is load_wordllama()


def test_benchmark_accuracy_floor():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "intent.py"
    spec = importlib.util.spec_from_file_location("geodelta_bench_intent", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    res = bench.bench_intent()["splits"]
    assert res["heldout"]["n"] >= 190 and res["tune"]["n"] >= 450 and res["blind"]["n"] >= 155
    assert res["heldout"]["all"] >= HELDOUT_ALL_FIELDS_FLOOR
    assert res["blind"]["all"] >= BLIND_ALL_FIELDS_FLOOR


@pytest.mark.parametrize(
    ("text", "frm", "to", "direction"),
    [
        # negation and compounds (issue 16)
        ("where is the ground now without any plants?", [], ["bare_ground"], "appear"),
        ("where did short, low-growing plants spread?", [], ["low_vegetation"], "appear"),
        ("where did vegetation other than crops disappear?", ["tree", "low_vegetation"], [], "disappear"),
        ("ignore the roads: where did the forest shrink?", ["tree"], [], "disappear"),
        ("where did tall woody vegetation grow back?", [], ["tree"], "appear"),
        # things outside the core lexicon, mapped to the nearest class
        ("where did the sports pitches disappear?", ["low_vegetation"], [], "disappear"),
        ("has the airfield grown", [], ["built_up"], "appear"),
        ("were the meadows turned into car parks?", ["low_vegetation"], ["built_up"], "convert"),
        ("where were solar farms built on cropland?", ["cropland"], ["built_up"], "convert"),
        ("has the quarry expanded?", [], ["bare_ground"], "appear"),
        ("where did greenhouses replace orchards?", ["tree"], ["built_up"], "convert"),
        ("were the vineyards flooded?", ["cropland"], ["water"], "convert"),
        ("where did the wetlands dry out?", ["water", "low_vegetation"], [], "disappear"),
        ("where have field margins been lost?", ["low_vegetation"], [], "disappear"),
        # roles and direction
        ("a new road cut across the fields", ["cropland"], ["built_up"], "convert"),
        ("fields paved over", ["cropland"], ["built_up"], "convert"),
        ("woodland cleared for crops", ["tree"], ["cropland"], "convert"),
        ("where did the town lose buildings", ["built_up"], [], "disappear"),
        ("where did illegal settlements appear in the forest?", ["tree"], ["built_up"], "convert"),
        ("what replaced the orchards?", ["tree"], [], "disappear"),
        ("where did the forest grow back after logging?", [], ["tree"], "appear"),
        # phenomena
        ("where did the shore retreat?", [], ["water"], "appear"),
        ("did the reservoir shrink?", ["water"], [], "disappear"),
        ("where did the river flood?", [], ["water"], "appear"),
        ("which fields were left fallow?", ["cropland"], ["low_vegetation", "bare_ground"], "convert"),
        ("where did the river burst its banks?", [], ["water"], "appear"),
        ("where was land reclaimed from the sea?", ["water"], [], "disappear"),
        # several sentences: the question's own mentions, unless it points back with a pronoun
        ("I farm here. Which fields flooded?", ["cropland"], ["water"], "convert"),
        ("We manage the reservoir. Has it shrunk since the first image?", ["water"], [], "disappear"),
        ("where did water replace land?", [], ["water"], "appear"),
    ],
)
def test_issue_16_families(text, frm, to, direction):
    got = q(text)
    assert (got.from_classes, got.to_classes, got.direction) == (frm, to, direction)


def test_field_confidence_and_asking_back_when_unsure():
    sure = parse_question("where was woodland cleared for crops?")
    assert sure.clarify is None and min(sure.field_confidence.values()) == 1.0
    unsure = parse_question("forest in the north?")  # a class but no word saying what happened to it
    assert unsure.clarify and "yes" in unsure.clarify
    assert unsure.field_confidence["direction"] < 0.55 and unsure.field_confidence["from"] == 1.0
    assert unsure.query is not None and unsure.query.from_classes == ["tree"] and unsure.query.direction == "any"
    assert unsure.query.area.sector == "north"


def test_off_topic_stable_and_place_words():
    res = parse_question("write me a poem about rivers")
    assert res.query is None and res.clarify
    stable = parse_question("which forests stayed the same?")  # a ChangeQuery names changes only
    assert stable.query is None and "stayed the same" in stable.clarify
    assert q("which meadows along the river were flooded?").from_classes == ["low_vegetation"]  # the river is a place
    assert q("where were roads built next to the distribution centre?").area.kind == "scene"


def test_embedding_fallback_rejects_false_friends():
    res = parse_question("which fields were harvested by the logistics firm")
    assert "embedding" not in res.matched or "logistics" not in res.matched["embedding"]
    assert parse_question("where did the woodlands shrink").query.from_classes == ["tree"]


def test_bench_counts_asked_apart(tmp_path):
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "intent.py"
    spec = importlib.util.spec_from_file_location("geodelta_bench_intent_asked", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    exp = {"from_classes": ["tree"], "to_classes": [], "direction": "any", "area": {"kind": "scene"}, "min_area_m2": 0}
    rows = [{"id": "a", "split": "blind", "question": "forest?", "expected": exp},
            {"id": "b", "split": "blind", "question": "how did the forest change?", "expected": exp},
            {"id": "c", "split": "blind", "question": "new buildings", "expected": exp}]
    f = tmp_path / "intent_questions_x.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    s = bench.bench_intent(f)["splits"]["blind"]
    assert (s["n"], s["all"], s["asked"], round(s["wrong"], 6)) == (3, 1 / 3, 1 / 3, round(1 / 3, 6))
