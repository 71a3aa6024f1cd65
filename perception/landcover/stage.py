"""The land-cover stage: classify both dates tile by tile and give each change region its from / to class."""

from __future__ import annotations

from typing import Any

import numpy as np
from affine import Affine
from rasterio.features import rasterize

from geodelta.contracts import Progress, Region
from geodelta.perception.describe import regions as describe
from geodelta.perception.io.reader import AlignedPair
from geodelta.perception.io.tiling import iter_windows
from geodelta.perception.landcover import rules as landcover
from geodelta.perception.landcover import transitions
from geodelta.perception.landcover.building_change import CAVEAT as BUILDING_CAVEAT
from geodelta.perception.landcover.building_change import building_change_classes, is_building_mask


def landcover_stage(pair: AlignedPair, regions: list[Region], *, tile: int = 1024, progress: Progress | None = None,
                    change_params: dict[str, Any] | None = None) -> tuple[list[Region], dict[str, Any]]:
    """Classify both dates tile by tile and give each region its majority from/to class (S2M `what`).

    Class histograms are accumulated per region across tiles, so a region split by a tile edge gets
    the same classes as if the scene were read whole. `change_params` (the masker's fitted params) says
    whether the mask is building change; its regions then get built-up on one side (building_change.py).
    """
    out, info = _classes(pair, regions, tile, progress)
    if is_building_mask(change_params) and info.get("classes_known"):
        out, counts = building_change_classes(out)
        info = info | {"building_change": counts, "caveat": " ".join(filter(None, (info.get("caveat"), BUILDING_CAVEAT))),
                       "transitions": transitions.transition_counts(out)}
    return out, info


def _classes(pair: AlignedPair, regions: list[Region], tile: int, progress: Progress | None) -> tuple[list[Region], dict[str, Any]]:
    """Each region's classes from the learned RGB classifier or the spectral / colour rules."""
    from geodelta.perception.landcover import rgb as landcover_learned  # onnxruntime: only when asked

    roles = dict(pair.band_roles)  # band role -> index into the arrays pair.read() returns
    rule_set = landcover.rule_set(roles)
    grid = pair.grid
    if rule_set == "none" or not regions:
        return regions, {"rule_set": rule_set, "classes_known": False, "roles": roles}
    if rule_set == "rgb" and landcover_learned.available():  # learned chips beat the colour rules on AID (model card)
        return landcover_learned.region_classes(pair, regions, roles, progress)

    geoms = [(r.id, g, r.bbox_px) for r, g in zip(regions, describe.pixel_polygons(regions, grid))]
    # One set of scene-adapted thresholds per date, fitted on a scene-wide sample, so every tile
    # classifies with the same rules (no seams at tile edges).
    sample_a, sample_b = pair.sample()
    params_a, params_b = landcover.fit(sample_a, roles), landcover.fit(sample_b, roles)
    hist = transitions.TransitionHistogram(max(r.id for r in regions) + 1)
    windows = list(iter_windows(grid, tile, halo=0))
    for i, (win, _, _) in enumerate(windows):
        c0, r0 = int(win.col_off), int(win.row_off)
        c1, r1 = c0 + int(win.width), r0 + int(win.height)
        shapes = [(g, rid) for rid, g, (bc0, br0, bc1, br1) in geoms if bc0 < c1 and bc1 > c0 and br0 < r1 and br1 > r0]
        if not shapes:
            continue
        labels = rasterize(shapes, out_shape=(int(win.height), int(win.width)), transform=Affine.translation(c0, r0), fill=0, dtype="int32")
        a, b, valid = pair.read(win)
        cls_a, conf_a = landcover.classify(a, roles, valid, params=params_a)
        cls_b, conf_b = landcover.classify(b, roles, valid, params=params_b)
        hist.add(np.where(valid, labels, 0), cls_a, cls_b, conf_a, conf_b)
        if progress:
            progress("land cover", i + 1, len(windows))
    out, counts = hist.apply(regions)
    return out, {"rule_set": rule_set, "classes_known": True, "caveat": landcover.CAVEATS.get(rule_set), "roles": roles, "transitions": counts}
