"""LangGraph threads on the memory file: a long-lived `SqliteSaver` over its own connection.

A thread keeps only what a restart needs: its latest checkpoint (the whole message list, or the
pending interrupt of a clarifying question) and that checkpoint's writes. `Assistant` runs the graph
with `durability="exit"` (one checkpoint per question, not one per step) and calls `prune_thread` after
each question, so the file grows by about one turn of messages per question instead of by every
intermediate step's full copy of the conversation (issue 15 item 10). The audit trail lives in other
tables and is never pruned.
"""

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
    conn.isolation_level = ""  # type: ignore[assignment]  # typeshed omits "", which sqlite3 accepts (deferred)
    saver = SqliteSaver(conn)
    saver.setup()
    return saver


def prune_thread(saver: SqliteSaver, thread_id: str) -> int:
    """Delete every checkpoint of `thread_id` but the latest per namespace, with their writes.

    The latest checkpoint is what `get_state` and a resumed or follow-up question read (SqliteSaver's
    own choice: the greatest checkpoint_id, ids being time-ordered uuid6); its pending writes (an
    interrupt waiting for `resume`) are kept. GeoDelta's state has no DeltaChannel, so no kept
    checkpoint depends on a deleted ancestor. Returns the number of checkpoints deleted.
    """
    tid = str(thread_id)
    latest = "SELECT ns.checkpoint_ns, MAX(c.checkpoint_id) FROM checkpoints c JOIN (SELECT DISTINCT checkpoint_ns FROM checkpoints WHERE thread_id = ?) ns USING (checkpoint_ns) WHERE c.thread_id = ? GROUP BY ns.checkpoint_ns"
    with saver.cursor() as cur:
        keep = cur.execute(latest, (tid, tid)).fetchall()
        deleted = 0
        for ns, cid in keep:
            cur.execute("DELETE FROM writes WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id <> ?", (tid, ns, cid))
            deleted += cur.execute("DELETE FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id <> ?",
                                   (tid, ns, cid)).rowcount
        # writes of a namespace with no checkpoint left (none expected; keeps the table bounded anyway)
        cur.execute("DELETE FROM writes WHERE thread_id = ? AND checkpoint_ns NOT IN "
                    "(SELECT checkpoint_ns FROM checkpoints WHERE thread_id = ?)", (tid, tid))
    return deleted
