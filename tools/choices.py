"""Argument types whose choices come from a registry (change maskers, refiners), so the tool schemas the model
sees list exactly what is registered instead of a hand-kept `Literal` that drifts from the registry."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from pydantic import AfterValidator, WithJsonSchema


def registry_choice(names: Callable[[], list[str]], kind: str, extra: tuple[str, ...] = ()) -> Any:
    """`str` validated against `names()` (plus `extra`, e.g. "auto") when a call arrives; the JSON schema's
    enum is the registry at schema time. A wrong name is rejected with the choices listed."""

    def check(value: str) -> str:
        allowed = [*extra, *names()]
        if value not in allowed:
            raise ValueError(f"unknown {kind} {value!r}: choose one of {', '.join(allowed)}")
        return value

    return Annotated[str, AfterValidator(check), WithJsonSchema({"type": "string", "enum": [*extra, *names()]})]
