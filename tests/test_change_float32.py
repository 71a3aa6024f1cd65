"""The float32 IR-MAD and CVA scoring paths (issue 15 item 8) against the float64 reference order on real pairs:
standardise each band, smooth each band, then project (IR-MAD) or take the difference's length (CVA), in float64."""

from __future__ import annotations

import numpy as np
import pytest
from rasterio.windows import Window

from geodelta.perception.change import irmad
from geodelta.perception.change import maskers as change
from geodelta.perception.io.reader import open_pair


def _reference_statistic(a, b, valid, params) -> np.ndarray:
    a, b, valid = change._window(a, b, valid)
    keep = params["keep"]
    x = np.where(valid, change._standardise(a, params["centre_a"], params["scale_a"], keep), 0.0)
    y = np.where(valid, change._standardise(b, params["centre_b"], params["scale_b"], keep), 0.0)
    x, y = change._smooth(x, valid, params["smooth"]), change._smooth(y, valid, params["smooth"])
    z = irmad._mad_chi2(x.reshape(len(keep), -1), y.reshape(len(keep), -1), np.asarray(params["mean_a"]),
                         np.asarray(params["mean_b"]), np.asarray(params["A"]), np.asarray(params["B"]),
                         np.asarray(params["rho"]), int(params["n_variates"]))
    return np.where(valid, z.reshape(valid.shape), 0.0)


def _fitted_window(data_dir, folder: str, method: str) -> tuple:
    """(masker, params, a, b, valid) of a real pair's first 700 px window, with a 40 px hole of nodata."""
    files = sorted((data_dir / folder).glob("*.tif"))[:2]
    pair = open_pair(files[0], files[1])
    m = change.get_masker(method)
    params = m.fit(*pair.sample())
    a, b, valid = pair.read(Window(0, 0, min(pair.grid.width, 700), min(pair.grid.height, 700)))
    valid[:40, :40] = False  # a hole of nodata: smoothing must stay normalised over valid pixels
    return m, params, a, b, valid


@pytest.mark.parametrize("folder", ["demo", "naip"])
def test_float32_statistic_matches_the_float64_reference(data_dir, folder) -> None:
    m, params, a, b, valid = _fitted_window(data_dir, folder, "irmad")
    ref = _reference_statistic(a, b, valid, params)
    got = m.statistic(a, b, valid, params)
    assert got.dtype == np.float32 and got.shape == ref.shape
    assert np.all(got[~valid] == 0)
    rel = np.abs(got - ref) / np.maximum(ref, 1.0)
    assert rel.max() < 1e-4, rel.max()
    decided = (m.score(a, b, valid, params) >= 0.5)
    ref_decided = valid & (ref >= params["threshold"])
    near = np.abs(ref - params["threshold"]) < 1e-3 * params["threshold"]  # within float32 rounding of it
    assert np.array_equal(decided[~near], ref_decided[~near])
    assert ref_decided.sum() > 100  # the window has real change


@pytest.mark.parametrize("folder", ["demo", "naip"])
def test_cva_float32_magnitude_matches_the_float64_reference(data_dir, folder) -> None:
    m, params, a, b, valid = _fitted_window(data_dir, folder, "cva")
    a64, b64, valid = change._window(a, b, valid)
    keep = params["keep"]
    x = change._standardise(a64, params["centre_a"], params["scale_a"], keep)
    y = change._standardise(b64, params["centre_b"], params["scale_b"], keep)
    ref = np.where(valid, np.sqrt(((y - x) ** 2).sum(0)), 0.0)
    got = change._cva_magnitude(*change._window(a, b, valid, np.float32), params)
    assert got.dtype == np.float32 and np.all(got[~valid] == 0)
    assert (np.abs(got - ref) / np.maximum(ref, 1.0)).max() < 1e-5
    decided = m.score(a, b, valid, params) >= 0.5
    near = np.abs(ref - params["threshold"]) < 1e-4 * params["threshold"]
    assert np.array_equal(decided[~near], (valid & (ref >= params["threshold"]))[~near])
    assert decided.sum() > 100


def test_hill_score_pins_the_decision_and_zeroes_nodata() -> None:
    t = 7.0
    z = np.array([0.0, t * (1 - 1e-7), t, t * (1 + 1e-7), 2 * t, 1e30, np.nan, np.inf, -3.0], np.float32)
    valid = np.ones(z.shape, bool)
    valid[-1] = False
    s = change.hill_score(z, t, valid)
    assert s.dtype == np.float32
    assert s[0] == 0 and s[1] < 0.5 <= s[2] and s[3] >= 0.5
    assert abs(s[4] - 0.8) < 1e-6 and s[5] == 1.0 and s[6] == 0.0 and s[7] == 1.0 and s[8] == 0.0
