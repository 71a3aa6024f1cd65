"""`Memory`: the one writer and reader of GeoDelta's SQLite file (images read, the audit trail).

One connection per `Memory`, guarded by a lock so threads can share it; every write is its own
`BEGIN IMMEDIATE` transaction, so writers in other processes queue on SQLite's lock (busy timeout
30 s) and the audit chain stays linear: read the last hash and append under the same lock.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlite_utils
from pydantic_core import to_jsonable_python

from geodelta.contracts import SceneRef, utcnow
from geodelta.errors import AuditError, InputError
from geodelta.memory.chain import canonical_json, row_hash, row_mac, verify_rows
from geodelta.memory.migrations import migrate, schema_version
from geodelta.memory.models import (
    GENESIS_HASH,
    AuditEvent,
    AuditEventIn,
    SceneRecord,
    VerifyResult,
)

BUSY_TIMEOUT_S = 30.0  # how long a writer waits for another process's transaction before failing


def default_db_path() -> Path:
    """Settings().db_path: GEODELTA_DB, default ~/.geodelta/geodelta.db."""
    from geodelta.settings import Settings

    return Settings().db_path


def connect(db_path: str | Path, *, timeout: float = BUSY_TIMEOUT_S) -> sqlite3.Connection:
    """Open the file (creating its folder) in autocommit mode with WAL, a busy timeout and foreign keys."""
    path = Path(db_path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=timeout, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
    _wal(conn, timeout)
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def _wal(conn: sqlite3.Connection, timeout: float) -> None:
    """Switch to WAL, retrying while another process holds the file: when two processes open a fresh file at
    once, SQLite can answer "database is locked" to the journal-mode change without calling the busy handler."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.25)


