"""SQLite growth per question (issue 15 item 10): one checkpoint per thread, the answer not checkpointed,
the audit trail never pruned, and threads still resume after a restart."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from geodelta.agent.api import Assistant
from geodelta.memory import Memory
from geodelta.settings import Settings

QUESTIONS = ["Where did farmland get built over?", "and how much of that is in the north?", "where did new water appear?",
             "did any trees disappear?"]


def _size(db: Path) -> int:
    c = sqlite3.connect(db)
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    c.close()
    return os.path.getsize(db)


def test_growth_per_question_is_bounded_and_the_audit_is_kept(tmp_path: Path, demo_pair) -> None:
    s = Settings(db=tmp_path / "g.db", out=tmp_path / "out")
    a = Assistant(s)
    before, after = demo_pair
    a.ask(QUESTIONS[0], before=before, after=after)  # the schema, the scene and the first detection
    s0, n = _size(s.db_path), 0
    threads: list[str | None] = [None, None]
    for q in QUESTIONS[:3]:
        for k, tid in enumerate(threads):
            ans = a.ask(q, before=before, after=after) if tid is None else a.ask(q, thread_id=tid)
            assert ans.clarification is None and ans.text
            threads[k] = ans.thread_id
            n += 1
    kb = (_size(s.db_path) - s0) / n / 1024
    print(f"SQLite growth: {kb:.1f} KB per question over {n} questions in {len(threads)} threads")
    assert kb < 50, f"{kb:.0f} KB per question"
    con = sqlite3.connect(s.db_path)
    per_thread = dict(con.execute("SELECT thread_id, COUNT(*) FROM checkpoints GROUP BY thread_id").fetchall())
    assert all(per_thread[t] == 1 for t in threads), per_thread
    # the audit trail is never pruned: every question of every thread is still there, chain intact
    questions = con.execute("SELECT COUNT(*) FROM audit_events WHERE kind = 'question'").fetchone()[0]
    assert questions == n + 1
    con.close()
    assert Memory(s.db_path).verify().ok
    # the thread still has its whole conversation
    hist = a.history(threads[0])
    assert sum(1 for m in hist if m["role"] == "human") == 3
    a.close()


def test_a_clarifying_question_resumes_in_a_new_process(tmp_path: Path, demo_pair) -> None:
    s = Settings(db=tmp_path / "g.db", out=tmp_path / "out")
    a = Assistant(s)
    ans = a.ask("did the town grow?")
    assert ans.clarification
    a.close()
    con = sqlite3.connect(s.db_path)
    assert con.execute("SELECT COUNT(*) FROM checkpoints WHERE thread_id = ?", (ans.thread_id,)).fetchone()[0] == 1
    assert con.execute("SELECT COUNT(*) FROM writes WHERE thread_id = ?", (ans.thread_id,)).fetchone()[0] >= 1  # the interrupt
    con.close()
    before, after = demo_pair
    code = ("import sys; from geodelta.agent.api import Assistant; from geodelta.settings import Settings;"
            f"a=Assistant(Settings(db={str(s.db_path)!r}, out={str(s.out)!r}));"
            f"r=a.resume({ans.thread_id!r}, 'here they are', before={str(before)!r}, after={str(after)!r});"
            "print(r.model_dump_json())")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode == 0, res.stderr
    resumed = json.loads(res.stdout.strip().splitlines()[-1])
    assert resumed["clarification"] is None and resumed["maps"] and resumed["thread_id"] == ans.thread_id
