"""Binary change-mask metrics: confusion counts, precision / recall / F1 / IoU, micro averaging.

Convention: a metric whose denominator is 0 is 0.0, except that an empty truth predicted empty
(no positives anywhere: tp = fp = fn = 0) scores 1.0 for precision, recall, F1 and IoU, because
"no change found" on an unchanged pair is a perfect answer. Micro averaging (`merge` then
`scores`) sums counts over crops first, as the change-detection literature (LEVIR-CD, OSCD) does.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from scipy import ndimage
from skimage.segmentation import find_boundaries

from geodelta.errors import InputError

KEYS = ("tp", "fp", "fn", "tn")


def confusion(pred: np.ndarray, truth: np.ndarray, valid: np.ndarray | None = None) -> dict[str, int]:
    """Counts of pred vs truth (bool arrays of one shape) over `valid` pixels (all when None)."""
    pred = np.asarray(pred, bool)
    truth = np.asarray(truth, bool)
    if pred.shape != truth.shape or (valid is not None and np.shape(valid) != pred.shape):
        raise InputError(f"prediction {pred.shape}, truth {truth.shape} and valid mask must have one shape")
    if valid is not None:
        valid = np.asarray(valid, bool)
        pred, truth = pred[valid], truth[valid]
    tp = int(np.count_nonzero(pred & truth))
    fp = int(np.count_nonzero(pred & ~truth))
    fn = int(np.count_nonzero(~pred & truth))
    return {"tp": tp, "fp": fp, "fn": fn, "tn": int(pred.size) - tp - fp - fn}


def merge(confs: Iterable[dict[str, int]]) -> dict[str, int]:
    """Sum confusions over crops (micro average when passed to `scores`)."""
    out = dict.fromkeys(KEYS, 0)
    for c in confs:
        for k in KEYS:
            out[k] += int(c[k])
    return out


def scores(conf: dict[str, int]) -> dict[str, float]:
    """precision, recall, f1, iou of a confusion; see the module docstring for the 0/0 rule."""
    tp, fp, fn = conf["tp"], conf["fp"], conf["fn"]
    if tp == fp == fn == 0:
        return {"precision": 1.0, "recall": 1.0, "f1": 1.0, "iou": 1.0}

    def ratio(n: int, d: int) -> float:
        return n / d if d else 0.0

    return {"precision": ratio(tp, tp + fp), "recall": ratio(tp, tp + fn), "f1": ratio(2 * tp, 2 * tp + fp + fn),
            "iou": ratio(tp, tp + fp + fn)}


# ---------------------------------------------------------------- boundary metrics (the refine benchmark)


def boundary_f1(pred: np.ndarray, truth: np.ndarray, tol: float = 2.0, valid: np.ndarray | None = None) -> dict[str, float]:
    """Boundary precision / recall / F1: a boundary pixel (skimage find_boundaries, mode 'inner') matches when
    the other mask has a boundary pixel within `tol` px (Euclidean). Both masks empty -> 1.0 (as metrics.scores)."""
    pred, truth = np.asarray(pred, bool), np.asarray(truth, bool)
    if valid is not None:
        pred, truth = pred & valid, truth & valid
    bp, bt = find_boundaries(pred, mode="inner"), find_boundaries(truth, mode="inner")
    if valid is not None:
        bp, bt = bp & valid, bt & valid
    if not bp.any() and not bt.any():
        return {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    if not bp.any() or not bt.any():
        return {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    near_t = ndimage.distance_transform_edt(~bt) <= tol
    near_p = ndimage.distance_transform_edt(~bp) <= tol
    p, r = float((bp & near_t).sum() / bp.sum()), float((bt & near_p).sum() / bt.sum())
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}


def count_error(pred: np.ndarray, truth: np.ndarray) -> float:
    """|#components(pred) - #components(truth)| / max(#components(truth), 1), 4-connected."""
    n_p, n_t = ndimage.label(pred)[1], ndimage.label(truth)[1]
    return abs(n_p - n_t) / max(n_t, 1)
