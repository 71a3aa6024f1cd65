"""IR-MAD, the default change masker: a weighted CCA fitted on a scene-wide sample, float32 window scoring.

Registered in `maskers.MASKERS` as "irmad" (a lazy entry: maskers.py imports this module on first use). Split
from maskers.py so each
holds one thing: this file is the IR-MAD maths (fit, chi-square, the fused float32 projection).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import ndimage

# scipy.special, not scipy.stats: the same chi-square functions without scipy.stats' 1-2 s import
from scipy.special import chdtrc, chdtri
from skimage.filters import threshold_otsu

from geodelta.errors import InputError
from geodelta.perception.change.maskers import (
    _TRUNCATE,
    _check_pair,
    _robust_stats,
    _standardise,
    _window,
    hill_score,
    register_masker,
)

# Relative eigenvalue floor for the per-date whitening: directions of a date's (weighted)
# covariance below this fraction of its largest eigenvalue are dropped (pseudo-inverse), so
# constant or collinear bands (OSCD B10 cirrus, duplicated channels) cannot make CCA singular.
_EIG_FLOOR = 1e-6


def _project(z: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """coef (m, n) @ z (n, N) in float32, summed in a fixed order: BLAS sgemm rounds differently with its
    thread count (a Dask worker runs it on one thread, this process on several), and every engine must
    write the same bytes."""
    out = np.empty((coef.shape[0], z.shape[1]), np.float32)
    tmp = np.empty(z.shape[1], np.float32)
    for i, row in enumerate(coef):
        np.multiply(z[0], row[0], out=out[i])
        for j in range(1, z.shape[0]):
            np.multiply(z[j], row[j], out=tmp)
            out[i] += tmp
    return out


def _whitener(cov: np.ndarray) -> np.ndarray:
    """W (B, k) with W' cov W = I over the eigen-directions above the relative floor (pseudo-inverse)."""
    vals, vecs = np.linalg.eigh(cov)
    top = max(float(vals[-1]), 0.0)
    keep = vals > max(_EIG_FLOOR * top, 1e-12)
    return vecs[:, keep] / np.sqrt(vals[keep])


def _weighted_cca(x: np.ndarray, y: np.ndarray, w: np.ndarray, xy: np.ndarray | None = None,
                  work: np.ndarray | None = None):
    """Weighted CCA of x (p, N) and y (q, N). Returns means, A (p, m), B (q, m), rho (m,) ascending.

    Canonical variates U = A'(x - mx), V = B'(y - my) have unit weighted variance and correlation
    rho; pairs are sorted with the smallest correlation first (MAD1 = the most change), and signs
    are fixed so that each U correlates positively with the sum of x's bands (determinism).
    `xy`: x and y stacked (p + q, N), if the caller has it (the IR-MAD loop stacks once): the weighted
    moments are then one element-wise product and two matrix products per call. `work`: a float64 array
    shaped like xy to hold the weighted copy (the loop reuses one: a fresh 15 MB array per iteration
    costs its page faults every time).
    """
    p_ = x.shape[0]
    z = np.concatenate([x, y]) if xy is None else xy
    sw = w.sum()
    mean = (z @ w) / sw
    zs = np.multiply(z, np.sqrt(w), out=work)
    cov = zs @ zs.T / sw - np.outer(mean, mean)  # inputs are robustly standardised: no cancellation to fear
    mx, my = mean[:p_], mean[p_:]
    sxx, syy, sxy = cov[:p_, :p_], cov[p_:, p_:], cov[:p_, p_:]
    wx = _whitener(sxx)
    wy = _whitener(syy)
    p, s, qt = np.linalg.svd(wx.T @ sxy @ wy, full_matrices=False)
    m = min(wx.shape[1], wy.shape[1])
    a_mat = wx @ p[:, :m]
    b_mat = wy @ qt.T[:, :m]
    rho = np.clip(s[:m], 0.0, 1.0)
    order = np.argsort(rho, kind="stable")
    a_mat, b_mat, rho = a_mat[:, order], b_mat[:, order], rho[order]
    sign = np.sign(sxx.sum(0) @ a_mat)  # covariance of U with the band sum
    sign[sign == 0] = 1.0
    return mx, my, a_mat * sign, b_mat * sign, rho


