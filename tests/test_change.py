"""Change maskers (irmad, cva) and clean_mask on real pairs: registry, contract, invariance, tiling."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image

from geodelta.errors import InputError
from geodelta.perception.change.maskers import (
    HALO,
    MASKERS,
    ChangeMasker,
    clean_mask,
    get_masker,
    halo_for,
    list_maskers,
    register_masker,
    sample_valid,
)
from geodelta.perception.evaluation.metrics import confusion, scores


def _read_tif(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read().astype(np.float32)


@pytest.fixture(scope="module")
def taizhou(data_dir: Path):
    """Landsat Taizhou pair (6, 400, 400) float32 and the reference (1 change, 0 no change, 255 unlabelled)."""
    d = data_dir / "demo"
    a = _read_tif(d / "taizhou_before_2000-03-17_landsat7_etm.tif")
    b = _read_tif(d / "taizhou_after_2003-02-06_landsat7_etm.tif")
    with rasterio.open(d / "taizhou_change_reference.tif") as src:
        ref = src.read(1)
    return a, b, ref


@pytest.fixture(scope="module")
def levir(data_dir: Path):
    """One LEVIR-CD test crop, RGB (3, 256, 256) float32, and its label (bool)."""
    root = data_dir / "levir_crops"
    name = "test_2_0000_0000.png"
    a = np.asarray(Image.open(root / "A" / name))[..., :3].transpose(2, 0, 1).astype(np.float32)
    b = np.asarray(Image.open(root / "B" / name))[..., :3].transpose(2, 0, 1).astype(np.float32)
    return a, b, np.asarray(Image.open(root / "label" / name)) > 127


@pytest.fixture(scope="module")
def bercy(data_dir: Path):
    """OSCD bercy, the four 10 m bands B02, B03, B04, B08 of both dates (same grid), uint16."""
    city = data_dir / "oscd" / "bercy"

    def stack(folder: Path) -> np.ndarray:
        out = []
        for band in ("B02", "B03", "B04", "B08"):
            (path,) = folder.glob(f"*_{band}.tif")
            with rasterio.open(path) as src:
                out.append(src.read(1))
        return np.stack(out)

    return stack(city / "imgs_1"), stack(city / "imgs_2")


def _fit_score(method: str, a, b, valid=None, **options):
    valid = np.ones(a.shape[1:], bool) if valid is None else valid
    masker = get_masker(method, **options)
    params = masker.fit(*sample_valid(a, b, valid, 50_000))
    return masker, params, masker.score(a, b, valid, params)


# ---------------------------------------------------------------- registry


def test_registry_lists_and_builds_maskers():
    assert {"irmad", "cva"} <= set(list_maskers())
    assert list_maskers() == sorted(list_maskers())
    masker = get_masker("irmad", threshold="chi2")
    assert masker.name == "irmad" and masker.threshold == "chi2"
    assert isinstance(masker, ChangeMasker)
    assert get_masker("cva").name == "cva"


def test_unknown_masker_names_the_choices():
    with pytest.raises(InputError, match="irmad") as err:
        get_masker("magic")
    assert "cva" in str(err.value)


def test_register_masker_decorator_adds_a_class():
    @register_masker
    class Nothing:
        name = "nothing-test"

    try:
        assert "nothing-test" in list_maskers()
        assert isinstance(get_masker("nothing-test"), Nothing)
    finally:
        MASKERS.pop("nothing-test")


def test_bad_option_is_an_input_error():
    with pytest.raises(InputError):
        get_masker("irmad", threshold="median")


# ---------------------------------------------------------------- contract on real pairs


@pytest.mark.parametrize("method", ["irmad", "cva"])
@pytest.mark.parametrize("pair", ["taizhou", "levir", "bercy"])
def test_scores_are_float32_unit_range_zero_when_invalid(method, pair, request):
    a, b = request.getfixturevalue(pair)[:2]
    valid = np.ones(a.shape[1:], bool)
    valid[:40, :60] = False  # a nodata corner
    masker, params, score = _fit_score(method, a, b, valid)
    json.dumps(params)  # params are JSON-able
    assert score.dtype == np.float32 and score.shape == a.shape[1:]
    assert np.isfinite(score).all() and score.min() >= 0.0 and score.max() <= 1.0
    assert (score[~valid] == 0).all()
    changed = (score >= 0.5)[valid].mean()
    assert 0.001 < changed < 0.6, f"{method} marks {changed:.1%} of {pair} as change"


@pytest.mark.parametrize("method", ["irmad", "cva"])
def test_fit_is_deterministic(method, taizhou):
    a, b, _ = taizhou
    sa, sb = sample_valid(a, b, None, 20_000)
    assert get_masker(method).fit(sa, sb) == get_masker(method).fit(sa, sb)


def test_irmad_detects_the_labelled_change_on_the_demo(taizhou):
    a, b, ref = taizhou
    _, params, score = _fit_score("irmad", a, b)
    mask = clean_mask(score >= 0.5, np.ones(ref.shape, bool), radius=1)
    f1 = scores(confusion(mask, ref == 1, ref != 255))["f1"]
    labelled = ref != 255
    chance = 2 * (ref == 1).sum() / ((ref == 1).sum() + labelled.sum())  # F1 of "all change"
    # measured 0.77-0.87 across threshold rules (benchmarks/change_quick.py); chance is 0.33
    assert f1 > 0.65 > chance + 0.3, f"irmad F1 {f1:.3f} on Taizhou"
    assert 1 <= params["iterations"] <= 30 and len(params["rho"]) == 6


def test_irmad_is_invariant_to_a_linear_change_of_the_after_image(taizhou):
    a, b, _ = taizhou
    gains = np.array([0.5, 2.0, 1.3, 0.8, 3.0, 1.1], np.float32)[:, None, None]
    offsets = np.array([10, -5, 40, 0, 100, 7], np.float32)[:, None, None]
    mask = _fit_score("irmad", a, b)[2] >= 0.5
    mask2 = _fit_score("irmad", a, gains * b + offsets)[2] >= 0.5
    assert mask.any()
    assert (mask != mask2).mean() < 1e-4


def test_irmad_runs_on_one_band_and_on_uint_input(levir, bercy):
    a, b, _ = levir
    _, params, score = _fit_score("irmad", a[1:2], b[1:2])
    assert params["n_variates"] == 1 and score.shape == a.shape[1:]
    a16, b16 = bercy  # uint16 arrays as read
    for method in ("irmad", "cva"):
        masker = get_masker(method)
        params = masker.fit(a16.reshape(4, -1)[:, ::7], b16.reshape(4, -1)[:, ::7])
        assert masker.score(a16, b16, np.ones(a16.shape[1:], bool), params).dtype == np.float32


@pytest.mark.parametrize("method", ["irmad", "cva"])
def test_constant_and_duplicate_bands_do_not_crash(method, taizhou):
    a, b, ref = taizhou
    a = np.concatenate([a, np.full((1,) + a.shape[1:], 7, np.float32), a[:1]])  # constant band + a duplicate
    b = np.concatenate([b, np.full((1,) + b.shape[1:], 7, np.float32), b[:1]])
    b[2] = 3.0  # one band constant in the after date only
    _, params, score = _fit_score(method, a, b)
    assert np.isfinite(score).all() and score.max() <= 1.0
    assert 6 not in params["keep"] and 2 not in params["keep"]
    f1 = scores(confusion(score >= 0.5, ref == 1, ref != 255))["f1"]
    assert f1 > 0.4
    _, params, score = _fit_score(method, np.ones_like(a), np.ones_like(b))  # nothing informative
    assert params["degenerate"] and (score == 0).all()


def test_mismatched_shapes_are_an_input_error(taizhou):
    a, b, _ = taizhou
    with pytest.raises(InputError, match="same shape"):
        get_masker("irmad").fit(a.reshape(6, -1), b[:5].reshape(5, -1))


# ---------------------------------------------------------------- tiling and morphology


@pytest.mark.parametrize("method", ["irmad", "cva"])
def test_tiled_scoring_equals_whole_image(method, taizhou):
    a, b, _ = taizhou
    h, w = a.shape[1:]
    valid = np.ones((h, w), bool)
    valid[300:, :50] = False
    masker = get_masker(method)
    params = masker.fit(*sample_valid(a, b, valid, 50_000))
    radius, min_pixels = 1, 12
    assert halo_for(radius, min_pixels, smooth=params["smooth"]) <= HALO
    whole = clean_mask(masker.score(a, b, valid, params) >= 0.5, valid, radius, min_pixels)
    tiled = np.zeros_like(whole)
    tile = 96
    for r in range(0, h, tile):
        for c in range(0, w, tile):
            r0, c0 = max(r - HALO, 0), max(c - HALO, 0)
            r1, c1 = min(r + tile + HALO, h), min(c + tile + HALO, w)
            s = masker.score(a[:, r0:r1, c0:c1], b[:, r0:r1, c0:c1], valid[r0:r1, c0:c1], params)
            m = clean_mask(s >= 0.5, valid[r0:r1, c0:c1], radius, min_pixels)
            tiled[r : r + tile, c : c + tile] = m[r - r0 : r - r0 + tile, c - c0 : c - c0 + tile]
    assert whole.any()
    assert np.array_equal(whole, tiled)


def test_clean_mask_opens_closes_and_drops_small_components():
    valid = np.ones((20, 20), bool)
    mask = np.zeros((20, 20), bool)
    mask[2:9, 2:9] = True  # a block that survives
    mask[5, 5] = False  # a one-pixel hole, closed
    mask[15, 15] = True  # speckle, opened away
    mask[12:15, 2:5] = True  # 9 pixels: kept by opening, dropped by min_pixels=10
    out = clean_mask(mask, valid, radius=1, min_pixels=10)
    assert out.dtype == bool and out.shape == mask.shape
    assert out[5, 5] and out[4:7, 4:7].all()
    assert not out[15, 15] and not out[12:15, 2:5].any()
    valid[:, :4] = False
    assert not clean_mask(mask, valid, radius=0)[:, :4].any()
    assert clean_mask(mask, np.ones_like(valid), radius=0, min_pixels=0).sum() == mask.sum()


def test_fast_radius_one_morphology_equals_scikit_image(taizhou, levir):
    """The 3 x 3 cross opening / closing of clean_mask gives scikit-image's pixels, edges included, on real
    change masks (IR-MAD's raw decision on the Taizhou demo, a LEVIR label) and on random speckle."""
    from skimage.morphology import closing, disk, opening

    from geodelta.perception.change import maskers

    a, b, _ = taizhou
    m = get_masker("irmad")
    raw = m.score(a, b, np.ones(a.shape[1:], bool), m.fit(*sample_valid(a, b))) >= 0.5
    rng = np.random.default_rng(7)
    for mask in (raw, levir[2], rng.random((67, 131)) > 0.5, rng.random((2, 3)) > 0.5):
        assert np.array_equal(maskers._opening(mask, 1), opening(mask, disk(1)).astype(bool))
        assert np.array_equal(maskers._closing(mask, 1), closing(mask, disk(1)).astype(bool))
    assert raw.any() and not np.array_equal(maskers._opening(raw, 1), raw)  # the test masks exercise it
