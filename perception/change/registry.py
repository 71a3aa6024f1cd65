"""The change-masker registry: names -> classes, with lazy "module:Class" entries (nothing heavy on import).

A masker is fitted once on a pixel sample of the whole pair (`fit`, JSON-able params) and then scores any window
with those params (`score`), so tiles are independent after the fit (maskers.py has CVA and the mask clean-up).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from geodelta.errors import InputError
from geodelta.registry import resolve


@runtime_checkable
class ChangeMasker(Protocol):
    """fit on a sample of both dates, then score windows; see module docstring."""

    name: str

    def fit(self, a: np.ndarray, b: np.ndarray) -> dict:
        """a, b: float32 (B, N) sample of valid pixels of the two dates. Returns JSON-able params."""
        ...

    def score(self, a: np.ndarray, b: np.ndarray, valid: np.ndarray, params: dict) -> np.ndarray:
        """a, b: float32 (B, h, w) one window; valid bool (h, w). float32 (h, w) change score in
        [0, 1], >= 0.5 means change (the automatic threshold); 0 where not valid."""
        ...


# Built-in maskers by name, as lazy "module:Class" entries imported on first use, so this registry imports
# no masker module (they import it to register themselves: no import cycle) and listing names costs nothing.
MASKERS: dict[str, type | str] = {
    "cva": "geodelta.perception.change.maskers:CVA",
    "irmad": "geodelta.perception.change.irmad:IRMAD",
    "water": "geodelta.perception.change.water:WaterMasker",
    "learned": "geodelta.perception.learned.siamese:LearnedMasker",
    "buildings": "geodelta.perception.learned.siamese:BuildingMasker",
    "auto": "geodelta.perception.change.auto:AutoMasker",
}


def register_masker(cls: type[Any]) -> type[Any]:
    """Class decorator: add a masker class to `MASKERS` under its `name`."""
    MASKERS[cls.name] = cls
    return cls


def list_maskers() -> list[str]:
    return sorted(MASKERS)


def masker_class(name: str) -> type:
    """The masker class registered as `name` (importing its module on first use); InputError if unknown."""
    try:
        return resolve(MASKERS, name)
    except KeyError:
        raise InputError(f"unknown change method {name!r}: choose one of {', '.join(list_maskers())}") from None


def get_masker(name: str, **options: Any) -> ChangeMasker:
    """A masker instance by registry name; unknown names raise InputError listing the choices."""
    return masker_class(name)(**options)
