"""GeoDelta memory: the images read, conversation checkpoints and a hash-chained audit trail in one SQLite file.

`Memory(db_path).record(AuditEventIn(...))` is the single audit writer; `open_checkpointer(db_path)`
gives LangGraph's `SqliteSaver` on the same file. Imports are lazy so `import geodelta.memory` stays
cheap (LangGraph is loaded only for the checkpointer).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "Memory", "AuditEventIn", "AuditEvent", "VerifyResult", "SceneRecord",
    "EVENT_KINDS", "open_checkpointer",
]

_WHERE = {
    "Memory": "geodelta.memory.store",
    "open_checkpointer": "geodelta.memory.checkpoint",
    **{name: "geodelta.memory.models" for name in
       ("AuditEventIn", "AuditEvent", "VerifyResult", "SceneRecord", "EVENT_KINDS")},
}

if TYPE_CHECKING:
    from geodelta.memory.checkpoint import open_checkpointer
    from geodelta.memory.models import EVENT_KINDS, AuditEvent, AuditEventIn, SceneRecord, VerifyResult
    from geodelta.memory.store import Memory


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'geodelta.memory' has no attribute {name!r}")