def _finite(value: Any) -> Any:
    """Strict JSON has no NaN/Infinity (SQLite's json functions reject them): write them as strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _fallback(value: Any) -> Any:
    """numpy scalars and small arrays become numbers and lists; anything else its str()."""
    tolist = getattr(value, "tolist", None)
    return tolist() if callable(tolist) else str(value)


def _json(value: Any) -> str | None:
    """Canonical JSON text of any JSON-able value (paths, datetimes, models and tuples converted)."""
    return None if value is None else canonical_json(_finite(to_jsonable_python(value, fallback=_fallback)))


def _load(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _text(value: str | None) -> str | None:
    """A string SQLite can store: lone surrogates (undecodable file names) become backslash escapes."""
    return None if value is None else value.encode("utf-8", "backslashreplace").decode("utf-8")


class Memory:
    """Memory and audit trail on one SQLite file; safe to share between threads and processes."""

    def __init__(self, db_path: str | Path | None = None, *, audit_key: str | bytes | None = None) -> None:
        """`audit_key` (GEODELTA_AUDIT_KEY): when given, every new audit row also gets an HMAC under it."""
        self.path = Path(db_path).expanduser() if db_path is not None else default_db_path()
        self._key = audit_key.encode() if isinstance(audit_key, str) else audit_key
        self._conn = connect(self.path)
        self._conn.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        self._db = sqlite_utils.Database(self._conn, execute_plugins=False)
        with self._lock:
            migrate(self._conn)

    # -- plumbing -------------------------------------------------------------------------------
    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Memory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        with self._lock:
            return schema_version(self._conn)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One `BEGIN IMMEDIATE` transaction under the thread lock; rolled back on any error."""
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as err:  # busy for longer than the busy timeout
                raise AuditError(
                    f"{self.path} stayed locked by another writer for {BUSY_TIMEOUT_S:.0f} s ({err}): "
                    "check for a stuck geodelta process, then retry"
                ) from err
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise

    def _rows(self, sql: str, params: tuple = ()) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self._conn.execute(sql, params).fetchall()]

    @staticmethod
    def new_run_id() -> str:
        """A short id for one question (the `audit_id` of its answer): 12 hex characters."""
        return uuid.uuid4().hex[:12]

    # -- audit ----------------------------------------------------------------------------------
    def record(self, event: AuditEventIn) -> AuditEvent:
        """Append one event to the hash chain and return it as stored."""
        row: dict[str, Any] = {
            "ts": utcnow().isoformat(),
            "run_id": _text(event.run_id),
            "thread_id": _text(event.thread_id),
            "actor": _text(event.actor),
            "kind": event.kind,
            "tool": _text(event.tool),
            "tool_schema_hash": _text(event.tool_schema_hash),
            "tool_call_id": _text(event.tool_call_id),
            "args": _json(event.args),
            "result": _json(event.result),
            "artefact_hashes": canonical_json(list(event.artefact_hashes)),
            "model": _text(event.model),
            "duration_ms": None if event.duration_ms is None else float(event.duration_ms),
            "error": _text(event.error),
        }
        with self._write() as conn:
            last = conn.execute("SELECT id, hash FROM audit_events ORDER BY id DESC LIMIT 1").fetchone()
            row["id"] = 1 if last is None else last["id"] + 1
            row["prev_hash"] = GENESIS_HASH if last is None else last["hash"]
            row["hash"] = row_hash(row)
            if self._key:
                row["mac"] = row_mac(self._key, row["hash"])
            cols = ", ".join(row)
            conn.execute(f"INSERT INTO audit_events ({cols}) VALUES ({', '.join('?' * len(row))})", tuple(row.values()))
        return _event(row)

    def run_events(self, audit_id: str) -> list[AuditEvent]:
        """All events of one question run, in order."""
        return [_event(r) for r in self._rows("SELECT * FROM audit_events WHERE run_id = ? ORDER BY id", (audit_id,))]

    def thread_events(self, thread_id: str) -> list[AuditEvent]:
        """All events of one conversation thread, in order."""
        return [_event(r) for r in self._rows("SELECT * FROM audit_events WHERE thread_id = ? ORDER BY id", (thread_id,))]

    def event(self, event_id: int) -> AuditEvent | None:
        rows = self._rows("SELECT * FROM audit_events WHERE id = ?", (event_id,))
        return _event(rows[0]) if rows else None

    def runs(self, thread_id: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """One summary per question run (newest last): audit id, thread, start, events, question text."""
        where, params = ("WHERE run_id IS NOT NULL AND thread_id = ?", (thread_id,)) if thread_id else ("WHERE run_id IS NOT NULL", ())
        sql = (
            "SELECT run_id, thread_id, MIN(id) AS first_id, MIN(ts) AS started, COUNT(*) AS events, "
            "SUM(kind = 'error') AS errors, "
            "MAX(CASE WHEN kind = 'question' THEN json_extract(args, '$.question') END) AS question, "
            "MAX(CASE WHEN kind = 'answer' THEN json_extract(result, '$.text') END) AS answer "
            f"FROM audit_events {where} GROUP BY run_id ORDER BY first_id DESC LIMIT ?"
        )
        return list(reversed(self._rows(sql, (*params, limit))))

    def count_events(self) -> int:
        return self._rows("SELECT COUNT(*) AS n FROM audit_events")[0]["n"]

    def raw_events(self) -> Iterator[dict[str, Any]]:
        """Stored rows exactly as hashed (JSON columns as text), in id order; one consistent snapshot."""
        with self._lock:
            rows = [dict(r) for r in self._conn.execute("SELECT * FROM audit_events ORDER BY id")]
        yield from rows

    def verify(self, *, expect_head: str | None = None) -> VerifyResult:
        """Walk the whole chain; names the first row that was edited, deleted around or inserted.

        With the audit key the HMACs are checked too; `expect_head` must be a row hash of the chain.
        """
        return verify_rows(self.raw_events(), key=self._key or None, expect_head=expect_head)

    def export_jsonl(self, path: str | Path) -> int:
        """Write every stored row as one canonical JSON line (re-verifiable offline); returns the count."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.partial")
        n = 0
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                for row in self.raw_events():
                    f.write(canonical_json(row) + "\n")
                    n += 1
            os.replace(tmp, path)  # a reader never sees a half-written export
        except OSError as exc:
            if tmp.parent.is_dir():
                tmp.unlink(missing_ok=True)
            raise InputError(f"cannot write the export {path}: {exc.strerror or exc}; choose a writable path") from None
        return n

    # -- images (the scenes table) ---------------------------------------------------------------
    def add_scene(self, ref: SceneRef) -> str:
        """Store an image (one date) once per content (its file's sha256 + grid); returns its stable id `img_...`.

        The table is `scenes` for compatibility; a scene of the workspace is a pair (`scn_...`, tools/workspace.py).
        Ids written before schema 4 keep their old `scn_` prefix."""
        key = canonical_json(ref.model_dump(mode="json", exclude={"paths"}))
        scene_id = "img_" + hashlib.sha256(key.encode()).hexdigest()[:16]
        row = {"id": scene_id, "paths": _json(ref.paths), "sha256": _json(ref.sha256), "crs": ref.crs,
               "bounds": _json(ref.bounds), "resolution": _json(ref.resolution), "width": ref.width,
               "height": ref.height, "dates": _json(ref.dates), "bands": _json(ref.bands),
               "created": utcnow().isoformat()}
        with self._write():
            self._db.table("scenes").insert(row, ignore=True)
            # the same content seen at a new location: remember where it is now
            self._conn.execute("UPDATE scenes SET paths = ? WHERE id = ?", (row["paths"], scene_id))
        return scene_id

    def get_scene(self, scene_id: str) -> SceneRecord | None:
        rows = self._rows("SELECT * FROM scenes WHERE id = ?", (scene_id,))
        return _scene(rows[0]) if rows else None

    def list_scenes(self) -> list[SceneRecord]:
        """All scenes, oldest first."""
        return [_scene(r) for r in self._rows("SELECT * FROM scenes ORDER BY created, id")]


# -- row -> model -------------------------------------------------------------------------------
def _event(r: dict[str, Any]) -> AuditEvent:
    return AuditEvent(
        id=r["id"], ts=datetime.fromisoformat(r["ts"]), prev_hash=r["prev_hash"], hash=r["hash"], kind=r["kind"],
        run_id=r["run_id"], thread_id=r["thread_id"], actor=r["actor"], tool=r["tool"],
        tool_schema_hash=r["tool_schema_hash"], tool_call_id=r.get("tool_call_id"), args=_load(r["args"]),
        result=_load(r["result"]), artefact_hashes=_load(r["artefact_hashes"]) or [], model=r["model"],
        duration_ms=r["duration_ms"], error=r["error"],
    )


def _scene(r: dict[str, Any]) -> SceneRecord:
    ref = SceneRef(paths=_load(r["paths"]), sha256=_load(r["sha256"]), crs=r["crs"], bounds=_load(r["bounds"]),
                   resolution=_load(r["resolution"]), width=r["width"], height=r["height"],
                   dates=_load(r["dates"]) or [], bands=_load(r["bands"]) or [])
    return SceneRecord(id=r["id"], created=datetime.fromisoformat(r["created"]), ref=ref)
