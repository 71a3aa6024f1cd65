"""The one file hash of GeoDelta: streamed sha256, for inputs, weights, artefacts and the audit trail."""

from __future__ import annotations

import hashlib
from pathlib import Path

from geodelta.errors import InputError

_CHUNK = 1 << 20  # 1 MiB reads: hashing never loads a file whole


def file_sha256(path: str | Path) -> str:
    """sha256 hex of a file's bytes; an unreadable file is an InputError naming it."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(_CHUNK), b""):
                h.update(chunk)
    except OSError as e:
        raise InputError(f"cannot read {path} ({e.strerror}): check that the file exists and is readable") from None
    return h.hexdigest()
