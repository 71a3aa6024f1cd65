"""Binary change-mask metrics: confusion counts, precision / recall / F1 / IoU, micro averaging.

Convention: a metric whose denominator is 0 is 0.0, except that an empty truth predicted empty
(no positives anywhere: tp = fp = fn = 0) scores 1.0 for precision, recall, F1 and IoU, because
"no change found" on an unchanged pair is a perfect answer. Micro averaging (`merge` then
`scores`) sums counts over crops first, as the change-detection literature (LEVIR-CD, OSCD) does.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

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
