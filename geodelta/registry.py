"""Registries of swappable parts (change maskers, refiners, chat-model backends) map a name to an object or to a
lazy "module:object" string imported on first use: listing the names imports nothing heavy (no torch, no
langchain_openai), and a registered module may itself import its registry without an import cycle."""

from __future__ import annotations

import importlib
from typing import Any


def resolve(entries: dict[str, Any], name: str) -> Any:
    """`entries[name]`, importing it first when it is a "module:object" string (and keeping what was imported).
    KeyError for an unknown name (callers turn it into an error listing the choices); ImportError as raised."""
    entry = entries[name]
    if isinstance(entry, str):
        module, _, attr = entry.partition(":")
        entry = entries[name] = getattr(importlib.import_module(module), attr)
    return entry
