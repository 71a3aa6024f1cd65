"""Hand freed heap memory back to the operating system between the stages of a large detection.

Polygonising builds and drops millions of small objects; glibc keeps the freed pages in its heap, so the
process's RSS stayed at twice what it used (20000 px NAIP mosaic, 282,601 regions: 1.77 GB resident after
polygonising, 0.91 GB after malloc_trim). Elsewhere (macOS, musl, Windows) this is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


def trim() -> bool:
    """glibc's malloc_trim(0): return the free pages at the top and inside the heap; False where unavailable."""
    libc = _libc()
    return bool(libc.malloc_trim(0)) if libc is not None else False
