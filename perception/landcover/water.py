"""Land cover where the bands allow only a water index (green + SWIR or NIR, no red): water vs other.

Used for composites such as OMBRIA's B11/B8/B3 once their roles are declared (`--bands swir1,nir,green`):
without red there is no NDVI, so vegetation, soil and built-up are not told apart ("other"). The water
index and its bounded-Otsu threshold are those of the `water` change masker (perception/change/water.py).
"""

from __future__ import annotations

import numpy as np

from geodelta.errors import InputError
from geodelta.perception.change.water import _index, water_index_bands
from geodelta.perception.landcover import rules as lc


def _water_bands(roles: dict[str, int]) -> tuple[str, int, int]:
    bands = water_index_bands(roles)
    if bands is None:
        raise InputError("water land cover needs a green band and a NIR or SWIR1 band: declare them, e.g. --bands red,green,blue,nir")
    return bands


def fit(a: np.ndarray, roles: dict[str, int]) -> dict[str, float]:
    """{index name: threshold} from a (B, N) sample."""
    kind, g, o = _water_bands(roles)
    default, (lo, hi) = (lc.T_MNDWI, lc.MNDWI_RANGE) if kind == "mndwi" else (lc.T_NDWI, lc.NDWI_RANGE)
    return {kind: float(lc._bounded_otsu(_index(a, g, o), default, lo, hi))}


def classify(x: np.ndarray, roles: dict[str, int], thresholds: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """(classes uint8 (h, w): water or other, confidence float32) of one window x (B, h, w)."""
    kind, g, o = _water_bands(roles)
    wi = _index(x, g, o)
    t = float(thresholds.get(kind, lc.T_MNDWI if kind == "mndwi" else lc.T_NDWI))
    cls = np.where(wi > t, lc.CODE["water"], lc.CODE["other"]).astype(np.uint8)
    return cls, lc._conf(wi, t, 0.1)
