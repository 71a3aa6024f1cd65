"""GeoDelta's prompts: one Markdown file per prompt (package data), filled by `load_prompt`."""

from __future__ import annotations

import string
from importlib import resources
from typing import Any


def load_prompt(name: str, **values: Any) -> str:
    """The prompt `prompts/<name>.md`, with `$placeholders` filled from `values` (string.Template: safe)."""
    text = resources.files("geodelta.prompts").joinpath(f"{name}.md").read_text(encoding="utf-8")
    return string.Template(text).safe_substitute({k: str(v) for k, v in values.items()}).strip()
