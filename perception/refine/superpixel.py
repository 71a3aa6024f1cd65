"""The training-free refiner: SLIC superpixels of the stacked before+after bands, each kept when most of it
is coarse change."""

from __future__ import annotations

import numpy as np
from skimage.segmentation import slic

from geodelta.errors import InputError
from geodelta.perception.refine.registry import register_refiner
from geodelta.perception.refine.scene import SceneStats, _check, _unit_bands, window_stats


@register_refiner
class SuperpixelRefiner:
    """SLIC superpixels of the stacked before+after bands; a superpixel is change when >= `vote` of its valid
    pixels are coarse change (majority vote), so boundaries move onto edges present in either date.

    size_px: mean superpixel area in pixels (n_segments = valid pixels / size_px); None = from the tile's
    coarse mask, (width_scale x mean distance-to-edge of coarse pixels)² clipped to AUTO_SIZE_PX, so thin
    changes (a 2-px road on Landsat) get small superpixels and large buildings large ones. width_scale 1.5
    (benchmarks/refine.py): pixel and boundary F1 as the coarse mask's, region-count error / 4; 2.0 merges
    more (count error / 7) but loses 0.05 pixel F1 on the Landsat demo's thin streets.
    compactness: SLIC's colour-vs-space weight on bands scaled to 0..1 (scikit-image's default of 10
    assumes Lab 0..100).
    """

    name = "superpixel"
    AUTO_SIZE_PX = (9, 256)  # px, bounds of the automatic superpixel area (3x3 .. 16x16)

    def __init__(self, size_px: int | None = None, compactness: float = 0.1, vote: float = 0.5, sigma: float = 0.5,
                 width_scale: float = 1.5):
        if (size_px is not None and size_px < 4) or not 0 < vote <= 1 or compactness <= 0 or width_scale <= 0:
            raise InputError(f"superpixel refiner needs size_px >= 4 (or None = auto), 0 < vote <= 1, compactness > 0, "
                             f"width_scale > 0; got {size_px}, {vote}, {compactness}, {width_scale}")
        self.size_px = None if size_px is None else int(size_px)
        self.compactness, self.vote, self.sigma, self.width_scale = float(compactness), float(vote), float(sigma), float(width_scale)

    def size_for(self, depth: float | None) -> int:
        """Mean superpixel area (px): size_px, or the automatic size from the coarse mask's mean depth (px)."""
        if self.size_px is not None:
            return self.size_px
        if depth is None:
            return self.AUTO_SIZE_PX[1]
        return int(np.clip(round((self.width_scale * depth) ** 2), *self.AUTO_SIZE_PX))

    def segments(self, a: np.ndarray, b: np.ndarray, scene: SceneStats, size_px: int = 64) -> np.ndarray:
        """int (h, w) superpixel labels 1..n (invalid pixels hold 0 features and are outvoted later).

        No `mask=`: scikit-image seeds masked SLIC with k-means over every pixel (O(pixels x segments),
        about a minute for a 952x640 image) while the grid seeding of the unmasked path is instant."""
        feats = np.concatenate([_unit_bands(a, scene.lo_a, scene.hi_a), _unit_bands(b, scene.lo_b, scene.hi_b)])
        feats = feats.transpose(1, 2, 0)
        n = max(1, feats.shape[0] * feats.shape[1] // size_px)
        return slic(feats, n_segments=n, compactness=self.compactness, sigma=self.sigma, channel_axis=-1,
                    convert2lab=False, enforce_connectivity=True, start_label=1)

    def refine_mask(self, a, b, coarse, valid, rgb=None, core=None, scene=None) -> np.ndarray:
        coarse, valid = _check(a, b, coarse, valid)
        if not coarse.any():
            return coarse
        scene = scene or window_stats(a, b, valid, coarse)
        seg = self.segments(a, b, scene, self.size_for(scene.depth))
        n = int(seg.max()) + 1
        total = np.bincount(seg.ravel(), weights=valid.ravel(), minlength=n)  # valid pixels per superpixel
        hits = np.bincount(seg.ravel(), weights=coarse.ravel(), minlength=n)
        keep = (hits >= self.vote * total) & (total > 0)
        return keep[seg] & valid
