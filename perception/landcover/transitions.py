"""Region from/to classes: each change region's majority class at both dates, and how it changed.

Also maps CORINE Land Cover grid codes onto our vocabulary, so real CLC class rasters can check the
describer (corine_ch/SOURCE.md).
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from geodelta.contracts import Region
from geodelta.perception.landcover.rules import CLASSES, CODE, NODATA

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


def transition_counts(regions: list[Region]) -> dict[str, int]:
    """Regions per "from->to" transition, most frequent first (the land-cover tool's `transitions`)."""
    return dict(Counter(f"{r.from_class}->{r.to_class}" for r in regions).most_common())


class TransitionHistogram:
    """Per-region class counts at both dates, accumulated window by window, and the one rule that turns them
    into a region's from / to class, `how` and confidence. `ask`, `bench landcover` and the tests all use it,
    and a region split by a tile edge gets the same classes as if the scene were read whole."""

    def __init__(self, n_ids: int):
        k = len(CLASSES)
        self.from_counts = np.zeros((n_ids, k), np.int64)
        self.to_counts = np.zeros((n_ids, k), np.int64)
        self.conf_sum = np.zeros(n_ids, np.float64)

    def add(self, labels: np.ndarray, from_cls: np.ndarray, to_cls: np.ndarray,
            from_conf: np.ndarray | None = None, to_conf: np.ndarray | None = None) -> None:
        """labels int (h, w): region id per pixel (0 = background); class codes uint8 (NODATA = unknown);
        confidences float in [0, 1] (None -> 1). Only pixels with a known class at both dates count."""
        if labels.shape != from_cls.shape or labels.shape != to_cls.shape:
            raise ValueError(f"labels {labels.shape}, from {from_cls.shape} and to {to_cls.shape} must share a shape")
        m = (labels > 0) & (from_cls != NODATA) & (to_cls != NODATA)
        lab = labels[m].astype(np.int64)
        n, k = self.conf_sum.size, len(CLASSES)
        self.from_counts += np.bincount(lab * k + from_cls[m], minlength=n * k).reshape(n, k)
        self.to_counts += np.bincount(lab * k + to_cls[m], minlength=n * k).reshape(n, k)
        fc = 1.0 if from_conf is None else from_conf[m]
        tc = 1.0 if to_conf is None else to_conf[m]
        self.conf_sum += np.bincount(lab, weights=np.broadcast_to(np.minimum(fc, tc), lab.shape), minlength=n)

    def transition(self, region_id: int) -> tuple[str, str, str, float] | None:
        """(majority from class, majority to class, how, confidence) or None when no pixel had both classes.
        Confidence: the mean over the region's pixels of the smaller of the two dates' pixel confidences.
        Ties go to the lower class code (deterministic)."""
        n = int(self.from_counts[region_id].sum())
        if n == 0:
            return None
        f = CLASSES[int(self.from_counts[region_id].argmax())]
        t = CLASSES[int(self.to_counts[region_id].argmax())]
        return f, t, how_of(f, t), round(float(self.conf_sum[region_id] / n), 3)

    def apply(self, regions: list[Region]) -> tuple[list[Region], dict[str, int]]:
        """Regions with their from / to class, how and class_confidence (unchanged where unknown), and the
        count of each "from->to" transition, most frequent first."""
        out: list[Region] = []
        counts: dict[str, int] = {}
        for r in regions:
            tr = self.transition(r.id) if r.id < self.conf_sum.size else None
            if tr is None:
                out.append(r)
                continue
            f, t, how, conf = tr
            out.append(r.model_copy(update={"from_class": f, "to_class": t, "how": how, "class_confidence": conf}))
            counts[f"{f}->{t}"] = counts.get(f"{f}->{t}", 0) + 1
        return out, dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def region_transitions(
    labels: np.ndarray,
    from_cls: np.ndarray,
    to_cls: np.ndarray,
    from_conf: np.ndarray | None = None,
    to_conf: np.ndarray | None = None,
) -> dict[int, tuple[str, str, str, float]]:
    """A whole label map at once (benchmarks, class rasters such as CORINE): region id -> (from, to, how,
    confidence) for every region id > 0 with a known class at both dates; see `TransitionHistogram`."""
    labels = np.asarray(labels)
    n = int(labels.max()) if labels.size else 0
    if n <= 0:
        return {}
    hist = TransitionHistogram(n + 1)
    hist.add(labels, from_cls, to_cls, from_conf, to_conf)
    return {i: tr for i in range(1, n + 1) if (tr := hist.transition(i)) is not None}


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
