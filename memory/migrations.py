"""Numbered, append-only schema migrations for the memory tables (never edit a shipped one; add one).

Each migration runs inside one `BEGIN IMMEDIATE` transaction together with its bookkeeping row in
`schema_migrations`, so a crash leaves the file at the old version or the new one, never between,
and two processes opening a fresh file at once apply each migration exactly once.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

import sqlite_utils

from geodelta.contracts import utcnow
from geodelta.errors import ConfigError


def _v1_tables(db: sqlite_utils.Database) -> None:
    """Scenes, analyses, regions, artefacts and the audit hash chain (STRICT tables: no type drift)."""
    db.table("scenes").create(
        {"id": str, "paths": str, "sha256": str, "crs": str, "bounds": str, "resolution": str, "width": int,
         "height": int, "dates": str, "bands": str, "created": str},
        pk="id", not_null=["paths", "sha256", "created"], strict=True,
    )
    db.table("analyses").create(
        {"id": str, "scene_id": str, "thread_id": str, "run_id": str, "method": str, "params": str,
         "timings": str, "out_dir": str, "created": str},
        pk="id", not_null=["method", "created"], foreign_keys=[("scene_id", "scenes", "id")], strict=True,
    )
    db.table("regions").create(
        {"analysis_id": str, "region_id": int, "sector": str, "area_m2": float, "area_px": int,
         "from_class": str, "to_class": str, "how": str, "confidence": float, "class_confidence": float,
         "refined_by": str, "first_interval": int, "bbox_px": str, "centroid_px": str,
         "centroid_lonlat": str, "polygon": str},
        pk=("analysis_id", "region_id"), foreign_keys=[("analysis_id", "analyses", "id")], strict=True,
    )
    db.table("artefacts").create(
        {"id": int, "analysis_id": str, "path": str, "kind": str, "sha256": str, "bytes": int, "created": str},
        pk="id", not_null=["analysis_id", "path", "kind", "sha256", "created"],
        foreign_keys=[("analysis_id", "analyses", "id")], strict=True,
    )
    db.table("audit_events").create(
        {"id": int, "ts": str, "run_id": str, "thread_id": str, "actor": str, "kind": str, "tool": str,
         "tool_schema_hash": str, "args": str, "result": str, "artefact_hashes": str, "model": str,
         "duration_ms": float, "error": str, "prev_hash": str, "hash": str},
        pk="id", not_null=["ts", "actor", "kind", "prev_hash", "hash"], strict=True,
    )


def _v2_append_only(db: sqlite_utils.Database) -> None:
    """Audit rows can no longer be updated or deleted; tool_call_id links answers to events; indexes."""
    db.table("audit_events").add_column("tool_call_id", str)
    for verb in ("UPDATE", "DELETE"):
        db.execute(
            f"CREATE TRIGGER audit_events_no_{verb.lower()} BEFORE {verb} ON audit_events "
            f"BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END"
        )
    db.table("audit_events").create_index(["run_id"])
    db.table("audit_events").create_index(["thread_id"])
    db.table("analyses").create_index(["thread_id"])
    db.table("artefacts").create_index(["analysis_id"])


def _v3_audit_mac(db: sqlite_utils.Database) -> None:
    """An optional HMAC-SHA256 per audit row (GEODELTA_AUDIT_KEY): rewriting the chain needs the key."""
    db.table("audit_events").add_column("mac", str)


def _v4_drop_unused_tables(db: sqlite_utils.Database) -> None:
    """Drop analyses, regions and artefacts: production never wrote them (issue 13). An analysis lives in its
    output folder (analysis.json, and regions.gpkg: itself a SQLite file, queryable with SQL, with a spatial
    index); the sha256 of every file a tool wrote is in the audit trail. Children first (foreign keys)."""
    for table in ("artefacts", "regions", "analyses"):
        db.execute(f"DROP TABLE IF EXISTS {table}")


# (version, name, function). Append only.
MIGRATIONS: list[tuple[int, str, Callable[[sqlite_utils.Database], None]]] = [
    (1, "memory tables and audit chain", _v1_tables),
    (2, "append-only audit triggers, tool_call_id, indexes", _v2_append_only),
    (3, "optional keyed HMAC per audit row", _v3_audit_mac),
    (4, "drop the analyses, regions and artefacts tables (never written)", _v4_drop_unused_tables),
]
LATEST = MIGRATIONS[-1][0]

_BOOKKEEPING = (
    "CREATE TABLE IF NOT EXISTS schema_migrations "
    "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
)


def schema_version(conn: sqlite3.Connection) -> int:
    """Highest applied migration number (0 for a file without our tables)."""
    has = conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='schema_migrations'").fetchone()
    if not has:
        return 0
    return conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()[0]


def migrate(conn: sqlite3.Connection, target: int = LATEST) -> int:
    """Apply the missing migrations up to `target`, one transaction each; returns the new version.

    `conn` must be in autocommit mode (`isolation_level=None`) so the explicit transactions hold.
    """
    current = schema_version(conn)
    if current > LATEST:
        raise ConfigError(
            f"the database schema is version {current}, newer than this GeoDelta ({LATEST}): upgrade geodelta "
            "or point GEODELTA_DB at another file"
        )
    if current >= target:
        return current
    db = sqlite_utils.Database(conn, execute_plugins=False)
    for version, name, apply in MIGRATIONS:
        if version > target:
            break
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(_BOOKKEEPING)
            if schema_version(conn) >= version:  # another process applied it while we waited
                conn.execute("COMMIT")
                continue
            apply(db)
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (version, name, utcnow().isoformat()),
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    return schema_version(conn)
