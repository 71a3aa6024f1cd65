"""LangGraph threads on the memory file: a long-lived `SqliteSaver` over its own connection."""

from __future__ import annotations

from pathlib import Path

from langgraph.checkpoint.sqlite import SqliteSaver

from geodelta.memory.store import connect


def open_checkpointer(db_path: str | Path | None = None) -> SqliteSaver:
    """`SqliteSaver` on the same SQLite file as memory (WAL, 30 s busy timeout), tables set up.

    Opens the connection itself (`check_same_thread=False`; the saver serialises use with its own
    lock) because `SqliteSaver.from_conn_string` is a context manager that closes it on exit.
    Close with `saver.conn.close()` when done.
    """
    if db_path is None:
        from geodelta.memory.store import default_db_path

        db_path = default_db_path()
    conn = connect(db_path)
    # SqliteSaver commits its own transactions: give it the default (deferred) transaction handling.
    conn.isolation_level = ""
    saver = SqliteSaver(conn)
    saver.setup()
    return saver
