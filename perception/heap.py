"""Hand freed heap memory back to the operating system between the stages of a large detection.

Polygonising builds and drops millions of objects; glibc keeps freed pages in its heap, so RSS stays above
what the process uses. Measured on the 20000 px NAIP mosaic (282,601 regions): peak RSS of `geodelta detect`
2.40 GB without the trims after each polygonised window and each chunk of regions, 1.91-1.94 GB with them.
Elsewhere (macOS, musl, Windows) this is a no-op.
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
