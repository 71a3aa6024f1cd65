"""Binary change metrics: known confusion counts and scores, the empty-mask rule, micro averaging."""

from __future__ import annotations

import numpy as np
import pytest

from geodelta.errors import InputError
from geodelta.perception.evaluation.metrics import confusion, merge, scores


def test_confusion_and_scores_known_values():
    pred = np.array([[1, 1, 0, 0], [1, 0, 0, 0]], bool)
    truth = np.array([[1, 0, 1, 0], [1, 0, 0, 0]], bool)
    conf = confusion(pred, truth)
    assert conf == {"tp": 2, "fp": 1, "fn": 1, "tn": 4}
    s = scores(conf)
    assert s["precision"] == pytest.approx(2 / 3)
    assert s["recall"] == pytest.approx(2 / 3)
    assert s["f1"] == pytest.approx(2 / 3)
    assert s["iou"] == pytest.approx(0.5)


def test_valid_mask_excludes_pixels():
    pred = np.array([1, 1, 0, 0], bool)
    truth = np.array([1, 0, 1, 0], bool)
    valid = np.array([1, 0, 0, 1], bool)
    assert confusion(pred, truth, valid) == {"tp": 1, "fp": 0, "fn": 0, "tn": 1}


def test_zero_denominators():
    # nothing predicted, change present: precision 0/0 -> 0.0, recall 0
    assert scores({"tp": 0, "fp": 0, "fn": 5, "tn": 5}) == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "iou": 0.0}
    # empty truth, empty prediction: a perfect "no change" answer
    assert scores(confusion(np.zeros(9, bool), np.zeros(9, bool)))["f1"] == 1.0
    # empty truth, something predicted: all false alarms
    assert scores({"tp": 0, "fp": 3, "fn": 0, "tn": 6})["f1"] == 0.0


def test_merge_is_a_micro_average():
    c1 = {"tp": 9, "fp": 1, "fn": 0, "tn": 90}
    c2 = {"tp": 0, "fp": 0, "fn": 10, "tn": 90}
    total = merge([c1, c2])
    assert total == {"tp": 9, "fp": 1, "fn": 10, "tn": 180}
    assert scores(total)["f1"] == pytest.approx(18 / 29)
    assert merge([]) == {"tp": 0, "fp": 0, "fn": 0, "tn": 0}


def test_shape_mismatch_is_an_input_error():
    with pytest.raises(InputError):
        confusion(np.zeros((2, 2), bool), np.zeros((2, 3), bool))
