"""Several writers on one file: two processes x two threads, and a writer killed with SIGKILL.

Real processes (subprocess) on a real SQLite file; run with `pytest -s` to see the figures.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

from geodelta.memory import AuditEventIn, Memory

# One process: waits for "go" on stdin, then 2 threads append N events each. Thread 0 uses the
# process's shared Memory, thread 1 its own connection, so both in-process paths are exercised.
_WRITER = textwrap.dedent("""
    import sys, threading
    from geodelta.memory import Memory, AuditEventIn
    db, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    shared = Memory(db)
    print("ready", flush=True)
    sys.stdin.readline()

    def work(t):
        m = shared if t == 0 else Memory(db)
        for i in range(n):
            m.record(AuditEventIn(kind="tool_call", run_id=f"{tag}-{t}", thread_id=tag, tool="detect_changes",
                                  args={"tag": tag, "thread": t, "i": i}))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(2)]
    for th in threads: th.start()
    for th in threads: th.join()
    print("done", flush=True)
""")

# Appends events forever, printing each id once its transaction has committed.
_LOOPER = textwrap.dedent("""
    import sys
    from geodelta.memory import Memory, AuditEventIn
    m = Memory(sys.argv[1])
    i = 0
    while True:
        e = m.record(AuditEventIn(kind="tool_result", run_id="loop", tool="render_map", result={"i": i, "pad": "x" * 200}))
        print(e.id, flush=True)
        i += 1
""")


def test_two_processes_two_threads_each_stay_linear(tmp_path: Path) -> None:
    db = tmp_path / "busy.db"
    # no file yet: both processes race to create it and apply the migrations
    per_thread = 250  # 2 threads x 250 = 500 events per process
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(db), tag, str(per_thread)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for tag in ("A", "B")]
    for p in procs:
        assert p.stdout.readline().strip() == "ready", p.stderr.read()
    for p in procs:  # start both at once so their transactions contend
        p.stdin.write("go\n")
        p.stdin.flush()
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0 and "done" in out, err

    with Memory(db) as m:
        rows = list(m.raw_events())
        result = m.verify()
    per_writer = Counter(r["run_id"] for r in rows)
    switches = sum(1 for a, b in zip(rows, rows[1:]) if a["thread_id"] != b["thread_id"])
    print(f"\nconcurrency: rows written 1000 (2 processes x 2 threads x {per_thread}), rows found {len(rows)}, "
          f"chain verifies: {result.ok} over {result.n} rows, process switches along the chain: {switches}")
    assert len(rows) == 1000 and [r["id"] for r in rows] == list(range(1, 1001))
    assert per_writer == {"A-0": 250, "A-1": 250, "B-0": 250, "B-1": 250}
    assert result.ok and result.n == 1000


def test_writer_killed_mid_write_loses_nothing_committed(tmp_path: Path) -> None:
    db = tmp_path / "killed.db"
    proc = subprocess.Popen([sys.executable, "-c", _LOOPER, str(db)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    committed: list[int] = []
    while len(committed) < 150:
        line = proc.stdout.readline()
        assert line, proc.stderr.read()
        committed.append(int(line))
    os.kill(proc.pid, signal.SIGKILL)
    out, _ = proc.communicate(timeout=30)
    committed += [int(x) for x in out.split()]  # ids it reported before it died
    assert proc.returncode == -signal.SIGKILL

    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    with Memory(db) as m:
        found = {r["id"] for r in m.raw_events()}
        result = m.verify()
        after = m.record(AuditEventIn(kind="error", error="writer was killed"))  # the chain goes on
    print(f"\nkill: committed ids reported by the killed writer {len(committed)}, rows found {len(found)}, "
          f"missing {len(set(committed) - found)}, chain verifies: {result.ok} over {result.n} rows")
    assert set(committed) <= found
    assert result.ok and result.n == len(found) == max(found)
    assert after.id == max(found) + 1


def test_two_ask_processes_one_database_one_output_root(tmp_path: Path) -> None:
    """Two real `geodelta ask` processes at once, different scenes, same GEODELTA_DB and --out: both answer,
    the chain verifies, and every map file still has the hash its own run recorded (nothing overwritten)."""
    import hashlib
    import json

    from geodelta.settings import Settings

    data = Settings().data
    if not data.is_dir():
        import pytest

        pytest.skip(f"real data folder not found at {data}: set GEODELTA_DATA")
    demo = data / "demo"
    scenes = [
        (demo / "taizhou_before_2000-03-17_landsat7_etm.tif", demo / "taizhou_after_2003-02-06_landsat7_etm.tif"),
        (data / "levir_crops" / "A" / "test_2_0000_0000.png", data / "levir_crops" / "B" / "test_2_0000_0000.png"),
    ]
    gd = str(Path(sys.executable).parent / "geodelta")
    db, out = tmp_path / "shared.db", tmp_path / "out"
    env = {**os.environ, "GEODELTA_DB": str(db)}
    procs = [subprocess.Popen([gd, "ask", "where were buildings built?", "--before", str(b), "--after", str(a),
                               "--out", str(out), "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for b, a in scenes]
    answers = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=600)
        assert p.returncode == 0, stderr[-2000:]
        answers.append(json.loads(stdout))
    assert answers[0]["audit_id"] != answers[1]["audit_id"]
    maps = [set(a["maps"].values()) for a in answers]
    assert maps[0] and maps[1] and not (maps[0] & maps[1]), "the two runs wrote the same files"

    with Memory(db) as m:
        assert m.verify().ok
        for a in answers:
            recorded = {h for e in m.run_events(a["audit_id"]) for h in e.artefact_hashes}
            for path in a["maps"].values():
                digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
                assert digest in recorded, f"{path} changed after its run recorded it"
