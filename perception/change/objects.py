"""Change objects (instances), not only pixels: split touching objects and score them against labels.

`split_objects` separates blobs that touch (two new houses joined by a shadow or a yard) by a marker
watershed on the Euclidean distance transform: one marker per h-maximum of the distance (a core at
least `h` px "higher" than the neck joining it to a neighbour), so a narrow neck splits and a merely
irregular blob does not. `match_objects` counts a predicted object as a hit when it overlaps one
labelled object with IoU >= 0.5 (at that threshold the match is one-to-one), giving object
precision / recall / F1 as in instance-level change benchmarks.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.measure import label as label_components
from skimage.morphology import h_maxima
from skimage.segmentation import watershed

H_MAX = 2.0  # px: a distance-transform peak must rise this much above the neck to its neighbour to split
MIN_OBJECT_PX = 4  # objects smaller than this (px) are not counted (speckle)


def components(mask: np.ndarray, min_px: int = MIN_OBJECT_PX) -> np.ndarray:
    """int32 labels (0 background) of the 8-connected components of `mask` with at least `min_px` pixels."""
    lab = label_components(np.asarray(mask, bool), connectivity=2).astype(np.int32)
    return _drop_small(lab, min_px)


def split_objects(mask: np.ndarray, h: float = H_MAX, min_px: int = MIN_OBJECT_PX) -> np.ndarray:
    """int32 instance labels of `mask` (bool (h, w)) with touching objects separated (see module docstring)."""
    mask = np.asarray(mask, bool)
    if not mask.any():
        return np.zeros(mask.shape, np.int32)
    dist = ndimage.distance_transform_edt(mask)
    markers = label_components(h_maxima(dist, h) & mask, connectivity=2)
    # components without a marker (thinner than h everywhere) keep their own label
    cc = label_components(mask, connectivity=2)
    orphan = np.setdiff1d(np.unique(cc[mask]), np.unique(cc[markers > 0]))
    if orphan.size:
        extra = np.isin(cc, orphan)
        markers = np.where(extra, cc + markers.max(), markers)
    lab = watershed(-dist, markers, mask=mask).astype(np.int32)
    return _drop_small(lab, min_px)


def _drop_small(lab: np.ndarray, min_px: int) -> np.ndarray:
    if min_px <= 1 or lab.max() == 0:
        return lab
    sizes = np.bincount(lab.ravel())
    small = sizes < min_px
    small[0] = False
    lab = np.where(small[lab], 0, lab)
    _, inv = np.unique(lab, return_inverse=True)  # relabel 1..n
    return inv.reshape(lab.shape).astype(np.int32)


def match_objects(pred: np.ndarray, truth: np.ndarray, labelled: np.ndarray | None = None, iou: float = 0.5) -> dict[str, int]:
    """{"tp", "n_pred", "n_truth"}: predicted / labelled instance labels (int, 0 background) matched at IoU >= `iou`.

    Where `labelled` is False (unlabelled pixels), predicted objects lying mostly there are not counted."""
    pred, truth = np.asarray(pred), np.asarray(truth)
    if labelled is not None:
        lab = np.asarray(labelled, bool)
        inside = np.bincount(pred[lab].ravel(), minlength=pred.max() + 1)
        total = np.bincount(pred.ravel(), minlength=pred.max() + 1)
        outside = np.flatnonzero(inside < 0.5 * total)
        pred = np.where(np.isin(pred, outside[outside > 0]), 0, pred)
    pred_ids, truth_ids = np.unique(pred[pred > 0]), np.unique(truth[truth > 0])
    both = (pred > 0) & (truth > 0)
    if not both.any():
        return {"tp": 0, "n_pred": int(pred_ids.size), "n_truth": int(truth_ids.size)}
    p_size = np.bincount(pred.ravel())
    t_size = np.bincount(truth.ravel())
    pairs, inter = np.unique(np.stack([pred[both], truth[both]]), axis=1, return_counts=True)
    union = p_size[pairs[0]] + t_size[pairs[1]] - inter
    good = inter / union >= iou
    # IoU >= 0.5 makes each object part of at most one such pair; dedupe anyway for iou < 0.5
    tp = min(np.unique(pairs[0][good]).size, np.unique(pairs[1][good]).size)
    return {"tp": int(tp), "n_pred": int(pred_ids.size), "n_truth": int(truth_ids.size)}


def object_scores(counts: list[dict[str, int]]) -> dict[str, float]:
    """Micro-averaged object precision / recall / F1 over several images' `match_objects` counts."""
    tp = sum(c["tp"] for c in counts)
    n_pred = sum(c["n_pred"] for c in counts)
    n_truth = sum(c["n_truth"] for c in counts)
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_truth if n_truth else 0.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0, "tp": tp, "n_pred": n_pred, "n_truth": n_truth}
