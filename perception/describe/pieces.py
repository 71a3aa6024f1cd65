"""Change mask -> polygons, window by window: each window's 4-connected pieces with their change_prob sums,
stitched across window borders.

A window's pieces come from one labelling (scipy) and one polygonising of the labels (rasterio shapes
yields each polygon with its label), so a piece's probability sum and pixel count are two bincounts, not a
second pass over the rasters. Pieces touching an inner window edge are unioned with their neighbours at
the end (the same union as whole-mask polygonising: integer pixel corners, see regions.py); their sums add up.

The Dask engine makes each window's pieces on the worker that scored it and hands them to a `PieceCollector`,
so polygonising runs in parallel processes and detect does not read change.tif again; `pieces_from_rasters`
does the same from files on disk (the local engine's path: in its threads, the GIL-held polygon work only
slowed the scoring down by as much, measured on the 4000 px NAIP mosaic).
"""

from __future__ import annotations

import threading
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
import shapely
from affine import Affine
from rasterio.enums import MaskFlags
from rasterio.features import shapes
from rasterio.windows import Window
from scipy import ndimage
from shapely.geometry.base import BaseGeometry

from geodelta.errors import InputError
from geodelta.perception import heap

CONNECTIVITY = 4  # rasterio.features.shapes default; two pixels touching only at a corner are two regions
CHANGE = 1  # change.tif: 1 change, 0 no change, 255 nodata
_FOUR = ndimage.generate_binary_structure(2, 1)


@dataclass
class Pieces:
    """Polygons in pixel coordinates (col, row) with the sum of change_prob (stored units) under each and the
    number of pixels that sum is over."""

    polys: list[shapely.Polygon] = field(default_factory=list)
    psum: list[float] = field(default_factory=list)
    count: list[int] = field(default_factory=list)

    def extend(self, other: Pieces) -> None:
        self.polys.extend(other.polys)
        self.psum.extend(other.psum)
        self.count.extend(other.count)


def window_pieces(mask: np.ndarray, prob: np.ndarray | None, c0: int, r0: int, width: int, height: int) -> tuple[Pieces, Pieces]:
    """(whole pieces, pieces touching an inner window edge) of bool `mask`, the window at column c0, row r0 of a
    width x height scene; `prob` the window's change_prob values (any dtype, stored units) or None."""
    whole, border = Pieces(), Pieces()
    if not mask.any():
        return whole, border
    labels, k = ndimage.label(mask, structure=_FOUR)
    on = labels[mask]
    # pixels without a finite probability (NaN in an older float file) count in neither sum; no prob: all count 1
    p = np.ones(len(on)) if prob is None else np.asarray(prob[mask], dtype=np.float64)
    ok = np.isfinite(p)
    count = np.bincount(on[ok], minlength=k + 1)
    psum = np.bincount(on[ok], weights=p[ok], minlength=k + 1)
    # Every ring's coordinates go into one list and the polygons are built in two vectorised shapely calls:
    # one shapely.Polygon per region cost 0.3 s of 1.9 on the 4000 px NAIP mosaic's 11,290 regions.
    coords: list = []
    ring_len: list[int] = []
    ring_poly: list[int] = []
    ids: list[int] = []
    for geom, value in shapes(labels, mask=mask, connectivity=CONNECTIVITY, transform=Affine.translation(c0, r0)):
        for ring in geom["coordinates"]:  # exterior, then holes: lists of (x, y)
            coords.extend(ring)
            ring_len.append(len(ring))
            ring_poly.append(len(ids))
        ids.append(int(value))
    if not ids:
        return whole, border
    rings = shapely.linearrings(np.asarray(coords, dtype=np.float64), indices=np.repeat(np.arange(len(ring_len)), ring_len))
    polys = shapely.polygons(rings, indices=np.asarray(ring_poly))  # per polygon: the first ring its shell, then holes
    h, w = mask.shape
    x0, y0, x1, y1 = shapely.bounds(polys).T
    inner = ((x0 == c0) & (c0 > 0)) | ((y0 == r0) & (r0 > 0)) | ((x1 == c0 + w) & (c0 + w < width)) | ((y1 == r0 + h) & (r0 + h < height))
    label = np.asarray(ids)
    for into, sel in ((whole, ~inner), (border, inner)):
        into.polys.extend(polys[sel].tolist())
        into.psum.extend(psum[label[sel]].tolist())
        into.count.extend(count[label[sel]].tolist())
    return whole, border


