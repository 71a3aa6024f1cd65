"""Region refinement (ViLaCD-R1's second stage): coarse change regions -> precise boundaries.

A refiner snaps a tile's coarse change mask to image structure. Two ship, in one registry:
`superpixel` (training-free: SLIC superpixels of the stacked before+after bands, each kept when
most of it is coarse change) and `sam` (segment-anything: one image embedding per tile, one box +
one point prompt per coarse component). Without a SAM checkpoint the superpixel refiner runs, and
every refined Region's `refined_by` says which refiner drew it. torch is imported only when SAM
is asked for.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import rasterio
from scipy import ndimage
from skimage.segmentation import find_boundaries, slic

from geodelta.contracts import NODATA_U8, Region
from geodelta.errors import ConfigError, InputError, MissingDependencyError
from geodelta.perception.describe import regions as describe
from geodelta.perception.io.reader import AlignedPair
from geodelta.perception.io.tiling import iter_windows
from geodelta.perception.learned.device import resolve_device
from geodelta.perception.render.outputs import write_geotiff

HALO = 48  # px read around each tile: a superpixel (or SAM box + guard) near a seam sees its whole neighbourhood
SAM_MODEL_TYPES = ("vit_b", "vit_l", "vit_h")


@runtime_checkable
class Refiner(Protocol):
    """refine_mask on one window; tiles are independent (no fit)."""

    name: str

    def refine_mask(self, a: np.ndarray, b: np.ndarray, coarse: np.ndarray, valid: np.ndarray,
                    rgb: tuple[int, int, int] | None = None, core: tuple[slice, slice] | None = None,
                    scene: SceneStats | None = None) -> np.ndarray:
        """a, b: float32 (B, h, w) before/after bands; coarse, valid: bool (h, w); rgb: band indices of
        red, green, blue (None: grey from band 0); core: the (rows, cols) slices whose result is kept (the
        rest is halo; None = all); scene: scene-wide stats (None: from this window). Returns the refined
        bool (h, w) mask, False where not valid."""
        ...


REFINERS: dict[str, type] = {}


def register_refiner(cls: type[Any]) -> type[Any]:
    """Class decorator: add a refiner class to `REFINERS` under its `name`."""
    REFINERS[cls.name] = cls
    return cls


def list_refiners() -> list[str]:
    return sorted(REFINERS)


def get_refiner(name: str, **options: Any) -> Refiner:
    """A refiner instance by registry name; unknown names raise InputError listing the choices."""
    try:
        cls = REFINERS[name]
    except KeyError:
        raise InputError(f"unknown refiner {name!r}: choose one of {', '.join(list_refiners())} (or 'auto')") from None
    return cls(**options)


def refiner_from_settings(settings: Any, name: str = "auto") -> Refiner:
    """`auto`: SAM when settings.sam_checkpoint is set, else superpixels. `sam` without a checkpoint or
    with a missing file is a ConfigError that says how to fix it."""
    ckpt = settings.sam_checkpoint
    if name == "auto":
        name = "sam" if ckpt else "superpixel"
    if name != "sam":
        return get_refiner(name)
    if not ckpt:
        raise ConfigError("the SAM refiner needs a checkpoint: set GEODELTA_SAM_CHECKPOINT to a segment-anything .pth "
                          "file (and GEODELTA_SAM_MODEL_TYPE to vit_b|vit_l|vit_h), or use refiner='superpixel'")
    return get_refiner("sam", checkpoint=ckpt, model_type=settings.sam_model_type, device=settings.device)


# ---------------------------------------------------------------- shared helpers

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


# ---------------------------------------------------------------- superpixels (training-free)


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


# ---------------------------------------------------------------- SAM (segment-anything)


@functools.lru_cache(maxsize=2)
def load_sam(checkpoint: str, model_type: str, device: str, builder: Callable[[], Any] | None = None) -> Any:
    """A SamPredictor, loaded once per process per (checkpoint, type, device, builder).

    segment-anything's builders call torch.load without map_location, so the model is built with
    checkpoint=None and the state dict loaded on the CPU (weights_only) first (ARCHITECTURE s.10).
    `builder` (tests): a callable returning an untrained `Sam`, instead of sam_model_registry[model_type].
    """
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise ConfigError(f"SAM checkpoint {path} does not exist: set GEODELTA_SAM_CHECKPOINT to a segment-anything "
                          "checkpoint file (e.g. sam_vit_b_01ec64.pth), or unset it to use the superpixel refiner")
    try:
        import torch
        from segment_anything import SamPredictor, sam_model_registry
    except ImportError as e:
        raise MissingDependencyError(f"the SAM refiner needs torch and segment-anything ({e}): pip install 'geodelta[sam]', "
                          "or use refiner='superpixel'") from None
    if builder is None:
        if model_type not in SAM_MODEL_TYPES:
            raise ConfigError(f"unknown SAM model type {model_type!r}: set GEODELTA_SAM_MODEL_TYPE to one of "
                              f"{', '.join(SAM_MODEL_TYPES)}")
        builder = functools.partial(sam_model_registry[model_type], checkpoint=None)
    device = resolve_device(device)
    model = builder()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except Exception as e:  # torch raises RuntimeError/UnpicklingError/KeyError for wrong files
        raise ConfigError(f"{path} is not a {model_type} segment-anything checkpoint ({str(e)[:200]}): set "
                          "GEODELTA_SAM_MODEL_TYPE to the type it was trained as (vit_b|vit_l|vit_h)") from None
    model.to(device).eval()
    return SamPredictor(model)


@register_refiner
class SamRefiner:
    """segment-anything prompted per coarse component: its bounding box plus one positive point (the pixel
    farthest from its edge). One `set_image` per tile, prompts decoded in batches of `batch`.

    Guard: SAM's mask is kept only within `grow_px` pixels (a disk) of the coarse component, so a box
    prompt cannot grab the whole field or building block around a small change; where SAM's predicted
    IoU is under `min_score` or its guarded mask is empty, the coarse component is kept as it was.
    Components under `min_prompt_px` pixels are kept as they are (too small to prompt).
    """

    name = "sam"

    def __init__(self, checkpoint: str | Path, model_type: str = "vit_b", device: str = "auto",
                 grow_px: int = 8, min_score: float = 0.5, min_prompt_px: int = 4, batch: int = 32,
                 builder: Callable[[], Any] | None = None):
        self.checkpoint, self.model_type, self.device = str(checkpoint), model_type, device
        self.grow_px, self.min_score, self.min_prompt_px, self.batch = int(grow_px), float(min_score), int(min_prompt_px), int(batch)
        self.predictor = load_sam(self.checkpoint, model_type, device, builder)

    def prompts(self, coarse: np.ndarray) -> tuple[np.ndarray, list[tuple[slice, slice]], np.ndarray, np.ndarray]:
        """Components of `coarse` (4-connected): labels, bbox slices, XYXY pixel boxes (N, 4) and points (N, 2) x, y."""
        labels, n = ndimage.label(coarse)
        objs = ndimage.find_objects(labels)
        boxes, points = np.zeros((n, 4), np.float32), np.zeros((n, 2), np.float32)
        for k, (rs, cs) in enumerate(objs):
            comp = labels[rs, cs] == k + 1
            dist = ndimage.distance_transform_edt(np.pad(comp, 1))[1:-1, 1:-1]
            r, c = np.unravel_index(int(np.argmax(dist)), dist.shape)
            boxes[k] = (cs.start, rs.start, cs.stop, rs.stop)
            points[k] = (cs.start + c + 0.5, rs.start + r + 0.5)  # pixel centre, SAM's (x, y) input frame
        return labels, objs, boxes, points

    def _decode(self, boxes: np.ndarray, points: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        import torch

        p = self.predictor
        with torch.inference_mode():
            bt = p.transform.apply_boxes_torch(torch.as_tensor(boxes, device=p.device), size)
            pt = p.transform.apply_coords_torch(torch.as_tensor(points[:, None, :], device=p.device), size)
            lt = torch.ones(pt.shape[:2], dtype=torch.int, device=p.device)
            masks, iou, _ = p.predict_torch(pt, lt, boxes=bt, multimask_output=False)
        return masks[:, 0].cpu().numpy(), iou[:, 0].float().cpu().numpy()

    def refine_mask(self, a, b, coarse, valid, rgb=None, core=None, scene=None) -> np.ndarray:
        coarse, valid = _check(a, b, coarse, valid)
        out = np.zeros_like(coarse)
        if not coarse.any():
            return out
        labels, objs, boxes, points = self.prompts(coarse)
        h, w = coarse.shape
        todo = []
        for k, (rs, cs) in enumerate(objs):
            small = int((labels[rs, cs] == k + 1).sum()) < self.min_prompt_px
            outside = core is not None and (rs.stop <= core[0].start or rs.start >= core[0].stop
                                            or cs.stop <= core[1].start or cs.start >= core[1].stop)
            if small:
                out[rs, cs] |= labels[rs, cs] == k + 1
            elif not outside:
                todo.append(k)
        if not todo:
            return out & valid
        scene = scene or window_stats(a, b, valid, coarse)
        self.predictor.set_image(rgb_uint8(b, valid, rgb, scene.lo_b, scene.hi_b))  # one embedding per tile, HWC uint8
        disk = _disk(self.grow_px)
        g = self.grow_px
        for i in range(0, len(todo), self.batch):
            ks = todo[i:i + self.batch]
            masks, scores = self._decode(boxes[ks], points[ks], (h, w))
            for m, s, k in zip(masks, scores, ks):
                rs, cs = objs[k]
                r0, r1, c0, c1 = max(rs.start - g, 0), min(rs.stop + g, h), max(cs.start - g, 0), min(cs.stop + g, w)
                comp = labels[r0:r1, c0:c1] == k + 1
                guard = ndimage.binary_dilation(comp, structure=disk) if g > 0 else comp
                snapped = m[r0:r1, c0:c1] & guard
                out[r0:r1, c0:c1] |= snapped if (s >= self.min_score and snapped.any()) else comp
        return out & valid


def _disk(r: int) -> np.ndarray:
    y, x = np.ogrid[-r:r + 1, -r:r + 1]
    return x * x + y * y <= r * r


# ---------------------------------------------------------------- the stage


def refine_stage(pair: AlignedPair, change_tif: Path, prob_tif: Path | None, out_dir: Path, refiner: Refiner, *,
                 tile: int = 1024, min_area_m2: float = 0.0, min_area_px: int = 16,
                 progress: Callable[[str, int, int], None] | None = None) -> tuple[Path, list[Region]]:
    """Refine change.tif tile by tile (with a HALO), write `out_dir/change_refined.tif` (same 1/0/255
    convention and grid), re-polygonise it and stamp `refined_by` on every region (largest first)."""
    grid = pair.grid
    out_dir = Path(out_dir)
    out = out_dir / "change_refined.tif"
    roles = pair.band_roles
    rgb = (roles["red"], roles["green"], roles["blue"]) if all(r in roles for r in ("red", "green", "blue")) else None
    with rasterio.open(change_tif) as src:
        if (src.width, src.height) != (grid.width, grid.height):
            raise InputError(f"{change_tif} is {src.width}x{src.height} px but the scene is {grid.width}x{grid.height}: "
                             "refine the change raster of this scene's analysis")
    scene = scene_stats(pair, change_tif, tile)
    windows = list(iter_windows(grid, tile, halo=HALO))
    with rasterio.open(change_tif) as src, write_geotiff(out, grid, "uint8", NODATA_U8) as dst:
        for i, (read_win, core_win, core) in enumerate(windows):
            c = src.read(1, window=read_win)
            a, b, valid = pair.read(read_win)
            valid &= c != NODATA_U8
            coarse = c == 1
            if coarse[core].any():
                refined = refiner.refine_mask(a, b, coarse, valid, rgb, core=core, scene=scene)
            else:
                refined = coarse
            dst.write(np.where(valid, refined, NODATA_U8).astype(np.uint8)[core], 1, window=core_win)
            if progress:
                progress("refine", i + 1, len(windows))
    regions = describe.regions_from_rasters(out, prob_tif, grid, min_area_m2=min_area_m2,
                                            min_area_px=min_area_px if not grid.georeferenced else 0)
    return out, [r.model_copy(update={"refined_by": refiner.name}) for r in regions]


# ---------------------------------------------------------------- boundary metrics


def boundary_f1(pred: np.ndarray, truth: np.ndarray, tol: float = 2.0, valid: np.ndarray | None = None) -> dict[str, float]:
    """Boundary precision / recall / F1: a boundary pixel (skimage find_boundaries, mode 'inner') matches when
    the other mask has a boundary pixel within `tol` px (Euclidean). Both masks empty -> 1.0 (as metrics.scores)."""
    pred, truth = np.asarray(pred, bool), np.asarray(truth, bool)
    if valid is not None:
        pred, truth = pred & valid, truth & valid
    bp, bt = find_boundaries(pred, mode="inner"), find_boundaries(truth, mode="inner")
    if valid is not None:
        bp, bt = bp & valid, bt & valid
    if not bp.any() and not bt.any():
        return {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    if not bp.any() or not bt.any():
        return {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    near_t = ndimage.distance_transform_edt(~bt) <= tol
    near_p = ndimage.distance_transform_edt(~bp) <= tol
    p, r = float((bp & near_t).sum() / bp.sum()), float((bt & near_p).sum() / bt.sum())
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}


def count_error(pred: np.ndarray, truth: np.ndarray) -> float:
    """|#components(pred) - #components(truth)| / max(#components(truth), 1), 4-connected."""
    n_p, n_t = ndimage.label(pred)[1], ndimage.label(truth)[1]
    return abs(n_p - n_t) / max(n_t, 1)