def _mad_chi2(x: np.ndarray, y: np.ndarray, mx, my, a_mat, b_mat, rho, n_variates: int,
              xy: np.ndarray | None = None, work: np.ndarray | None = None) -> np.ndarray:
    """Chi-square statistic sum_i MAD_i^2 / (2 (1 - rho_i)) over the first n_variates MADs; x, y (p, N).

    Computed as one matrix product: MAD_i / sd_i = c_i' [x; y] - k_i with c_i = [A_i; -B_i] / sd_i
    (`xy`: x and y already stacked, if the caller has them; `work`: a float64 (>= n_variates, N) array for
    the MADs, reused across the IR-MAD loop)."""
    var = np.maximum(2.0 * (1.0 - rho[:n_variates]), 1e-6)  # var(U - V) for unit-variance U, V (Nielsen 2007, eq. 4)
    sd = np.sqrt(var)
    coef = np.concatenate([a_mat[:, :n_variates], -b_mat[:, :n_variates]]).T / sd[:, None]  # (m, p + q)
    k = coef @ np.concatenate([mx, my])
    z = np.concatenate([x, y]) if xy is None else xy
    mad = np.matmul(coef, z, out=None if work is None else work[:n_variates])
    mad -= k[:, None]
    mad *= mad
    return mad.sum(0)


def _chi2_ppf(q: float, dof: int) -> float:
    """The chi-square quantile F^-1(q; dof) (scipy.stats.chi2.ppf) via chdtri, the inverse of chdtrc."""
    return float(chdtri(dof, 1.0 - q))


