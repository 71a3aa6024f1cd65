"""A per-pair cache of values read once (thumbnails, the fitting sample), shared by the stages of one analysis."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np


class ReadOnceCache:
    """Arrays by key, each read once (thumbnails, the fitting sample): a second caller waits for the read in
    progress. Travels empty (pickle)."""

    def __init__(self) -> None:
        self._items: dict = {}
        self._lock = threading.Lock()

    def get(self, key: tuple, read: Callable[[], np.ndarray]) -> np.ndarray:
        """A copy of the array under `key` (callers may draw on theirs), read first if it is not here."""
        with self._lock:
            if key not in self._items:
                self._items[key] = read()
            return self._items[key].copy()

    def get_shared(self, key: tuple, read: Callable[[], Any]) -> Any:
        """The value under `key` itself, not a copy: for read-only arrays (numpy then refuses writes to them)."""
        with self._lock:
            if key not in self._items:
                self._items[key] = read()
            return self._items[key]

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self.__init__()  # type: ignore[misc]
