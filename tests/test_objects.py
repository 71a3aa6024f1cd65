"""Change objects: watershed splitting of touching blobs and IoU >= 0.5 object matching, on real labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from skimage.draw import disk

from geodelta.perception.change import objects


def _levir_label(data_dir: Path, name: str = "test_2_0000_0000") -> np.ndarray:
    return np.asarray(Image.open(data_dir / "levir_crops" / "label" / f"{name}.png").convert("L")) > 127


def test_two_touching_roofs_split_and_a_single_blob_does_not():
    m = np.zeros((60, 100), bool)
    m[disk((30, 30), 15)] = True
    m[disk((30, 58), 15)] = True  # overlaps the first: one 8-connected component with a neck
    assert objects.components(m).max() == 1
    assert objects.split_objects(m).max() == 2
    one = np.zeros((60, 100), bool)
    one[15:45, 20:80] = True  # a long rectangle: its distance ridge has one plateau
    assert objects.split_objects(one).max() == 1


def test_a_label_matches_itself_and_a_shifted_copy_partly(data_dir: Path):
    truth = objects.components(_levir_label(data_dir))
    assert truth.max() >= 5
    same = objects.match_objects(truth, truth)
    assert same["tp"] == same["n_pred"] == same["n_truth"] == truth.max()
    shifted = objects.components(np.roll(_levir_label(data_dir), 6, axis=1))
    c = objects.match_objects(shifted, truth)
    assert 0 <= c["tp"] < c["n_truth"]  # a 6 px shift drops the IoU of small houses below 0.5
    s = objects.object_scores([same, c])
    assert 0 < s["precision"] < 1 and 0 < s["recall"] < 1


def test_unlabelled_pixels_do_not_count_as_false_objects(data_dir: Path):
    truth = objects.components(_levir_label(data_dir))
    labelled = np.ones(truth.shape, bool)
    labelled[:, :128] = False
    left_only = np.where(np.arange(truth.shape[1])[None, :] < 128, truth, 0)
    c = objects.match_objects(left_only, np.zeros_like(truth), labelled)
    assert c["n_pred"] == 0