class PieceCollector:
    """Gathers window pieces as windows arrive (from any thread), then stitches them: `collector(window, out,
    prob)` with the window's uint8 change block (1 change) and its change_prob block."""

    def __init__(self, width: int, height: int):
        self.width, self.height = width, height
        self.whole, self.border = Pieces(), Pieces()
        self._lock = threading.Lock()

    def __call__(self, window: Window, out: np.ndarray, prob: np.ndarray | None) -> None:
        self.add(*window_pieces(out == CHANGE, prob, int(window.col_off), int(window.row_off), self.width, self.height))

    def add(self, whole: Pieces, border: Pieces) -> None:
        """A window's pieces made elsewhere (a Dask worker's `window_pieces`)."""
        with self._lock:
            self.whole.extend(whole)
            self.border.extend(border)

    def stitched(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(polygons, probability sums, pixel counts) of every region: border pieces unioned, invalid outlines
        repaired (make_valid). Once: the collector hands its pieces over and is empty afterwards."""
        whole, border = self.whole, self.border
        self.whole, self.border = Pieces(), Pieces()
        merged = _merge(border)
        del border
        polys = np.array(whole.polys + merged.polys, dtype=object)
        psum = np.array(whole.psum + merged.psum, dtype=np.float64)
        count = np.array(whole.count + merged.count, dtype=np.int64)
        del whole, merged
        heap.trim()
        bad = ~shapely.is_valid(polys) if len(polys) else np.zeros(0, bool)
        if not bad.any():
            return polys, psum, count
        fixed = Pieces()
        for poly, s, n, b in zip(polys, psum, count, bad):
            parts = polygon_parts(shapely.make_valid(poly)) if b else [poly]
            area = sum(p.area for p in parts) or 1.0
            for p in parts:  # the rare ring that touches itself at a pixel corner: each part keeps the piece's mean
                fixed.polys.append(p)
                fixed.psum.append(s * p.area / area)
                fixed.count.append(int(round(n * p.area / area)))
        return np.array(fixed.polys, dtype=object), np.array(fixed.psum), np.array(fixed.count, dtype=np.int64)


def _merge(pieces: Pieces) -> Pieces:
    """Union border pieces that touch (share an edge or a corner), group by group, adding up their sums.

    Groups are the connected components of the "intersects" graph (STRtree query + scipy), so each union
    handles a few pieces instead of one union of every border piece of the scene. Pieces meeting only
    at a corner come out as separate polygons again (4-connectivity); each piece lies inside exactly one
    part of its group's union, found by a point on its surface."""
    out = Pieces()
    if not pieces.polys:
        return out
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    arr = np.array(pieces.polys, dtype=object)
    psum, count = np.asarray(pieces.psum), np.asarray(pieces.count)
    i, j = shapely.STRtree(arr).query(arr, predicate="intersects")
    _, group = connected_components(coo_matrix((np.ones(len(i)), (i, j)), shape=(len(arr), len(arr))), directed=False)
    order = np.argsort(group, kind="stable")
    for members in np.split(order, np.flatnonzero(np.diff(group[order])) + 1):
        parts = polygon_parts(arr[members[0]] if len(members) == 1 else shapely.union_all(arr[members]))
        if len(parts) == 1:
            out.polys.append(parts[0])
            out.psum.append(float(psum[members].sum()))
            out.count.append(int(count[members].sum()))
            continue
        inside = shapely.STRtree(np.array(parts, dtype=object))
        member, part = inside.query(shapely.point_on_surface(arr[members]), predicate="within")
        for k, p in enumerate(parts):
            mine = members[member[part == k]]
            out.polys.append(p)
            out.psum.append(float(psum[mine].sum()))
            out.count.append(int(count[mine].sum()))
    return out


def polygon_parts(geom: BaseGeometry) -> list[shapely.Polygon]:
    """Polygon parts of a (multi)polygon or collection; lines and points (zero area) dropped."""
    if isinstance(geom, shapely.Polygon):
        return [geom] if geom.area > 0 else []
    return [p for g in getattr(geom, "geoms", []) for p in polygon_parts(g)]


def pieces_from_rasters(change_tif: Path, prob_tif: Path | None, tile: int = 2048) -> PieceCollector:
    """Every window of change.tif (and change_prob.tif, when given) through a `PieceCollector`."""
    if tile < 1:
        raise InputError(f"tile must be a positive number of pixels, got {tile}")
    with rasterio.open(change_tif) as ch, (rasterio.open(prob_tif) if prob_tif is not None else nullcontext()) as pr:
        collector = PieceCollector(ch.width, ch.height)
        # The engines' change_prob has no nodata (0 there) and an all-valid mask: its uint8 values go to
        # window_pieces as they are, as on a Dask worker; a file with nodata is read masked (NaN there)
        plain = pr is not None and pr.nodata is None and pr.mask_flag_enums[0] == [MaskFlags.all_valid]
        for r0 in range(0, ch.height, tile):
            for c0 in range(0, ch.width, tile):
                win = Window(c0, r0, min(tile, ch.width - c0), min(tile, ch.height - r0))
                out = ch.read(1, window=win)
                if not (out == CHANGE).any():
                    continue
                prob = None
                if plain and pr is not None:
                    prob = pr.read(1, window=win)
                elif pr is not None:
                    vals = pr.read(1, window=win, masked=True)
                    prob = np.where(np.ma.getmaskarray(vals), np.nan, np.asarray(vals.data, dtype=np.float64))
                collector(win, out, prob)
                heap.trim()  # the window's Python lists of vertices are freed: give the pages back
    return collector
