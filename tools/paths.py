"""Path policy for tools: a model may only name files the user named, or files under the output folder."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from geodelta.errors import ToolInputError


def check_path(path: str | Path, allowed: Sequence[str | Path]) -> Path:
    """Resolve `path` and accept it only when it is an allowed file/folder or lies inside an allowed folder.

    Relative paths and `..` are resolved first, so `../../etc/passwd` cannot slip past a prefix test.
    """
    text = str(path)
    if "\x00" in text:
        raise ToolInputError("path contains a NUL byte")
    resolved = Path(text).expanduser().resolve()
    for root in allowed:
        r = Path(root).expanduser().resolve()
        if resolved == r or (r.is_dir() and resolved.is_relative_to(r)):
            return resolved
    raise ToolInputError(
        f"path {text!r} is outside the allowed roots (the images the user named and the output folder); "
        "ask the user to name the file explicitly"
    )
