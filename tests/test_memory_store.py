"""Memory on real SQLite files: model round trips, migrations, append-only triggers, LangGraph threads."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geodelta.contracts import SECTORS, Region, SceneRef
from geodelta.errors import ConfigError
from geodelta.memory import AuditEventIn, Memory, open_checkpointer
from geodelta.memory.chain import row_hash
from geodelta.memory.migrations import LATEST, migrate, schema_version
from geodelta.memory.models import EVENT_KINDS, GENESIS_HASH
from geodelta.memory.store import connect

FAST = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Strings SQLite can hold as given (lone surrogates are escaped by record(), tested separately).
text = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=12)
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | finite | text,
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(text, kids, max_size=3),
    max_leaves=10,
)
hexes = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
events_in = st.builds(
    AuditEventIn,
    kind=st.sampled_from(EVENT_KINDS),
    run_id=st.none() | text,
    thread_id=st.none() | text,
    actor=st.sampled_from(["user", "agent", "tool", "model", "system"]),
    tool=st.none() | text,
    tool_schema_hash=st.none() | hexes,
    tool_call_id=st.none() | text,
    args=json_values,
    result=json_values,
    artefact_hashes=st.lists(hexes, max_size=3),
    model=st.none() | text,
    duration_ms=st.none() | st.floats(min_value=0, max_value=1e9, allow_nan=False),
    error=st.none() | text,
)
pair = st.tuples(finite, finite)
scene_refs = st.builds(
    SceneRef,
    paths=st.lists(text, min_size=1, max_size=2),
    sha256=st.lists(hexes, min_size=1, max_size=2),
    crs=st.none() | st.sampled_from(["EPSG:32651", "EPSG:4326"]),
    bounds=st.none() | st.tuples(finite, finite, finite, finite),
    resolution=st.none() | pair,
    width=st.integers(1, 100_000),
    height=st.integers(1, 100_000),
    dates=st.lists(st.none() | st.dates().map(str), max_size=2),
    bands=st.lists(text, max_size=4),
)
unit = st.floats(0, 1)
regions = st.builds(
    Region,
    id=st.integers(0, 10_000),
    polygon=st.fixed_dictionaries({"type": st.just("Polygon"), "coordinates": st.lists(st.lists(st.tuples(finite, finite).map(list), min_size=4, max_size=5), min_size=1, max_size=1)}),
    bbox_px=st.tuples(*[st.integers(0, 10_000)] * 4),
    centroid_px=pair,
    centroid_lonlat=st.none() | pair,
    sector=st.sampled_from(SECTORS),
    area_m2=st.none() | st.floats(0, 1e9),
    area_px=st.integers(0, 10**9),
    from_class=st.sampled_from(["water", "cropland", "built_up", "unknown"]),
    to_class=st.sampled_from(["tree", "bare_ground", "other", "unknown"]),
    how=st.sampled_from(["appeared", "disappeared", "converted", "changed"]),
    confidence=unit,
    class_confidence=st.none() | unit,
    refined_by=st.none() | st.sampled_from(["sam", "superpixel"]),
    first_interval=st.none() | st.integers(0, 5),
)


@pytest.fixture(scope="module")
def mem(tmp_path_factory: pytest.TempPathFactory) -> Memory:
    m = Memory(tmp_path_factory.mktemp("mem") / "sub" / "geodelta.db")
    yield m
    m.close()


def test_fresh_file_is_wal_at_latest_version(tmp_path: Path) -> None:
    path = tmp_path / "new" / "folder" / "g.db"
    with Memory(path) as m:
        assert m.schema_version == LATEST == 4
        assert path.is_file()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")] == list(range(1, LATEST + 1))
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"scenes", "audit_events"} <= tables and not {"analyses", "regions", "artefacts"} & tables  # dropped in v4


def test_db_path_from_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEODELTA_DB", str(tmp_path / "env" / "x.db"))
    with Memory() as m:
        assert m.path == tmp_path / "env" / "x.db"
    assert (tmp_path / "env" / "x.db").is_file()


@FAST
@given(event=events_in)
def test_audit_event_round_trip(mem: Memory, event: AuditEventIn) -> None:
    stored = mem.record(event)
    back = mem.event(stored.id)
    assert back == stored
    expected = json.loads(json.dumps(event.model_dump()))  # tuples -> lists, as JSON keeps them
    got = back.model_dump(exclude={"id", "ts", "prev_hash", "hash"})
    assert json.loads(json.dumps(got)) == expected
    assert back.ts.utcoffset() is not None and back.ts.utcoffset().total_seconds() == 0


def test_chain_links_and_verifies(mem: Memory) -> None:
    run = mem.new_run_id()
    a = mem.record(AuditEventIn(kind="question", run_id=run, thread_id="t", actor="user", args={"question": "what changed?"}))
    b = mem.record(AuditEventIn(kind="answer", run_id=run, thread_id="t", result={"text": "nothing"}))
    assert b.prev_hash == a.hash and b.id == a.id + 1
    assert [e.id for e in mem.run_events(run)] == [a.id, b.id]
    result = mem.verify()
    assert result.ok and result.n == mem.count_events() and result.head_hash == b.hash


def test_awkward_values_are_stored_not_rejected(tmp_path: Path) -> None:
    with Memory(tmp_path / "g.db") as m:
        e = m.record(AuditEventIn(kind="error", error="bad name \udc80.tif", args={"x": float("nan"), "p": tmp_path}))
        assert e.args == {"x": "NaN", "p": str(tmp_path)} and "\\udc80" in e.error
        assert m.verify().ok


@FAST
@given(ref=scene_refs)
def test_scene_round_trip(mem: Memory, ref: SceneRef) -> None:
    scene_id = mem.add_scene(ref)
    assert mem.get_scene(scene_id).ref == ref
    assert mem.add_scene(ref) == scene_id  # same content, same id
    assert scene_id in {s.id for s in mem.list_scenes()}


def test_audit_rows_cannot_be_updated_or_deleted(mem: Memory) -> None:
    mem.record(AuditEventIn(kind="plan", args={"steps": 1}))
    conn = sqlite3.connect(mem.path)
    for sql in ("UPDATE audit_events SET error = 'x' WHERE id = 1", "DELETE FROM audit_events WHERE id = 1"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute(sql)
    conn.close()


def test_migration_from_v1_keeps_data(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = connect(path)
    assert migrate(conn, target=1) == 1 == schema_version(conn)
    cols = {r[1] for r in conn.execute("PRAGMA table_info(audit_events)")}
    assert "tool_call_id" not in cols
    prev, old_hashes = GENESIS_HASH, []
    for i in range(1, 4):  # rows as a v1 GeoDelta wrote them
        row = {"id": i, "ts": f"2025-01-0{i}T00:00:00+00:00", "run_id": "old", "thread_id": "t0", "actor": "agent",
               "kind": "tool_call", "tool": "detect_changes", "args": json.dumps({"i": i}), "artefact_hashes": "[]",
               "prev_hash": prev}
        row["hash"] = prev = row_hash(row)
        old_hashes.append(prev)
        conn.execute(f"INSERT INTO audit_events ({','.join(row)}) VALUES ({','.join('?' * len(row))})", tuple(row.values()))
    conn.execute("INSERT INTO scenes (id, paths, sha256, width, height, created) VALUES ('scn_old', '[\"a.tif\"]', '[\"ab\"]', 5, 6, '2025-01-01T00:00:00+00:00')")
    conn.close()

    with Memory(path) as m:
        assert m.schema_version == LATEST
        assert [e.hash for e in m.run_events("old")] == old_hashes
        assert m.get_scene("scn_old").ref.width == 5
        new = m.record(AuditEventIn(kind="tool_result", tool="detect_changes", tool_call_id="call_1"))
        assert new.prev_hash == old_hashes[-1] and new.tool_call_id == "call_1"
        v = m.verify()
        assert v.ok and v.n == 4
    with Memory(path) as m:  # reopening applies nothing twice
        assert m.schema_version == LATEST


def test_failed_migration_rolls_back_with_its_bookkeeping(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import geodelta.memory.migrations as mig

    def broken(db) -> None:
        db["half_done"].create({"x": int})
        raise RuntimeError("disk full halfway")

    path = tmp_path / "g.db"
    Memory(path).close()
    nxt = LATEST + 1
    monkeypatch.setattr(mig, "MIGRATIONS", [*mig.MIGRATIONS, (nxt, "broken", broken)])
    monkeypatch.setattr(mig, "LATEST", nxt)
    conn = connect(path)
    with pytest.raises(RuntimeError, match="halfway"):
        mig.migrate(conn, target=nxt)
    assert schema_version(conn) == LATEST
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'half_done'").fetchone() is None
    conn.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    Memory(path).close()
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO schema_migrations VALUES (99, 'from the future', '2030-01-01')")
    conn.commit()
    conn.close()
    with pytest.raises(ConfigError, match="newer"):
        Memory(path)


_GRAPH = textwrap.dedent("""
    import operator, sys, json
    from typing import Annotated, TypedDict
    from langgraph.graph import StateGraph, START, END
    from geodelta.memory import Memory, AuditEventIn, open_checkpointer

    class State(TypedDict):
        items: Annotated[list, operator.add]

    b = StateGraph(State)
    b.add_node("plan", lambda s: {"items": ["planned"]})
    b.add_node("act", lambda s: {"items": ["acted after " + ",".join(s["items"])]})
    b.add_edge(START, "plan"); b.add_edge("plan", "act"); b.add_edge("act", END)
    db, phase = sys.argv[1], sys.argv[2]
    saver = open_checkpointer(db)
    graph = b.compile(checkpointer=saver, interrupt_before=["act"])
    cfg = {"configurable": {"thread_id": "thread-1"}}
    with Memory(db) as m:
        m.record(AuditEventIn(kind="plan", thread_id="thread-1", args={"phase": phase}))
    out = graph.invoke({"items": ["start"]} if phase == "first" else None, cfg)
    snap = graph.get_state(cfg)
    print(json.dumps({"items": out["items"], "next": list(snap.next)}))
    saver.conn.close()
""")


def test_thread_resumes_in_a_new_process(tmp_path: Path) -> None:
    db = tmp_path / "threads.db"

    def run(phase: str) -> dict:
        p = subprocess.run([sys.executable, "-c", _GRAPH, str(db), phase], capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        return json.loads(p.stdout.strip().splitlines()[-1])

    first = run("first")
    assert first == {"items": ["start", "planned"], "next": ["act"]}  # stopped before "act"
    second = run("resume")  # a new process picks the thread up from the file
    assert second == {"items": ["start", "planned", "acted after start,planned"], "next": []}
    with Memory(db) as m:  # memory and checkpoints share the file
        assert [e.args["phase"] for e in m.thread_events("thread-1")] == ["first", "resume"]
        assert m.verify().ok
    saver = open_checkpointer(db)
    assert saver.get_tuple({"configurable": {"thread_id": "thread-1"}}) is not None
    saver.conn.close()
