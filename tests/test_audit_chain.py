"""Tamper evidence: edit, delete or forge an audit row with a raw sqlite3 connection -> verify names it.

The attacker drops the append-only triggers first, as someone with write access to the file would.
Checked through the Python API and through the CLI (typer CliRunner, exit code 1, row id printed).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from geodelta.contracts import SceneRef
from geodelta.memory import AuditEventIn, Memory
from geodelta.memory.chain import row_hash, verify_rows
from geodelta.memory.commands import audit_app, history_command, scenes_command

# The three lines geodelta/cli.py needs, on a test app of our own.
app = typer.Typer()
app.add_typer(audit_app, name="audit")
app.command("scenes")(scenes_command)
app.command("history")(history_command)

runner = CliRunner()


def cli(*args: str):
    # a wide terminal so rich does not fold the names the assertions look for
    return runner.invoke(app, list(args), catch_exceptions=False, env={"COLUMNS": "200"})


@pytest.fixture
def trail(tmp_path: Path) -> tuple[Path, str]:
    """A real trail of two questions in one thread: 12 events."""
    db = tmp_path / "trail.db"
    with Memory(db) as m:
        m.add_scene(SceneRef(paths=["/data/before.tif", "/data/after.tif"], sha256=["a" * 64, "b" * 64], crs="EPSG:32651",
                             resolution=(30.0, 30.0), width=400, height=300, dates=["2000-03-17", "2003-02-06"], bands=["B1", "B2"]))
        first = None
        for q in ("where did farmland get built over?", "and in the north?"):
            run = m.new_run_id()
            first = first or run
            m.record(AuditEventIn(kind="question", run_id=run, thread_id="t-42", actor="user", args={"question": q}))
            m.record(AuditEventIn(kind="plan", run_id=run, thread_id="t-42", args={"from_classes": ["cropland"], "to_classes": ["built_up"]}))
            m.record(AuditEventIn(kind="llm_call", run_id=run, thread_id="t-42", actor="model", model="embedded", duration_ms=3.5))
            m.record(AuditEventIn(kind="tool_call", run_id=run, thread_id="t-42", tool="detect_changes", tool_call_id="c1",
                                  tool_schema_hash="c" * 64, args={"method": "irmad"}))
            m.record(AuditEventIn(kind="tool_result", run_id=run, thread_id="t-42", actor="tool", tool="detect_changes",
                                  tool_call_id="c1", result={"regions": 7, "area_m2": 81000.0}, artefact_hashes=["d" * 64], duration_ms=120.0))
            m.record(AuditEventIn(kind="answer", run_id=run, thread_id="t-42", result={"text": "7 regions, 8.1 ha built over"}))
    return db, first


def _attack(db: Path, *sql: tuple[str, tuple]) -> None:
    conn = sqlite3.connect(db)
    conn.execute("DROP TRIGGER audit_events_no_update")
    conn.execute("DROP TRIGGER audit_events_no_delete")
    for stmt, params in sql:
        conn.execute(stmt, params)
    conn.commit()
    conn.close()


def _verify(db: Path):
    with Memory(db) as m:
        return m.verify()


def test_clean_trail_verifies_via_api_and_cli(trail: tuple[Path, str]) -> None:
    db, _ = trail
    assert _verify(db).ok and _verify(db).n == 12
    r = cli("audit", "verify", "--db", str(db))
    print(r.output)
    assert r.exit_code == 0 and r.output.startswith("OK: 12 events, chain verifies")


def test_edited_field_is_named(trail: tuple[Path, str]) -> None:
    db, _ = trail
    _attack(db, ("UPDATE audit_events SET result = ? WHERE id = 5", (json.dumps({"regions": 70, "area_m2": 81000.0}),)))
    v = _verify(db)
    assert (v.ok, v.first_bad_id, v.n) == (False, 5, 4) and v.reason.startswith("hash mismatch")
    r = cli("audit", "verify", "--db", str(db))
    assert r.exit_code == 1 and "row 5" in r.output and "hash mismatch" in r.output


def test_edited_hash_breaks_the_next_link(trail: tuple[Path, str]) -> None:
    db, _ = trail
    # a careful forger rewrites row 5 and its hash; row 6 still points at the old hash
    with Memory(db) as m:
        row = next(r for r in m.raw_events() if r["id"] == 5)
    row["result"] = json.dumps({"regions": 70})
    _attack(db, ("UPDATE audit_events SET result = ?, hash = ? WHERE id = 5", (row["result"], row_hash(row))))
    v = _verify(db)
    assert (v.ok, v.first_bad_id) == (False, 6) and v.reason.startswith("prev_hash break")


def test_deleted_row_is_named(trail: tuple[Path, str]) -> None:
    db, _ = trail
    _attack(db, ("DELETE FROM audit_events WHERE id = 7", ()))
    v = _verify(db)
    assert (v.ok, v.first_bad_id) == (False, 8) and "missing id gap" in v.reason and "expected id 7" in v.reason
    r = cli("audit", "verify", "--db", str(db))
    assert r.exit_code == 1 and "row 8" in r.output and "gap" in r.output


def test_forged_rows_are_named(trail: tuple[Path, str]) -> None:
    db, _ = trail
    with Memory(db) as m:
        last = list(m.raw_events())[-1]
    forged = {**last, "id": 13, "kind": "answer", "result": json.dumps({"text": "nothing changed"}), "prev_hash": "f" * 64}
    forged["hash"] = row_hash(forged)
    cols = ",".join(forged)
    _attack(db, (f"INSERT INTO audit_events ({cols}) VALUES ({','.join('?' * len(forged))})", tuple(forged.values())))
    v = _verify(db)
    assert (v.ok, v.first_bad_id, v.n) == (False, 13, 12) and v.reason.startswith("prev_hash break")
    r = cli("audit", "verify", "--db", str(db), "--json")
    assert r.exit_code == 1 and json.loads(r.output)["first_bad_id"] == 13


def test_forged_row_with_a_made_up_hash(trail: tuple[Path, str]) -> None:
    db, _ = trail
    with Memory(db) as m:
        last = list(m.raw_events())[-1]
    forged = {**last, "id": 13, "error": "injected", "prev_hash": last["hash"], "hash": "e" * 64}
    cols = ",".join(forged)
    _attack(db, (f"INSERT INTO audit_events ({cols}) VALUES ({','.join('?' * len(forged))})", tuple(forged.values())))
    v = _verify(db)
    assert (v.first_bad_id, v.reason.split(":")[0]) == (13, "hash mismatch")


def test_export_is_reverifiable(trail: tuple[Path, str], tmp_path: Path) -> None:
    db, _ = trail
    out = tmp_path / "trail.jsonl"
    r = cli("audit", "export", "--jsonl", str(out), "--db", str(db))
    assert r.exit_code == 0 and "12 events" in r.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 12 and verify_rows(rows).ok
    rows[1]["args"] = rows[1]["args"].replace("cropland", "water")
    assert verify_rows(rows).first_bad_id == 2


def test_show_run_thread_and_list(trail: tuple[Path, str]) -> None:
    db, run = trail
    r = cli("audit", "show", run, "--db", str(db), "--json")
    events = json.loads(r.output)
    assert r.exit_code == 0 and [e["kind"] for e in events] == ["question", "plan", "llm_call", "tool_call", "tool_result", "answer"]
    assert {e["run_id"] for e in events} == {run}
    r = cli("audit", "show", "--thread", "t-42", "--db", str(db), "--json")
    assert len(json.loads(r.output)) == 12
    r = cli("audit", "show", run, "--db", str(db))
    assert r.exit_code == 0 and "detect_changes" in r.output and "tool_result" in r.output
    r = cli("audit", "show", "--db", str(db), "--json")
    assert [x["question"] for x in json.loads(r.output)] == ["where did farmland get built over?", "and in the north?"]
    r = runner.invoke(app, ["audit", "show", "nope", "--db", str(db)])
    assert r.exit_code == 1 and "no audit events" in r.output


def test_scenes_and_history(trail: tuple[Path, str]) -> None:
    db, run = trail
    r = cli("scenes", "--db", str(db), "--json")
    scenes = json.loads(r.output)
    assert r.exit_code == 0 and len(scenes) == 1 and scenes[0]["ref"]["crs"] == "EPSG:32651"
    r = cli("scenes", "--db", str(db))
    assert "before.tif" in r.output and "400x300" in r.output
    r = cli("history", "t-42", "--db", str(db), "--json")
    hist = json.loads(r.output)
    assert [h["run_id"] for h in hist][0] == run and hist[1]["answer"] == "7 regions, 8.1 ha built over"
    r = cli("history", "t-42", "--db", str(db))
    assert r.exit_code == 0 and run in r.output


def test_missing_database_is_a_clear_error(tmp_path: Path) -> None:
    r = runner.invoke(app, ["audit", "verify", "--db", str(tmp_path / "none.db")])
    assert r.exit_code == 2 and "no GeoDelta database" in r.output
    assert not (tmp_path / "none.db").exists()


# ---------------------------------------------------------------- keyed chain (HMAC) and truncation

KEY = "correct horse battery staple"


def _keyed_trail(db: Path, n: int = 6) -> None:
    with Memory(db, audit_key=KEY) as m:
        for i in range(n):
            m.record(AuditEventIn(kind="tool_call", run_id="r1", thread_id="t", tool="detect_changes", args={"i": i}))


def _sql(db: Path, stmt: str) -> None:
    conn = sqlite3.connect(db)
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='trigger'").fetchall():
        conn.execute(f"DROP TRIGGER {name}")
    conn.execute(stmt)
    conn.commit()
    conn.close()


def _rewrite_from(db: Path, first_id: int, new_tool: str = "forged") -> None:
    """The attack the plain chain cannot see: edit a row and recompute every later hash (no key)."""
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    conn.execute("DROP TRIGGER IF EXISTS audit_events_no_update")
    rows = [dict(r) for r in conn.execute("SELECT * FROM audit_events ORDER BY id")]
    prev = rows[first_id - 2]["hash"] if first_id > 1 else rows[0]["prev_hash"]
    for row in rows[first_id - 1:]:
        if row["id"] == first_id:
            row["tool"] = new_tool
        row["prev_hash"] = prev
        row["hash"] = prev = row_hash(row)
        conn.execute("UPDATE audit_events SET tool=?, prev_hash=?, hash=? WHERE id=?",
                     (row["tool"], row["prev_hash"], row["hash"], row["id"]))
    conn.commit()
    conn.close()


def test_full_rewrite_passes_the_plain_chain_but_not_the_keyed_one(tmp_path: Path) -> None:
    db = tmp_path / "keyed.db"
    _keyed_trail(db)
    with Memory(db, audit_key=KEY) as m:
        ok = m.verify()
    assert ok.ok and ok.keyed == 6
    _rewrite_from(db, 3)
    assert _verify(db).ok  # without the key the rewrite is invisible: that is the documented limit
    with Memory(db, audit_key=KEY) as m:
        res = m.verify()
    assert not res.ok and res.first_bad_id == 3 and "HMAC" in res.reason


def test_stripped_macs_are_detected(tmp_path: Path) -> None:
    db = tmp_path / "keyed.db"
    _keyed_trail(db)
    _rewrite_from(db, 4)
    _sql(db, "UPDATE audit_events SET mac = NULL WHERE id >= 4")
    with Memory(db, audit_key=KEY) as m:
        res = m.verify()
    assert not res.ok and res.first_bad_id == 4 and "no HMAC" in res.reason
    _sql(db, "UPDATE audit_events SET mac = NULL")
    with Memory(db, audit_key=KEY) as m:
        res = m.verify()
    assert not res.ok and "no row carries an HMAC" in res.reason


def test_wrong_key_fails(tmp_path: Path) -> None:
    db = tmp_path / "keyed.db"
    _keyed_trail(db)
    with Memory(db, audit_key="another key") as m:
        res = m.verify()
    assert not res.ok and res.first_bad_id == 1


def test_expect_head_detects_truncation_and_allows_appends(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    _keyed_trail(db, 5)
    head = _verify(db).head_hash
    with Memory(db) as m:
        m.record(AuditEventIn(kind="answer", run_id="r2", result={"text": "later"}))  # appended after the head was kept
        assert m.verify(expect_head=head).ok
    _sql(db, "DELETE FROM audit_events WHERE id >= 4")
    with Memory(db) as m:
        assert m.verify().ok  # a shorter chain is still a valid chain ...
        res = m.verify(expect_head=head)
    assert not res.ok and "truncated" in res.reason  # ... but it lacks the head kept elsewhere


def test_keyed_chain_through_the_installed_script(tmp_path: Path) -> None:
    """GEODELTA_AUDIT_KEY through the real console script: keyed rows written by `ask`, the rewrite caught."""
    import os
    import subprocess
    import sys

    gd = str(Path(sys.executable).parent / "geodelta")
    db = tmp_path / "gd.db"
    env = {**os.environ, "GEODELTA_DB": str(db), "GEODELTA_AUDIT_KEY": KEY}
    proc = subprocess.run([gd, "plan", "where did farmland get built over?"], capture_output=True, text=True, env=env)
    assert proc.returncode == 0
    _keyed_trail(db, 4)
    ok = subprocess.run([gd, "audit", "verify", "--db", str(db), "--json"], capture_output=True, text=True, env=env)
    assert ok.returncode == 0 and json.loads(ok.stdout)["keyed"] == 4, ok.stdout + ok.stderr
    head = json.loads(ok.stdout)["head_hash"]
    _rewrite_from(db, 2)
    plain = subprocess.run([gd, "audit", "verify", "--db", str(db)], capture_output=True, text=True,
                           env={k: v for k, v in env.items() if k != "GEODELTA_AUDIT_KEY"})
    assert plain.returncode == 0
    keyed = subprocess.run([gd, "audit", "verify", "--db", str(db)], capture_output=True, text=True, env=env)
    assert keyed.returncode == 1 and "row 2: HMAC mismatch" in keyed.stdout, keyed.stdout
    cut = subprocess.run([gd, "audit", "verify", "--db", str(db), "--expect-head", head], capture_output=True, text=True,
                         env={k: v for k, v in env.items() if k != "GEODELTA_AUDIT_KEY"})
    assert cut.returncode == 1 and "expected head" in cut.stdout
