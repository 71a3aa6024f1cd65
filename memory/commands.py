"""CLI over `Memory`: `geodelta audit show|verify|export`, `geodelta scenes`, `geodelta history THREAD`.

A thin layer: every command calls the same `Memory` methods the Python API exposes. Tables go to
stdout with rich; `--json` prints only JSON; errors go to stderr with a non-zero exit code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from geodelta.errors import AuditError, GeoDeltaError, InputError
from geodelta.memory.models import AuditEvent
from geodelta.memory.store import Memory, default_db_path

audit_app = typer.Typer(help="The tamper-evident audit trail: show events, verify the hash chain, export.",
                        no_args_is_help=True)

DbOption = Annotated[Path | None, typer.Option("--db", help="SQLite file (default: GEODELTA_DB or ~/.geodelta/geodelta.db).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print only JSON.")]


def _open(db: Path | None) -> Memory:
    """Open an existing memory file; a missing one is an error (reading must not create files)."""
    path = (db.expanduser() if db is not None else default_db_path())
    if not path.is_file():
        raise InputError(f"no GeoDelta database at {path}: pass --db PATH or set GEODELTA_DB")
    return Memory(path, audit_key=_audit_key())


def _audit_key() -> str | None:
    """GEODELTA_AUDIT_KEY (or the config file's audit_key): HMACs are written and checked with it."""
    from geodelta.settings import Settings

    key = Settings().audit_key
    return key.get_secret_value() if key else None


def _fail(err: GeoDeltaError) -> typer.Exit:
    Console(stderr=True).print(f"[red]error:[/red] {err}", highlight=False)
    return typer.Exit(code=err.exit_code)


def _short(value: Any, width: int = 60) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= width else text[: width - 1] + "…"


def _print_json(value: Any) -> None:
    typer.echo(json.dumps(value, ensure_ascii=False, indent=2, default=str))


def _events_table(events: list[AuditEvent], title: str) -> Table:
    table = Table(title=title)
    for col in ("id", "time (UTC)", "kind", "actor", "tool", "args / result", "ms", "hash"):
        table.add_column(col, overflow="fold")
    for e in events:
        detail = e.error or _short(e.result if e.kind in ("tool_result", "answer", "clarification") else e.args)
        table.add_row(str(e.id), e.ts.strftime("%Y-%m-%d %H:%M:%S"), e.kind, e.actor, e.tool or e.model or "",
                      detail, "" if e.duration_ms is None else f"{e.duration_ms:.0f}", e.hash[:12])
    return table


@audit_app.command("show")
def show(
    audit_id: Annotated[str | None, typer.Argument(help="Audit id of one question (Answer.audit_id).")] = None,
    thread: Annotated[str | None, typer.Option("--thread", help="Show every event of this thread.")] = None,
    json_: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Events of one question (AUDIT_ID) or one thread; with neither, a list of recent questions."""
    try:
        mem = _open(db)
        if audit_id is None and thread is None:
            runs = mem.runs()
            if json_:
                _print_json(runs)
                return
            table = Table(title=f"Recent questions in {mem.path}")
            for col in ("audit id", "thread", "started (UTC)", "events", "errors", "question"):
                table.add_column(col, overflow="fold")
            for r in runs:
                table.add_row(r["run_id"], r["thread_id"] or "", r["started"][:19], str(r["events"]), str(r["errors"]),
                              _short(r["question"]))
            Console().print(table)
            return
        events = mem.run_events(audit_id) if audit_id is not None else mem.thread_events(thread or "")
        if audit_id is not None and thread is not None:
            events = [e for e in events if e.thread_id == thread]
        if not events:
            what = f"audit id {audit_id}" if audit_id is not None else f"thread {thread}"
            raise AuditError(f"no audit events for {what} in {mem.path}: list them with `geodelta audit show`")
        if json_:
            _print_json([e.model_dump(mode="json") for e in events])
        else:
            Console().print(_events_table(events, f"audit {audit_id}" if audit_id else f"thread {thread}"))
    except GeoDeltaError as err:
        raise _fail(err) from None


@audit_app.command("verify")
def verify(
    json_: JsonOption = False,
    db: DbOption = None,
    expect_head: Annotated[str | None, typer.Option("--expect-head", help="A head hash kept from an earlier verify: "
                                                   "fails when the trail no longer contains it (truncated).")] = None,
) -> None:
    """Walk the hash chain (and HMACs with GEODELTA_AUDIT_KEY); exit 0 when every row checks, 1 naming the first bad row."""
    try:
        result = _open(db).verify(expect_head=expect_head)
    except GeoDeltaError as err:
        raise _fail(err) from None
    if json_:
        _print_json(result.model_dump(mode="json"))
    elif result.ok:
        keyed = f", {result.keyed} HMACs check" if result.keyed else ""
        typer.echo(f"OK: {result.n} events, chain verifies{keyed}" + (f" (head {result.head_hash})" if result.head_hash else ""))
    else:
        if result.first_bad_id is not None:
            typer.echo(f"FAIL: row {result.first_bad_id}: {result.reason} ({result.n} rows before it verify)")
        else:
            typer.echo(f"FAIL: {result.reason} (the {result.n} rows themselves verify)")
    if not result.ok:
        raise typer.Exit(code=AuditError.exit_code)


@audit_app.command("export")
def export(
    jsonl: Annotated[Path, typer.Option("--jsonl", help="Write every stored row as one JSON line to this file.")],
    db: DbOption = None,
) -> None:
    """Export the trail exactly as stored (hashes included) so it can be re-verified elsewhere."""
    try:
        n = _open(db).export_jsonl(jsonl)
    except GeoDeltaError as err:
        raise _fail(err) from None
    typer.echo(f"wrote {n} events to {jsonl}")


def scenes_command(json_: JsonOption = False, db: DbOption = None) -> None:
    """Images GeoDelta has read (one row per file content), with their grid, dates and bands."""
    try:
        mem = _open(db)
        scenes = mem.list_scenes()
    except GeoDeltaError as err:
        raise _fail(err) from None
    if json_:
        _print_json([s.model_dump(mode="json") for s in scenes])
        return
    table = Table(title=f"Images read, in {mem.path}")
    for col in ("image id", "files", "dates", "crs", "size (px)", "resolution", "bands", "created (UTC)"):
        table.add_column(col, overflow="fold")
    for s in scenes:
        r = s.ref
        table.add_row(s.id, "\n".join(Path(p).name for p in r.paths), ", ".join(d or "?" for d in r.dates), r.crs or "",
                      f"{r.width}x{r.height}", "" if r.resolution is None else f"{r.resolution[0]:g} x {r.resolution[1]:g}",
                      ",".join(r.bands), s.created.strftime("%Y-%m-%d %H:%M:%S"))
    Console().print(table)


def history_command(
    thread: Annotated[str, typer.Argument(help="Conversation thread id.")],
    json_: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Questions and answers of one conversation thread, with their audit ids."""
    try:
        mem = _open(db)
        runs = mem.runs(thread_id=thread, limit=10_000)
        if not runs:
            raise AuditError(f"no history for thread {thread} in {mem.path}: list questions with `geodelta audit show`")
    except GeoDeltaError as err:
        raise _fail(err) from None
    if json_:
        _print_json(runs)
        return
    table = Table(title=f"Thread {thread}")
    for col in ("audit id", "asked (UTC)", "question", "answer", "events", "errors"):
        table.add_column(col, overflow="fold")
    for r in runs:
        table.add_row(r["run_id"], r["started"][:19], _short(r["question"]), _short(r["answer"], 80), str(r["events"]),
                      str(r["errors"]))
    Console().print(table)
