"""Region from/to classes: each change region's majority class at both dates, and how it changed.

Also maps CORINE Land Cover grid codes onto our vocabulary, so real CLC class rasters can check the
describer (corine_ch/SOURCE.md).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from geodelta.perception.landcover import CLASSES, CODE, NODATA

# Classes whose arrival is an "appearance" (an object-like cover that was not there before).
_OBJECT_LIKE = frozenset({"built_up", "water", "tree"})


def how_of(from_class: str, to_class: str) -> str:
    """from == to -> 'changed' (same class, different look); to in {built_up, water, tree} and from
    not -> 'appeared'; from in those and to not -> 'disappeared'; otherwise 'converted'."""
    if from_class == to_class or "unknown" in (from_class, to_class):
        return "changed"
    if to_class in _OBJECT_LIKE and from_class not in _OBJECT_LIKE:
        return "appeared"
    if from_class in _OBJECT_LIKE and to_class not in _OBJECT_LIKE:
        return "disappeared"
    return "converted"


def _majority(labels: np.ndarray, classes: np.ndarray, n_regions: int) -> tuple[np.ndarray, np.ndarray]:
    """Per region id 0..n_regions: majority class code (NODATA when the region has no valid pixel)
    and its pixel count; vectorised with one bincount over (region, class) pairs."""
    k = len(CLASSES)
    ok = classes != NODATA
    pairs = labels[ok].astype(np.int64) * k + classes[ok].astype(np.int64)
    counts = np.bincount(pairs, minlength=(n_regions + 1) * k).reshape(n_regions + 1, k)
    major = counts.argmax(axis=1).astype(np.uint8)  # ties -> lowest code, deterministic
    major[counts.sum(axis=1) == 0] = NODATA
    return major, counts.max(axis=1)


def region_transitions(
    labels: np.ndarray,
    from_cls: np.ndarray,
    to_cls: np.ndarray,
    from_conf: np.ndarray | None = None,
    to_conf: np.ndarray | None = None,
) -> dict[int, tuple[str, str, str, float]]:
    """labels int (h, w): region id per pixel (0 = background); from_cls / to_cls uint8 class codes
    (255 nodata); confidences float (h, w) in [0, 1] (None -> 1). For each region id > 0:
    (majority from class, majority to class, how_of(...), confidence), where confidence is the mean
    of the two dates' mean pixel confidences times the share of pixels that agree with both
    majorities. A class with no valid pixel in the region reads 'other' with confidence 0.
    """
    labels = np.asarray(labels)
    if labels.shape != from_cls.shape or labels.shape != to_cls.shape:
        raise ValueError(f"labels {labels.shape}, from {from_cls.shape} and to {to_cls.shape} must share a shape")
    n = int(labels.max()) if labels.size else 0
    if n <= 0:
        return {}
    lab = labels.astype(np.int64)
    f_major, _ = _majority(lab, from_cls, n)
    t_major, _ = _majority(lab, to_cls, n)
    ids = np.arange(1, n + 1)
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    fc = np.ones(lab.shape, np.float32) if from_conf is None else np.asarray(from_conf, np.float32)
    tc = np.ones(lab.shape, np.float32) if to_conf is None else np.asarray(to_conf, np.float32)
    mean_conf = (np.asarray(ndimage.mean(fc, lab, ids)) + np.asarray(ndimage.mean(tc, lab, ids))) / 2.0
    # agreement: pixels whose from and to classes both equal the region's majorities
    agree = (from_cls == f_major[lab]) & (to_cls == t_major[lab]) & (lab > 0)
    agree_share = np.bincount(lab[agree], minlength=n + 1)[1:] / np.maximum(sizes[1:], 1)
    out: dict[int, tuple[str, str, str, float]] = {}
    for i in ids[sizes[1:] > 0]:
        f, t = int(f_major[i]), int(t_major[i])
        fname = CLASSES[f] if f != NODATA else "other"
        tname = CLASSES[t] if t != NODATA else "other"
        conf = 0.0 if NODATA in (f, t) else float(mean_conf[i - 1] * agree_share[i - 1])
        out[int(i)] = (fname, tname, how_of(fname, tname), round(conf, 4))
    return out


# CORINE grid code (1..44, EEA raster convention; corine_ch/clc_legend.csv) -> our class name.
# Decisions: 7 mineral extraction, 8 dump sites and 9 construction sites are artificial in CLC but
# their surface is bare -> bare_ground; 10 green urban areas and 11 sport/leisure -> built_up (urban
# fabric by land use, as CLC level 1 does). 15-17 permanent crops and 19-22 heterogeneous
# agriculture -> cropland; 18 pastures and 26-28 grass/heath/sclerophyll -> low_vegetation;
# 23-25 forests and 29 transitional woodland-shrub -> tree; 30-33 beaches, rocks, sparse
# vegetation, burnt -> bare_ground; 34 glaciers/snow and 35-39 wetlands -> other; 40-44 -> water.
_CLC_GROUPS: dict[str, tuple[int, ...]] = {
    "built_up": (1, 2, 3, 4, 5, 6, 10, 11),
    "bare_ground": (7, 8, 9, 30, 31, 32, 33),
    "cropland": (12, 13, 14, 15, 16, 17, 19, 20, 21, 22),
    "low_vegetation": (18, 26, 27, 28),
    "tree": (23, 24, 25, 29),
    "other": (34, 35, 36, 37, 38, 39),
    "water": (40, 41, 42, 43, 44),
}
_CLC_LUT = np.full(256, NODATA, np.uint8)
for _name, _codes in _CLC_GROUPS.items():
    _CLC_LUT[list(_codes)] = CODE[_name]


def clc_to_vocabulary(grid_code: np.ndarray) -> np.ndarray:
    """CORINE grid codes uint8 (1..44; 255 or anything else -> 255 nodata) -> our class codes uint8."""
    g = np.asarray(grid_code)
    out = np.full(g.shape, NODATA, np.uint8)
    inside = (g >= 0) & (g <= 255)
    out[inside] = _CLC_LUT[g[inside].astype(np.int64)]
    return out
