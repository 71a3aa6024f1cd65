"""Chat-model backends by name: `get_chat_model(name, settings)`, `list_backends()`, `register_backend(name)`.

A backend is a factory `settings -> BaseChatModel` (with `bind_tools`). Factories may be registered
as "module:function" strings, imported only when asked for, so importing this registry never
imports langchain_openai or transformers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from geodelta.errors import ConfigError, MissingDependencyError
from geodelta.registry import resolve

Factory = Callable[[Any], Any]

_BACKENDS: dict[str, Factory | str] = {
    "embedded": "geodelta.agent.models.embedded:make_embedded_model",
    "openai": "geodelta.agent.models.openai:make_openai_model",
    "local": "geodelta.agent.models.local:make_local_model",
}


def register_backend(name: str, factory: Factory | str | None = None):
    """Register `factory` (a callable or a lazy "module:function" string) under `name`.

    Usable directly, `register_backend("x", "pkg.mod:make")`, or as a decorator, `@register_backend("x")`.
    """
    if factory is not None:
        _BACKENDS[name] = factory
        return factory

    def deco(fn: Factory) -> Factory:
        _BACKENDS[name] = fn
        return fn

    return deco


def list_backends() -> list[str]:
    return sorted(_BACKENDS)


def _resolve(name: str) -> Factory:
    try:
        return resolve(_BACKENDS, name)
    except ImportError as exc:
        raise MissingDependencyError(f"the '{name}' model backend is not installed ({exc}); install its extra "
                                     "or use --backend embedded") from exc


def get_chat_model(name: str, settings: Any = None):
    """The chat model of backend `name` built from `settings` (a `geodelta.settings.Settings`)."""
    if name not in _BACKENDS:
        raise ConfigError(f"unknown model backend '{name}'; choose one of: {', '.join(list_backends())}")
    if settings is None:
        from geodelta.settings import Settings

        settings = Settings()
    return _resolve(name)(settings)
