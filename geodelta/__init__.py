"""GeoDelta: grounded answers to vague questions about how the land changed.

Public API (lazy, so `import geodelta` stays cheap): `Assistant`, `Answer`, `ChangeQuery`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Assistant", "Answer", "ChangeQuery", "__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from geodelta.agent.api import Assistant
    from geodelta.contracts import Answer, ChangeQuery


def __getattr__(name: str) -> Any:
    if name == "Assistant":
        from geodelta.agent.api import Assistant

        return Assistant
    if name in ("Answer", "ChangeQuery"):
        from geodelta import contracts

        return getattr(contracts, name)
    raise AttributeError(f"module 'geodelta' has no attribute {name!r}")