def _chi2_sf(z: np.ndarray, dof: int) -> np.ndarray:
    """1 - F_chi2(z; dof), as scipy.stats.chi2.sf. Even dof (4-band NAIP, 6-band Landsat): the closed form
    exp(-z/2) sum_{i < dof/2} (z/2)^i / i! (a few array passes; chdtrc's series costs 4x more per call
    and the IR-MAD fit calls it up to 30 times on 200k pixels); odd dof: scipy.special.chdtrc."""
    if dof % 2 or dof > 40:
        return chdtrc(dof, z)
    h = np.maximum(z, 0.0)
    h *= 0.5
    term, total, tmp = np.ones_like(h), np.ones_like(h), np.empty_like(h)
    for i in range(1, dof // 2):
        term *= np.divide(h, i, out=tmp)
        total += term
    total *= np.exp(np.negative(h, out=tmp), out=tmp)
    return total


# Scales on which Otsu thresholds the chi-square statistic: forward map and its inverse.
_Scale = Callable[[np.ndarray], np.ndarray]
_OTSU_SCALES: dict[str, tuple[_Scale, _Scale]] = {"cbrt": (np.cbrt, lambda v: v**3), "sqrt": (np.sqrt, np.square), "log": (np.log1p, np.expm1)}


@register_masker
class IRMAD:
    """Iteratively reweighted MAD (A. A. Nielsen, IEEE TIP 16(2), 2007, 463-478).

    Bands are robustly standardised per date (median / IQR), which with CCA makes the result
    invariant to any per-band linear radiometric change (gain, offset) of either date. CCA is
    re-weighted by the no-change probability 1 - F_chi2(Z; m) until the canonical correlations
    move less than `tol` (at most `max_iter` times). Threshold (`threshold`):
    - "otsu" (default): Otsu (1979) on the fitted sample's Z mapped by `otsu_scale`; the default
      "cbrt" is the Wilson-Hilferty transform, which makes a chi-square nearly Gaussian (Otsu's
      implicit class model). Picked by mean F1 over five labelled domains, not one pair
      (benchmarks/change_quick.py, smooth=1): cbrt 0.364, sqrt 0.363, log 0.356, chi2 q=0.99 0.317
      (it marks far too much change: real no-change MADs are heavier-tailed than Gaussian).
    - "chi2": Z >= chi2.ppf(quantile, m), the textbook no-change test (P(no change) < 1 - quantile).
    `smooth` (Gaussian sigma, pixels; default 1.0: mean F1 0.364 against 0.351 unsmoothed) smooths
    each date over valid pixels before windows are scored; the fit sees the raw sample pixels.
    `n_variates` keeps only the first (least correlated) MADs; default all (fewer lost F1).
    """

    name = "irmad"
    thread_safe = True  # score() reads params only: the local engine may call it from several threads

    def __init__(self, threshold: str = "otsu", quantile: float = 0.99, max_iter: int = 30, tol: float = 1e-6,
                 smooth: float = 1.0, n_variates: int | None = None, otsu_scale: str = "cbrt"):
        if threshold not in ("otsu", "chi2"):
            raise InputError(f"irmad threshold must be 'otsu' or 'chi2', not {threshold!r}")
        if not 0.5 < quantile < 1.0:
            raise InputError(f"irmad quantile must lie in (0.5, 1), not {quantile}")
        self.threshold, self.quantile, self.max_iter, self.tol = threshold, quantile, int(max_iter), float(tol)
        self.smooth, self.n_variates = float(smooth), n_variates
        if otsu_scale not in _OTSU_SCALES:
            raise InputError(f"irmad otsu_scale must be one of {', '.join(_OTSU_SCALES)}, not {otsu_scale!r}")
        self.otsu_scale = otsu_scale

    def fit(self, a: np.ndarray, b: np.ndarray) -> dict:
        a, b = _check_pair(a, b, 2)
        finite = np.isfinite(a).all(0) & np.isfinite(b).all(0)
        a, b = a[:, finite], b[:, finite]
        ca, sa = _robust_stats(a)
        cb, sb = _robust_stats(b)
        keep = [i for i in range(a.shape[0]) if sa[i] > 0 and sb[i] > 0]
        params: dict[str, Any] = {"method": self.name, "bands": int(a.shape[0]), "keep": keep, "centre_a": ca,
                                  "scale_a": sa, "centre_b": cb, "scale_b": sb, "smooth": self.smooth}
        if not keep or a.shape[1] < 2:
            return params | {"degenerate": True, "threshold": 1.0, "iterations": 0}
        if np.array_equal(a[keep], b[keep]):
            # Two identical dates (over a sample spread across the whole scene): no change. Said explicitly
            # because CCA of x with itself has rho = 1 and MADs that are pure rounding noise (the fused
            # float64 moments are not bitwise symmetric), on which Otsu would pick a threshold of ~1e-22.
            return params | {"degenerate": True, "identical": True, "threshold": 1.0, "iterations": 0}
        x = _standardise(a, ca, sa, keep)
        y = _standardise(b, cb, sb, keep)
        w = np.ones(x.shape[1])
        xy = np.concatenate([x, y])  # stacked once: every iteration is then two matrix products
        weighted, mads = np.empty_like(xy), np.empty_like(x)  # the loop's working arrays, allocated once
        rho_old, last = None, None
        for it in range(1, self.max_iter + 1):
            try:
                mx, my, a_mat, b_mat, rho = _weighted_cca(x, y, w, xy, work=weighted)
                m = rho.size
                nv = m if self.n_variates is None else max(1, min(int(self.n_variates), m))
                z = _mad_chi2(x, y, mx, my, a_mat, b_mat, rho, nv, xy, work=mads)
                ok = rho.size > 0 and bool(np.isfinite(z).all() and np.isfinite(rho).all())
            except np.linalg.LinAlgError:
                ok = False
            if not ok:
                # the reweighting collapsed onto a few pixels (seen on an OMBRIA pair): keep the last finite fit
                if last is None:
                    return params | {"degenerate": True, "threshold": 1.0, "iterations": it}
                mx, my, a_mat, b_mat, rho, nv, z = last
                break
            last = (mx, my, a_mat, b_mat, rho, nv, z)
            w = _chi2_sf(z, nv)  # no-change probability (Nielsen 2007, sec. III)
            if w.sum() <= 1e-9 * w.size:
                w = np.ones_like(w)
                break
            if rho_old is not None and rho_old.size == rho.size and np.max(np.abs(rho - rho_old)) < self.tol:
                break
            rho_old = rho
        if self.threshold == "chi2":
            thr = _chi2_ppf(self.quantile, nv)
        else:
            fwd, inv = _OTSU_SCALES[self.otsu_scale]
            lz = fwd(z)
            thr = float(inv(threshold_otsu(lz))) if np.ptp(lz) > 0 else _chi2_ppf(self.quantile, nv)
        return params | {"degenerate": False, "mean_a": mx.tolist(), "mean_b": my.tolist(), "A": a_mat.tolist(),
                         "B": b_mat.tolist(), "rho": rho.tolist(), "n_variates": nv, "threshold": thr,
                         "threshold_rule": self.threshold, "iterations": it}

    def statistic(self, a: np.ndarray, b: np.ndarray, valid: np.ndarray, params: dict) -> np.ndarray:
        """Chi-square MAD statistic Z (h, w) float32 of one window; 0 where not valid.

        The same Z as standardise -> smooth -> MAD -> sum of squares, computed in float32 in a cheaper order:
        standardisation, centring and the MAD projection are one affine map per pixel, and Gaussian
        smoothing (normalised over valid pixels) is linear, so the projection runs first, on raw bands
        shifted by one offset per band, and only the m MAD variates are smoothed (m filters per window
        instead of 2 x bands). Differs from the float64 order by float32 rounding only (relative 1e-6)."""
        a, b, valid = _window(a, b, valid, np.float32)
        if params.get("degenerate"):
            return np.zeros(a.shape[1:], np.float32)
        keep, nv = params["keep"], int(params["n_variates"])
        h, w = a.shape[1:]
        k = len(keep)
        rho = np.asarray(params["rho"])[:nv]
        sd = np.sqrt(np.maximum(2.0 * (1.0 - rho), 1e-6))  # sd of MAD_i (Nielsen 2007, eq. 4)
        scale = np.concatenate([np.asarray(params["scale_a"])[keep], np.asarray(params["scale_b"])[keep]])
        centre = np.concatenate([np.asarray(params["centre_a"])[keep], np.asarray(params["centre_b"])[keep]])
        mean = np.concatenate([np.asarray(params["mean_a"]), np.asarray(params["mean_b"])])
        coef = np.concatenate([np.asarray(params["A"])[:, :nv], -np.asarray(params["B"])[:, :nv]]).T / sd[:, None]
        offset = centre + mean * scale  # raw value at the fitted mean of each standardised band
        z = np.concatenate([a[keep], b[keep]]).reshape(2 * k, -1)
        z -= offset.astype(np.float32)[:, None]
        z[:, ~valid.ravel()] = 0.0
        mad = _project(z, (coef / scale[None, :]).astype(np.float32)).reshape(nv, h, w)  # MAD_i / sd_i
        sigma = float(params.get("smooth", 0.0))
        if sigma > 0:
            vw = valid.astype(np.float32)
            den = ndimage.gaussian_filter(vw, sigma, mode="nearest", truncate=_TRUNCATE)
            ok = den > 1e-6
            np.maximum(den, np.float32(1e-6), out=den)
            mad *= vw  # 0 off the valid pixels already; keeps the filter input exact
            for i in range(nv):
                sm = ndimage.gaussian_filter(mad[i], sigma, mode="nearest", truncate=_TRUNCATE)
                sm /= den
                mad[i] = np.where(ok, sm, mad[i])
        mad *= mad
        out = mad.sum(0)
        out[~valid] = 0.0
        return out

    def score(self, a: np.ndarray, b: np.ndarray, valid: np.ndarray, params: dict) -> np.ndarray:
        if params.get("degenerate"):
            return np.zeros(np.shape(valid), np.float32)
        z = self.statistic(a, b, valid, params)  # 0 on invalid or non-finite pixels -> score 0
        return hill_score(z, params["threshold"], np.asarray(valid, bool))
