"""Change maskers behind one registry (CVA here, IR-MAD in irmad.py, the learned one in learned.py), plus mask clean-up.

A masker is fitted once on a pixel sample of the whole pair (`fit`, JSON-able params) and then
scores any window with those params (`score`), so tiles are independent after the fit. Scores are
float32 in [0, 1] with the masker's automatic threshold mapped to exactly 0.5.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu

from geodelta.errors import InputError

# Hill exponent of the statistic -> score map s = x^k / (x^k + t^k): 0.5 at the threshold t,
# 0.8 at 2t, 0.2 at t/2. A display/ranking choice only; the decision is s >= 0.5 <=> x >= t.
_HILL_K = 2.0
_TRUNCATE = 3.0  # Gaussian kernel radius in sigmas (scipy's `truncate`)


# The registry lives in registry.py (cheap to import: the CLI and tool schemas list its names); re-exported here
# because maskers are usually asked for beside the clean-up functions of this module.
from geodelta.perception.change.registry import (  # noqa: E402
    MASKERS,  # noqa: F401
    ChangeMasker,  # noqa: F401
    get_masker,  # noqa: F401
    list_maskers,  # noqa: F401
    masker_class,  # noqa: F401
    register_masker,
)

# ---------------------------------------------------------------- shared helpers


def _check_pair(a: np.ndarray, b: np.ndarray, ndim: int, dtype: type = np.float64) -> tuple[np.ndarray, np.ndarray]:
    """a, b as `dtype` (copies unless already of it) after checking they are (B, ...) arrays of the same shape."""
    a = np.asarray(a, dtype=dtype)
    b = np.asarray(b, dtype=dtype)
    if a.ndim != ndim or a.shape != b.shape:
        raise InputError(
            f"the two dates must be arrays of the same shape with {ndim} axes (bands first); got {a.shape} and {b.shape}"
        )
    if a.shape[0] < 1:
        raise InputError("the images have no bands")
    return a, b


def _window(a: np.ndarray, b: np.ndarray, valid: np.ndarray, dtype: type = np.float64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """a, b (B, h, w) as `dtype` (float32: no copies of the reader's float32 windows) and valid (h, w) restricted
    to pixels finite in every band of both dates."""
    a, b = _check_pair(a, b, 3, dtype)
    valid = np.asarray(valid, bool)
    if valid.shape != a.shape[1:]:
        raise InputError(f"the valid mask {valid.shape} must match the window {a.shape[1:]}")
    return a, b, valid & np.isfinite(a).all(0) & np.isfinite(b).all(0)


def _robust_stats(x: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-band median and robust scale (IQR / 1.349, the normal sigma) of x (B, N), finite only.

    A constant band gets scale 0 and is dropped later: it carries no change information.
    """
    centres, scales = [], []
    for band in x:
        band = band[np.isfinite(band)]
        if band.size == 0:
            centres.append(0.0)
            scales.append(0.0)
            continue
        q25, q50, q75 = np.percentile(band, [25, 50, 75])
        scale = (q75 - q25) / 1.349
        if not scale > 0:  # IQR of a mostly-constant band is 0: fall back to the standard deviation
            scale = float(np.std(band))
        centres.append(float(q50))
        scales.append(float(scale) if scale > 1e-12 * max(1.0, abs(q50)) else 0.0)
    return centres, scales


def _standardise(x: np.ndarray, centres: list[float], scales: list[float], keep: list[int]) -> np.ndarray:
    """(x - centre) / scale for the kept bands; x is (B, ...)."""
    c = np.asarray(centres)[keep].reshape((-1,) + (1,) * (x.ndim - 1))
    s = np.asarray(scales)[keep].reshape((-1,) + (1,) * (x.ndim - 1))
    return (x[keep] - c) / s


def _smooth(x: np.ndarray, valid: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing of each band (B, h, w) over valid pixels only (normalised convolution)."""
    if sigma <= 0:
        return x
    w = valid.astype(np.float64)
    den = ndimage.gaussian_filter(w, sigma, mode="nearest", truncate=_TRUNCATE)
    out = np.empty_like(x)
    for i, band in enumerate(x):
        num = ndimage.gaussian_filter(np.where(valid, band, 0.0), sigma, mode="nearest", truncate=_TRUNCATE)
        out[i] = np.where(den > 1e-9, num / np.maximum(den, 1e-9), band)
    return out


def hill_score(stat: np.ndarray, threshold: float, valid: np.ndarray) -> np.ndarray:
    """Map a non-negative statistic to float32 [0, 1] with `threshold` at exactly 0.5; 0 where not valid.

    Computed in float32 in place (one temporary per window, not five float64 ones): with k = 2,
    s = 1 / (1 + x^-2) needs no power function."""
    t = max(float(threshold), 1e-12)
    x = np.nan_to_num(np.asarray(stat, dtype=np.float32), nan=0.0, posinf=float(np.finfo(np.float32).max))
    np.maximum(x, 0.0, out=x)
    x /= np.float32(t)
    above = x >= 1.0  # the decision, before any rounding of the map below
    with np.errstate(over="ignore", divide="ignore"):
        if _HILL_K == 2.0:
            np.multiply(x, x, out=x)
            np.reciprocal(x, out=x)  # x = 0 -> inf -> score 0; x^2 overflow -> inf -> 0 -> score 1
        else:
            np.power(np.maximum(x, np.float32(1e-30)), np.float32(-_HILL_K), out=x)
        x += 1.0
        s = np.reciprocal(x, out=x)
    # float32 rounding must not move a pixel across the decision: pin the two sides of 0.5.
    lo = np.nextafter(np.float32(0.5), np.float32(0))
    s[above] = np.maximum(s[above], np.float32(0.5))
    np.minimum(s, lo, out=s, where=~above)
    s[~np.asarray(valid, bool)] = 0.0
    return s


def sample_valid(a: np.ndarray, b: np.ndarray, valid: np.ndarray | None = None, max_pixels: int = 200_000) -> tuple[np.ndarray, np.ndarray]:
    """A regular strided sample (B, N) of the valid pixels of in-memory images a, b (B, h, w).

    Deterministic (no randomness); for callers that hold whole images rather than an aligned pair.
    """
    a = np.asarray(a)
    b = np.asarray(b)
    flat_valid = np.ones(a.shape[1:], bool).ravel() if valid is None else np.asarray(valid, bool).ravel()
    idx = np.flatnonzero(flat_valid)
    if idx.size > max_pixels:
        idx = idx[np.linspace(0, idx.size - 1, max_pixels).round().astype(np.int64)]
    return (a.reshape(a.shape[0], -1)[:, idx].astype(np.float32), b.reshape(b.shape[0], -1)[:, idx].astype(np.float32))


# ---------------------------------------------------------------- CVA


@register_masker
class CVA:
    """Change-vector analysis: |z_b - z_a| over per-date z-scored bands, Otsu threshold on the sample.

    z-scores use each date's mean and standard deviation from the sample (Malila 1980; Otsu 1979).
    """

    name = "cva"
    thread_safe = True

    def __init__(self, smooth: float = 0.0):
        self.smooth = float(smooth)

    def fit(self, a: np.ndarray, b: np.ndarray) -> dict:
        a, b = _check_pair(a, b, 2)
        finite = np.isfinite(a).all(0) & np.isfinite(b).all(0)
        a, b = a[:, finite], b[:, finite]
        ma, sa = a.mean(1), a.std(1)
        mb, sb = b.mean(1), b.std(1)
        keep = [i for i in range(a.shape[0]) if sa[i] > 1e-12 and sb[i] > 1e-12]
        params: dict[str, Any] = {"method": self.name, "bands": int(a.shape[0]), "keep": keep, "centre_a": ma.tolist(),
                                  "scale_a": sa.tolist(), "centre_b": mb.tolist(), "scale_b": sb.tolist(), "smooth": self.smooth}
        if not keep or a.shape[1] < 2:
            return params | {"degenerate": True, "threshold": 1.0}
        mag = np.sqrt(((_standardise(b, mb, sb, keep) - _standardise(a, ma, sa, keep)) ** 2).sum(0))
        thr = float(threshold_otsu(mag)) if np.ptp(mag) > 0 else float(mag.max()) + 1.0
        return params | {"degenerate": False, "threshold": thr}

    def score(self, a: np.ndarray, b: np.ndarray, valid: np.ndarray, params: dict) -> np.ndarray:
        sigma = float(params.get("smooth", 0.0))
        if sigma > 0:  # smoothing works on the standardised bands
            a, b, valid = _window(a, b, valid)
            if params.get("degenerate"):
                return np.zeros(a.shape[1:], np.float32)
            keep = params["keep"]
            x = np.where(valid, _standardise(a, params["centre_a"], params["scale_a"], keep), 0.0)
            y = np.where(valid, _standardise(b, params["centre_b"], params["scale_b"], keep), 0.0)
            x, y = _smooth(x, valid, sigma), _smooth(y, valid, sigma)
            return hill_score(np.sqrt(((y - x) ** 2).sum(0)), params["threshold"], valid)
        a, b, valid = _window(a, b, valid, np.float32)
        if params.get("degenerate"):
            return np.zeros(a.shape[1:], np.float32)
        return hill_score(_cva_magnitude(a, b, valid, params), params["threshold"], valid)


def _cva_magnitude(a: np.ndarray, b: np.ndarray, valid: np.ndarray, params: dict) -> np.ndarray:
    """|z_b - z_a| (h, w) float32 of float32 bands, 0 where not valid: one band at a time in two reused buffers, as
    z_b - z_a = b / s_b - a / s_a - (c_b / s_b - c_a / s_a). The same magnitude as standardising both dates in
    float64, to float32 rounding; measured on a 1088 px NAIP window (4 bands): the whole score 14 ms this way, 153
    ms with float64 copies of the standardised bands."""
    mag = np.zeros(a.shape[1:], np.float32)
    d, t = np.empty_like(mag), np.empty_like(mag)
    for i in params["keep"]:
        ca, sa, cb, sb = (float(params[k][i]) for k in ("centre_a", "scale_a", "centre_b", "scale_b"))
        np.multiply(b[i], np.float32(1.0 / sb), out=d)
        np.multiply(a[i], np.float32(1.0 / sa), out=t)
        d -= t
        d -= np.float32(cb / sb - ca / sa)
        np.multiply(d, d, out=d)
        mag += d
    np.sqrt(mag, out=mag)
    mag[~valid] = 0.0
    return mag


# ---------------------------------------------------------------- morphology


def halo_for(radius: int = 1, min_pixels: int = 0, smooth: float = 0.0) -> int:
    """Overlap (pixels) a tiled caller must read around each window for seam-free results.

    Opening then closing with a disk of `radius` reaches 4 * radius pixels; a component with fewer
    than `min_pixels` pixels spans fewer than `min_pixels` pixels, and one that leaves a halo of at
    least that width shows at least `min_pixels` pixels inside it, so the size test is exact;
    Gaussian smoothing reaches truncate * sigma pixels.
    """
    return int(4 * radius + max(int(min_pixels), 0) + math.ceil(_TRUNCATE * max(smooth, 0.0)))


HALO = 32  # covers halo_for(radius<=2, min_pixels<=16, smooth<=2): the defaults with room to spare


def _cross(mask: np.ndarray, erode: bool) -> np.ndarray:
    """Binary erosion (AND) or dilation (OR) of bool (h, w) with disk(1), the 3 x 3 cross, edges replicated.

    The same pixels as scikit-image's erosion / dilation with disk(1) (scipy grey morphology, mode "reflect":
    for a one-pixel reach the reflected neighbour of an edge pixel is the pixel itself), from five shifted
    views instead of a generic min/max filter: measured 36 ms per call on a 1088 px window with
    scikit-image, a few ms this way, on every window of the change stage (4 calls each)."""
    p = np.pad(mask, 1, mode="edge")
    op = np.logical_and if erode else np.logical_or
    out = op(p[1:-1, 1:-1], p[:-2, 1:-1])
    op(out, p[2:, 1:-1], out=out)
    op(out, p[1:-1, :-2], out=out)
    op(out, p[1:-1, 2:], out=out)
    return out


def _opening(mask: np.ndarray, r: int) -> np.ndarray:
    if r == 1:
        return _cross(_cross(mask, True), False)
    from skimage.morphology import disk, opening  # only for radius > 1: skimage.morphology costs ~0.1 s to import

    return opening(mask, disk(r)).astype(bool)


def _closing(mask: np.ndarray, r: int) -> np.ndarray:
    if r == 1:
        return _cross(_cross(mask, False), True)
    from skimage.morphology import closing, disk

    return closing(mask, disk(r)).astype(bool)


def clean_mask(mask: np.ndarray, valid: np.ndarray, radius: int = 1, min_pixels: int = 0,
               open_radius: int | None = None, prob: np.ndarray | None = None, min_mean: float = 0.0) -> np.ndarray:
    """Opening (disk of `open_radius`, default `radius`; 0 skips it) then closing with a disk of `radius`,
    then removal of 4-connected components with fewer than `min_pixels` pixels (scipy.ndimage.label: the same
    labels as scikit-image's label(connectivity=1), without loading skimage.measure, ~0.1 s on a first call)
    and, given `prob`, of those whose mean probability is below `min_mean`.
    Returns bool (h, w), False where not valid."""
    valid = np.asarray(valid, bool)
    out = np.asarray(mask, bool) & valid
    r_open = radius if open_radius is None else int(open_radius)
    if r_open > 0:
        out = _opening(out, int(r_open))
    if radius > 0:
        out = _closing(out, int(radius)) & valid
    by_mean = prob is not None and min_mean > 0
    if (min_pixels > 1 or by_mean) and out.any():
        labels, _ = ndimage.label(out)  # 4-connected (the default cross structure)
        sizes = np.bincount(labels.ravel())
        drop = sizes < int(min_pixels)
        if by_mean:
            sums = np.bincount(labels.ravel(), weights=np.nan_to_num(np.asarray(prob, np.float64)).ravel())
            drop |= sums < min_mean * sizes
        drop[0] = False
        out = out & ~drop[labels]
    return out


# Sentinel-2 folders: compare only the native 10 m bands. The 20 m and 60 m bands are upsampled onto
# the 10 m grid, so their edges are blurred relative to the 10 m bands and IR-MAD reads every edge as
# change; B01/B09/B10 also see the atmosphere, not the ground. Measured on the 6 OSCD cities (micro F1):
# irmad 13 bands 0.05, 10 m + 20 m bands 0.055, 10 m bands 0.175; cva 0.155 / 0.258 / 0.21. The rule is
# the same for every masker.
S2_10M_BANDS = ("B02", "B03", "B04", "B08")
S2_BAND_NAMES = frozenset({"B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"})


def change_band_indices(band_names: list[str]) -> list[int] | None:
    """Indices of the bands a masker should compare, or None for all of them."""
    if len(band_names) > 4 and set(band_names) <= S2_BAND_NAMES and set(S2_10M_BANDS) <= set(band_names):
        return [band_names.index(b) for b in S2_10M_BANDS]
    return None


# What the engines read off a masker besides fit/score (engines.run_local, engines.change_window), with the value
# a masker without the attribute means: pool-safe, how many windows at once (None: one per CPU), clean-up opening.
ENGINE_HINTS: dict[str, Any] = {"thread_safe": False, "max_windows": None, "open_radius": None, "min_component_mean": 0.0}


def pass_engine_hints(wrapper: Any, inner: Any) -> None:
    """Give a masker that wraps another (BandSubset, auto) the inner masker's engine hints."""
    for name, default in ENGINE_HINTS.items():
        setattr(wrapper, name, getattr(inner, name, default))


class BandSubset:
    """A masker that sees only some bands (same fit/score interface; params record which)."""

    def __init__(self, masker: ChangeMasker, indices: list[int], names: list[str]):
        self.masker, self.indices, self.names = masker, indices, names
        self.name = masker.name
        pass_engine_hints(self, masker)

    def fit(self, a: np.ndarray, b: np.ndarray) -> dict:
        params = self.masker.fit(a[self.indices], b[self.indices])
        return {**params, "bands_used": self.names}

    def score(self, a: np.ndarray, b: np.ndarray, valid: np.ndarray, params: dict) -> np.ndarray:
        return self.masker.score(a[self.indices], b[self.indices], valid, params)

    def warm(self) -> None:
        warm = getattr(self.masker, "warm", None)
        if warm is not None:
            warm()
