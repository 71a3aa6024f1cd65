"""Per-date land cover over the fixed vocabulary, with per-pixel confidence, from documented rules.

Two rule sets, picked from the band roles (`rule_set`):
- multispectral (red + nir, green/blue/swir when present): spectral indices on dark-object-
  subtracted bands (Chavez 1988) with literature thresholds, adapted per scene by a bounded Otsu
  split when the index histogram is clearly bimodal (`fit`); texture separates cropland from other
  low vegetation and bare ground from built-up, with lower confidence caps.
- rgb (red, green, blue only): colour and texture rules, confidence capped at RGB_MAX_CONFIDENCE.
Arrays are (B, h, w) float32 raw DNs / reflectance in `roles` band order; codes index CLASSES, 255 is nodata. Any window
size works; pass one `fit`'s `params` (whole-scene sample) so all tiles of a scene share thresholds.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu

from geodelta.contracts import NODATA_U8, VOCABULARY
from geodelta.errors import InputError

CLASSES: tuple[str, ...] = VOCABULARY  # the one vocabulary (contracts); a class code is its index
CODE = {name: i for i, name in enumerate(CLASSES)}
NODATA = NODATA_U8  # class-map nodata

# RGB-only rules are honest guesses (no NIR: vegetation vigour, water and soil are confused by
# colour alone), so no RGB pixel claims more than this confidence; the answer must say so.
RGB_MAX_CONFIDENCE = 0.4
# Caps for decisions that rest on texture / context rather than a spectral index.
TREE_MAX_CONFIDENCE = 0.7  # tree vs low vegetation: NDVI level + moisture only, no height
CROPLAND_MAX_CONFIDENCE = 0.5  # field-pattern texture; pastures can look the same
BARE_MAX_CONFIDENCE = 0.6  # bare vs built-up: BSI + texture; construction sites are both

# --- thresholds (unitless index values), each with its source --------------------------------
# NDVI > 0.3: vegetated (common practice since Tucker 1979, Remote Sens. Environ. 8:127; USGS
# "moderate vegetation" 0.2-0.5). Adapted per scene inside [0.2, 0.45] (bounded Otsu, below).
T_NDVI = 0.3
NDVI_RANGE = (0.2, 0.45)
# NDVI > 0.6 with a moist canopy: dense, closed canopy -> tree (USGS NDVI class "dense vegetation"
# > 0.6; Carlson & Ripley 1997 use NDVI_max ~ 0.6-0.8 for full cover).
T_TREE_NDVI = 0.6
# NDMI = (NIR - SWIR1)/(NIR + SWIR1) > 0.3: high canopy water content typical of forest
# (Gao 1996 NDWI-SWIR / Wilson & Sader 2002 NDMI for forest; crops and grass mostly 0.1-0.3).
T_TREE_NDMI = 0.3
# MNDWI = (G - SWIR1)/(G + SWIR1) > 0: open water (Xu 2006, Int. J. Remote Sens. 27:3025),
# adapted inside [-0.1, 0.3].
T_MNDWI = 0.0
MNDWI_RANGE = (-0.1, 0.3)
# NDWI = (G - NIR)/(G + NIR) > 0: open water when no SWIR band (McFeeters 1996, Int. J. Remote
# Sens. 17:1425). Adapted inside [0.0, 0.3]: NAIP NDWI > 0 marks 14-36 % of the same place
# depending on the year (naip/SOURCE.md); the bounded Otsu split gives 11-23 %.
T_NDWI = 0.0
NDWI_RANGE = (0.0, 0.3)
# BSI = ((SWIR1 + R) - (NIR + B)) / ((SWIR1 + R) + (NIR + B)) > 0.1: bare soil (Rikimaru et al.
# 2002, Tropical Ecology 43:39; bare soil typically 0.1-0.4 after dark-object subtraction).
T_BSI = 0.1
# NDBI = (SWIR1 - NIR)/(SWIR1 + NIR) > 0: built-up or bare (Zha et al. 2003, Int. J. Remote Sens.
# 24:583); used as evidence for built-up where vegetation is absent.
T_NDBI = 0.0
# Local coefficient of variation of brightness (std/mean, 3x3 window) above which a non-vegetated
# pixel is "textured" (built-up: roofs, streets, shadows) rather than smooth bare soil. Measured on
# the Taizhou pair and OSCD (benchmarks/landcover.py); no literature value.
T_TEXTURE_CV = 0.08
# Field patchwork: std of NDVI in a 7x7 window > 0.08 (neighbouring parcels differ) with < 15 %
# built-up in the 21x21 window around (urban parks and lawns are excluded) -> cropland. A field
# geometry proxy, measured on the Taizhou pair and OSCD; no literature value.
T_FIELD_NDVI_STD = 0.08
FIELD_WINDOW = 7
CONTEXT_WINDOW = 21
MAX_BUILT_SHARE_FIELDS = 0.15
# Otsu is trusted only when the split explains this share of the variance (effectiveness metric
# eta = between-class / total variance, Otsu 1979); otherwise the literature value stands.
MIN_OTSU_ETA = 0.6
# Dark-object subtraction (Chavez 1988, Remote Sens. Environ. 24:459): per band, the 0.1th
# percentile of the valid pixels is taken as path radiance and subtracted. On the Taizhou Landsat
# DNs it moves the median NDVI of vegetated farmland from about 0.0 to 0.45.
DARK_PERCENTILE = 0.1
# ... minus the 1 % reflectance a dark object is assumed to keep (Chavez 1996, PE&RS 62:1025;
# Moran et al. 1992): without it the darkest red (dense vegetation) drops to ~0 and NDVI -> 1.
DARK_OBJECT_REFLECTANCE = 0.01
# RGB: vegetation where excess green minus excess red ExGR = (2g - r - b) - (1.4r - g) > -0.05 on
# chromatic coordinates (Meyer & Neto 2008, Comput. Electron. Agric. 63:282, cut at 0; ExG from
# Woebbecke et al. 1995): grey and pale soil read < -0.1, unlike plain ExG > 0.05; -0.05 keeps dry
# olive lawns (looked at on LEVIR crops). Water: blue-dominant, dark, smooth; bare: warm (r >= b)
# and smooth. No NIR, so these are colour guesses (RGB_MAX_CONFIDENCE).
T_EXGR = -0.05

# What an answer must say about the classes, per rule set (tools/captions quote it verbatim).
CAVEATS: dict[str, str] = {
    "multispectral": "Land cover from spectral-index rules (NDVI, MNDWI/NDWI, NDBI, BSI); cropland, tree and "
    "bare ground rest partly on texture and carry lower confidence.",
    "rgb": "Land cover from colour and texture only (no near-infrared band): classes are rough guesses, "
    f"confidence never above {RGB_MAX_CONFIDENCE}.",
    "water": "Land cover from a water index only (no red band): water is told from the rest, other classes are 'other'.",
    "none": "Land cover unknown: the bands need red + near-infrared, or red, green and blue.",
}

_EPS = 1e-6


def rule_set(roles: dict[str, int]) -> Literal["multispectral", "rgb", "water", "none"]:
    """Which rules fit: 'multispectral' red + nir; 'rgb' red, green, blue; 'water' green + swir1 or nir."""
    if "red" in roles and "nir" in roles:
        return "multispectral"
    if {"red", "green", "blue"} <= set(roles):
        return "rgb"
    if "green" in roles and ("swir1" in roles or "nir" in roles):
        return "water"
    return "none"


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a - b) / np.maximum(a + b, _EPS)


def _conf(x: np.ndarray, t: float, width: float) -> np.ndarray:
    """Distance from a threshold squashed to [0, 1): 0 at the threshold, 0.63 at one `width` away."""
    return (1.0 - np.exp(-np.abs(x - t) / width)).astype(np.float32)


def _guess_scale(image: np.ndarray) -> float:
    """DN value of reflectance 1: 10000 for 16-bit products (Sentinel-2 L1C/L2A), 255 for 8-bit."""
    hi = float(np.nanmax(image)) if image.size else 1.0
    return 10000.0 if hi > 255 else (255.0 if hi > 1.5 else 1.0)


def _bounded_otsu(values: np.ndarray, default: float, lo: float, hi: float) -> float:
    """Scene-adaptive threshold: Otsu on the index, kept only if the histogram is clearly bimodal
    (eta >= MIN_OTSU_ETA) and the split falls in the physically plausible range [lo, hi]."""
    v = values[np.isfinite(values)]
    if v.size < 100 or float(v.std()) < 1e-3:
        return default
    t = float(threshold_otsu(v, nbins=128))
    left, right = v[v <= t], v[v > t]
    if left.size == 0 or right.size == 0:
        return default
    w0, w1 = left.size / v.size, right.size / v.size
    eta = w0 * w1 * (left.mean() - right.mean()) ** 2 / v.var()
    if eta < MIN_OTSU_ETA or not lo <= t <= hi:
        return default
    return t


def _indices(x: np.ndarray, roles: dict[str, int]) -> dict[str, np.ndarray]:
    """Spectral indices of dark-subtracted bands x (B, h, w); only those the roles allow."""
    g = {k: x[i] for k, i in roles.items() if i < x.shape[0]}
    out = {"ndvi": _ratio(g["nir"], g["red"])}
    if "green" in g:
        out["ndwi"] = _ratio(g["green"], g["nir"])
    if "swir1" in g:
        out["ndbi"] = _ratio(g["swir1"], g["nir"])
        out["ndmi"] = _ratio(g["nir"], g["swir1"])
        if "green" in g:
            out["mndwi"] = _ratio(g["green"], g["swir1"])
        if "blue" in g:
            out["bsi"] = _ratio(g["swir1"] + g["red"], g["nir"] + g["blue"])
    return out


def fit(
    image: np.ndarray,
    roles: dict[str, int],
    valid: np.ndarray | None = None,
    *,
    stride: int = 4,
    scale: float | None = None,
) -> dict:
    """Scene parameters from a strided sample: dark values per band and adapted thresholds.

    image (B, h, w) or a sample (B, N); scale as in `classify`. Returns a JSON-able dict
    {"rule_set", "scale", "dark": [per band], "thresholds": {index: value}} for `classify(params=...)`.
    """
    a = np.asarray(image, dtype=np.float32)
    if a.ndim == 3:
        m = np.ones(a.shape[1:], bool) if valid is None else np.asarray(valid, bool)
        a = a[:, ::stride, ::stride][:, m[::stride, ::stride]]
    elif a.ndim != 2:
        raise InputError(f"land cover needs a (bands, h, w) image or (bands, N) sample, got shape {a.shape}")
    a = a[:, np.all(np.isfinite(a), axis=0)]
    which = rule_set(roles)
    if scale is None:
        scale = _guess_scale(a)
    params: dict = {"rule_set": which, "scale": float(scale), "dark": [0.0] * int(a.shape[0]), "thresholds": {}}
    if which == "water" and a.shape[1]:
        from geodelta.perception.landcover import water as landcover_water

        params["thresholds"] = landcover_water.fit(a, roles)
    if which != "multispectral" or a.shape[1] == 0:
        return params
    dark = np.maximum(np.percentile(a, DARK_PERCENTILE, axis=1) - DARK_OBJECT_REFLECTANCE * scale, 0.0)
    params["dark"] = [float(d) for d in dark]
    ind = _indices(np.maximum(a - dark[:, None], 0.0) + 1.0, roles)
    th = {"ndvi": _bounded_otsu(ind["ndvi"], T_NDVI, *NDVI_RANGE)}
    if "mndwi" in ind:
        th["mndwi"] = _bounded_otsu(ind["mndwi"], T_MNDWI, *MNDWI_RANGE)
    elif "ndwi" in ind:
        th["ndwi"] = _bounded_otsu(ind["ndwi"], T_NDWI, *NDWI_RANGE)
    params["thresholds"] = th
    return params


def _local_mean_std(x: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    m = ndimage.uniform_filter(x, size, mode="reflect")
    m2 = ndimage.uniform_filter(x * x, size, mode="reflect")
    return m, np.sqrt(np.maximum(m2 - m * m, 0.0))


def _multispectral(x: np.ndarray, roles: dict[str, int], th: dict, scale: float) -> tuple[np.ndarray, np.ndarray]:
    ind = _indices(x, roles)
    ndvi = ind["ndvi"]
    t_veg = th.get("ndvi", T_NDVI)
    h, w = ndvi.shape
    cls = np.full((h, w), CODE["other"], np.uint8)
    conf = np.zeros((h, w), np.float32)
    c_veg = _conf(ndvi, t_veg, 0.1)

    # water: MNDWI (Xu 2006) when SWIR exists, else NDWI (McFeeters 1996); never vegetated.
    wi: np.ndarray | None
    if "mndwi" in ind:
        wi, t_w = ind["mndwi"], th.get("mndwi", T_MNDWI)
    else:
        wi, t_w = ind.get("ndwi"), th.get("ndwi", T_NDWI)
    veg = ndvi > t_veg
    water = (wi > t_w) & ~veg if wi is not None else np.zeros_like(veg)
    if wi is not None:
        cls[water] = CODE["water"]
        conf[water] = np.minimum(_conf(wi, t_w, 0.1), c_veg)[water]

    # vegetation: tree (dense + moist canopy) vs low vegetation; cropland from field texture.
    tree = veg & (ndvi > T_TREE_NDVI)
    c_tree = _conf(ndvi, T_TREE_NDVI, 0.1)
    if "ndmi" in ind:
        tree &= ind["ndmi"] > T_TREE_NDMI
        c_tree = np.minimum(c_tree, _conf(ind["ndmi"], T_TREE_NDMI, 0.1))
    else:  # no SWIR (NAIP): crops at peak are as green as canopies but smooth; crowns and their
        # shadows make NIR textured (3x3 coefficient of variation, same cut as below).
        nm, ns = _local_mean_std(x[roles["nir"]], 3)
        ncv = ns / np.maximum(nm, _EPS)
        tree &= ncv > T_TEXTURE_CV
        c_tree = np.minimum(c_tree, _conf(ncv, T_TEXTURE_CV, 0.05))
    low = veg & ~tree
    cls[tree] = CODE["tree"]
    conf[tree] = np.minimum(np.minimum(c_veg, c_tree), TREE_MAX_CONFIDENCE)[tree]
    cls[low] = CODE["low_vegetation"]
    conf[low] = np.minimum(c_veg, np.where(ndvi > T_TREE_NDVI, c_tree, 1.0))[low]

    # non-vegetated land: bare ground (BSI, Rikimaru 2002; smooth) vs built-up (textured / NDBI).
    land = ~veg & ~water
    bright = x[sorted(set(roles.values()))].mean(axis=0)  # role bands only: same on 6 or 13 bands
    bm, bs = _local_mean_std(bright, 3)
    cv = bs / np.maximum(bm, _EPS)
    smooth = cv < T_TEXTURE_CV
    c_tex = _conf(cv, T_TEXTURE_CV, 0.05)
    if "bsi" in ind:
        bare = land & (ind["bsi"] > T_BSI) & smooth
        c_bare = np.minimum(_conf(ind["bsi"], T_BSI, 0.1), c_tex)
    else:
        bare = land & smooth
        c_bare = c_tex
    built = land & ~bare
    cls[bare] = CODE["bare_ground"]
    conf[bare] = np.minimum(np.minimum(c_veg, c_bare), BARE_MAX_CONFIDENCE)[bare]
    cls[built] = CODE["built_up"]
    c_built = c_veg if "ndbi" not in ind else np.minimum(c_veg, 0.5 + 0.5 * _conf(ind["ndbi"], T_NDBI, 0.1))
    conf[built] = np.minimum(c_built, np.where(smooth, c_bare, 1.0))[built]

    # cropland: low vegetation or smooth bare soil inside a field patchwork (NDVI varies between
    # neighbouring parcels) with little built-up around.
    _, nd_std = _local_mean_std(ndvi, FIELD_WINDOW)
    built_share = ndimage.uniform_filter(built.astype(np.float32), CONTEXT_WINDOW, mode="reflect")
    fields = (nd_std > T_FIELD_NDVI_STD) & (built_share < MAX_BUILT_SHARE_FIELDS)
    crop = fields & low
    c_field = np.minimum(_conf(nd_std, T_FIELD_NDVI_STD, 0.05), _conf(built_share, MAX_BUILT_SHARE_FIELDS, 0.2))
    cls[crop] = CODE["cropland"]
    conf[crop] = np.minimum(np.minimum(c_veg, c_field), CROPLAND_MAX_CONFIDENCE)[crop]
    return cls, conf


def _rgb(x: np.ndarray, roles: dict[str, int], scale: float) -> tuple[np.ndarray, np.ndarray]:
    r, g, b = x[roles["red"]], x[roles["green"]], x[roles["blue"]]
    s = np.maximum(r + g + b, _EPS)
    rc, gc, bc = r / s, g / s, b / s  # chromatic coordinates (Woebbecke et al. 1995)
    exgr = (2 * gc - rc - bc) - (1.4 * rc - gc)
    bright = (r + g + b) / (3.0 * scale)
    bm, bs = _local_mean_std(bright, 5)
    cv = bs / np.maximum(bm, _EPS)
    h, w = r.shape
    cls = np.full((h, w), CODE["built_up"], np.uint8)
    conf = np.minimum(_conf(exgr, T_EXGR, 0.05), _conf(cv, T_TEXTURE_CV, 0.05))
    veg = exgr > T_EXGR
    # dark, textured vegetation -> tree; smooth -> low vegetation (canopy shadows make texture).
    tree = veg & (bright < 0.25) & (cv > 0.1)
    cls[veg] = CODE["low_vegetation"]
    cls[tree] = CODE["tree"]
    # water: blue-dominant, dark and smooth.
    water = ~veg & (bc > gc) & (bc > rc) & (bright < 0.2) & (cv < 0.1)
    cls[water] = CODE["water"]
    # bare ground: reddish-brown (r > g > b), smooth.
    bare = ~veg & ~water & (rc >= bc) & (cv < T_TEXTURE_CV)
    cls[bare] = CODE["bare_ground"]
    return cls, np.minimum(conf, RGB_MAX_CONFIDENCE).astype(np.float32)


def classify(
    image: np.ndarray,
    roles: dict[str, int],
    valid: np.ndarray | None = None,
    *,
    scale: float | None = None,
    params: dict | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Land cover of one date (or window).

    image float32 (B, h, w) raw DNs / reflectance; roles -> band index; valid bool (h, w).
    scale: DN value of reflectance 1 (10000 for Sentinel-2 L1C, 255 for 8-bit); guessed when None.
    params: from `fit` on the whole scene (shared thresholds across tiles); fitted on this window
    when None. Returns (classes uint8 (h, w), 255 where not valid; confidence float32 in [0, 1]).
    """
    a = np.asarray(image, dtype=np.float32)
    if a.ndim != 3:
        raise InputError(f"land cover needs a (bands, h, w) image, got shape {a.shape}")
    bad = [k for k, i in roles.items() if not 0 <= int(i) < a.shape[0]]
    if bad:
        raise InputError(f"band roles {bad} point past the image's {a.shape[0]} bands: fix the band roles")
    h, w = a.shape[1:]
    ok = np.ones((h, w), bool) if valid is None else np.asarray(valid, bool)
    ok = ok & np.all(np.isfinite(a), axis=0)
    which = rule_set(roles)
    if which == "none":
        cls = np.full((h, w), CODE["other"], np.uint8)
        conf = np.zeros((h, w), np.float32)
    else:
        if scale is None:
            scale = _guess_scale(a[:, ok]) if ok.any() else 1.0
        if which == "multispectral":
            p = params if params is not None else fit(a, roles, ok, stride=1 if h * w < 250_000 else 4, scale=scale)
            dark = np.asarray(p.get("dark", [0.0] * a.shape[0]), np.float32)[: a.shape[0]]
            x = np.maximum(np.nan_to_num(a) - dark[:, None, None], 0.0) + 1.0
            cls, conf = _multispectral(x, roles, p.get("thresholds", {}), scale)
        elif which == "water":
            from geodelta.perception.landcover import water as landcover_water

            p = params if params is not None else fit(a, roles, ok, stride=1 if h * w < 250_000 else 4, scale=scale)
            cls, conf = landcover_water.classify(np.nan_to_num(a), roles, p.get("thresholds", {}))
        else:
            cls, conf = _rgb(np.nan_to_num(a) + 1.0, roles, scale)
    cls[~ok] = NODATA
    conf[~ok] = 0.0
    return cls, np.clip(conf, 0.0, 1.0).astype(np.float32)


def class_shares(classes: np.ndarray, mask: np.ndarray | None = None) -> dict[str, float]:
    """Share of each class among valid (non-255) pixels, optionally inside a mask."""
    c = classes if mask is None else classes[np.asarray(mask, bool)]
    c = c[c != NODATA]
    n = max(c.size, 1)
    return {name: float((c == i).sum()) / n for i, name in enumerate(CLASSES)}
