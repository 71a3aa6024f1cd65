"""What every tile of a refinement shares (per-band stretch, mask depth), and the checks and colour helpers
of both refiners."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from scipy import ndimage

from geodelta.errors import InputError
from geodelta.perception.io.reader import AlignedPair
from geodelta.perception.io.tiling import iter_windows

HALO = 48  # px read around each tile: a superpixel (or SAM box + guard) near a seam sees its whole neighbourhood

PCT = (2, 98)  # percentiles mapped to 0 and 1 per band (the thumbnails' stretch, io._stretch)


@dataclass(frozen=True)
class SceneStats:
    """What every tile shares, so tiles refine alike: per-band PCT percentiles of each date (float (B,)
    arrays lo_a, hi_a, lo_b, hi_b) and the mean distance to the mask edge (px) of coarse change pixels."""

    lo_a: np.ndarray
    hi_a: np.ndarray
    lo_b: np.ndarray
    hi_b: np.ndarray
    depth: float | None


def window_stats(a: np.ndarray, b: np.ndarray, valid: np.ndarray, coarse: np.ndarray) -> SceneStats:
    """SceneStats of one window (for callers refining a single array)."""
    va, vb = (a[:, valid], b[:, valid]) if valid.any() else (np.zeros((a.shape[0], 1)), np.zeros((b.shape[0], 1)))
    (s, n), pa, pb = _depth_sum(coarse), np.percentile(va, PCT, axis=1), np.percentile(vb, PCT, axis=1)
    return SceneStats(pa[0], pa[1], pb[0], pb[1], s / n if n else None)


def scene_stats(pair: AlignedPair, change_tif: Path, tile: int = 1024) -> SceneStats:
    """SceneStats of a scene: percentiles of pair.sample() (a strided, seeded sample), depth from change.tif by tiles."""
    sa, sb = pair.sample()
    total = count = 0.0
    with rasterio.open(change_tif) as src:
        for read_win, _, core in iter_windows(pair.grid, tile, halo=HALO):
            c = src.read(1, window=read_win) == 1
            s, n = _depth_sum(c, core)
            total, count = total + s, count + n
    pa, pb = np.percentile(sa, PCT, axis=1), np.percentile(sb, PCT, axis=1)
    return SceneStats(pa[0], pa[1], pb[0], pb[1], total / count if count else None)


def _depth_sum(coarse: np.ndarray, core: tuple[slice, slice] | None = None) -> tuple[float, int]:
    """(sum of Euclidean distance-to-edge over coarse pixels in `core`, their count)."""
    if not coarse.any():
        return 0.0, 0
    core = core or (slice(None), slice(None))
    m = coarse[core]
    return float(ndimage.distance_transform_edt(coarse)[core][m].sum()), int(m.sum())


def _unit_bands(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """float32 (B, h, w) -> float32 (B, h, w), band i mapped from lo[i]..hi[i] to 0..1 (clipped)."""
    lo, hi = np.asarray(lo, np.float32)[:, None, None], np.asarray(hi, np.float32)[:, None, None]
    return np.clip((x - lo) / np.maximum(hi - lo, 1e-6), 0, 1).astype(np.float32)


def rgb_uint8(x: np.ndarray, valid: np.ndarray, rgb: tuple[int, int, int] | None, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """(B, h, w) bands -> HWC uint8 RGB stretched lo..hi per band (grey from band 0 when rgb is None), 0 where not valid."""
    idx = list(rgb) if rgb is not None else [0, 0, 0]
    u = _unit_bands(x[idx], np.asarray(lo)[idx], np.asarray(hi)[idx])
    return np.ascontiguousarray((u * 255).round().astype(np.uint8).transpose(1, 2, 0) * valid[..., None])


def _check(a: np.ndarray, b: np.ndarray, coarse: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    coarse, valid = np.asarray(coarse, bool), np.asarray(valid, bool)
    if a.ndim != 3 or a.shape != b.shape or a.shape[1:] != coarse.shape or coarse.shape != valid.shape:
        raise InputError(f"refine needs a, b of one (B, h, w) shape and (h, w) masks; got {a.shape}, {b.shape}, "
                         f"{coarse.shape}, {valid.shape}")
    return coarse & valid, valid
