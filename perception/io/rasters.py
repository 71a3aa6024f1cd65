"""Low-level windowed reads of band files onto a target grid, with GDAL errors turned into InputError.

A band is read onto a target grid by the cheapest exact path: a plain windowed read when the file is
on the target grid (same CRS and pixel size, whole-pixel offset), a decimated read when the target is
a coarser, axis-aligned version of it (thumbnails), else a `WarpedVRT` onto the target grid. The valid
mask comes from the dataset mask (nodata / mask band / alpha), the warp's alpha band, and NaN checks.
"""

from __future__ import annotations

import contextlib
import math
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import ColorInterp, Resampling
from rasterio.errors import NodataShadowWarning, NotGeoreferencedWarning, RasterioError
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from geodelta.errors import InputError
from geodelta.perception.io.grid import Grid

try:  # GDAL errors that rasterio does not wrap in RasterioError
    from rasterio._err import CPLE_BaseError
except ImportError:  # pragma: no cover - private module moved
    CPLE_BaseError = RasterioError

BandRef = tuple[Path, int]  # (file, 1-based band index)
_GDAL_ERRORS = (RasterioError, CPLE_BaseError)
_EPS = 1e-4  # px: offsets closer than this to a whole pixel count as whole
_PROBE_SIZE = 256  # px, longest side of the decimated validity check


@contextmanager
def open_raster(path: Path) -> Iterator[rasterio.io.DatasetReader]:
    """rasterio.open with GDAL errors (at open or while reading) turned into an actionable InputError."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        try:
            src = rasterio.open(path)
        except _GDAL_ERRORS as e:
            raise InputError(f"cannot open {path} as a raster ({e}): pass a complete GeoTIFF, PNG, JPEG, BMP or ENVI "
                             "file; re-download or re-export it if it is truncated or corrupt") from e
        with src:
            try:
                yield src
            except _GDAL_ERRORS as e:
                raise InputError(f"reading {path} failed ({e}): the file is probably truncated or corrupt; "
                                 "re-download or re-export it") from e


def grid_of(src: rasterio.io.DatasetReader) -> Grid:
    """The native grid of an open dataset; identity transform and no CRS when not georeferenced."""
    if src.crs is None:
        return Grid(src.width, src.height)
    return Grid(src.width, src.height, src.transform, src.crs)


def probe_blocks(src: rasterio.io.DatasetReader, path: Path) -> None:
    """Read the first and last block of every band: a truncated file fails here, at open time."""
    bh, bw = src.block_shapes[0]
    last = Window((math.ceil(src.width / bw) - 1) * bw, (math.ceil(src.height / bh) - 1) * bh, bw, bh)
    last = last.intersection(Window(0, 0, src.width, src.height))
    for win in (Window(0, 0, min(bw, src.width), min(bh, src.height)), last):
        src.read(window=win)


def _valid_in(src: rasterio.io.DatasetReader, **kw) -> bool:
    if src.dataset_mask(**kw).any():
        if src.dtypes[0].startswith("float"):
            return bool(np.isfinite(src.read(**kw)).all(axis=0).any())
        return True
    return False


def has_valid_pixel(src: rasterio.io.DatasetReader) -> bool:
    """True when any pixel is valid: the first block first (one block read; a 4000 px NAIP mosaic without
    overviews spent 0.3 s per date in the decimated read), then a decimated check (uses overviews), a block
    scan only if neither finds one."""
    warnings.simplefilter("ignore", NodataShadowWarning)  # inside open_raster's catch_warnings
    bh, bw = src.block_shapes[0]
    if _valid_in(src, window=Window(0, 0, min(bw, src.width), min(bh, src.height))):
        return True
    scale = max(1.0, max(src.width, src.height) / _PROBE_SIZE)
    shape = (max(1, round(src.height / scale)), max(1, round(src.width / scale)))
    if _valid_in(src, out_shape=shape):
        return True
    return any(_valid_in(src, window=win) for _, win in src.block_windows(1))


def mask_alpha(src: rasterio.io.DatasetReader) -> int | None:
    """1-based index of the band tagged alpha when it is a transparency mask, None when there is none or it holds
    data. GDAL tags band 4 of any 4 x uint8 RGB TIFF as alpha, so NAIP-like R, G, B, NIR files often carry their
    NIR there: a mask is (almost) only fully transparent or fully opaque, data takes every level. Three 256 px
    windows (top-left, centre, bottom-right: a few block reads) decide; under 99 % at 0 or the type's maximum is data."""
    alpha = [i + 1 for i, c in enumerate(src.colorinterp) if c == ColorInterp.alpha]
    if not alpha:
        return None
    top = np.iinfo(src.dtypes[alpha[0] - 1]).max if src.dtypes[alpha[0] - 1].startswith(("uint", "int")) else 1.0
    s = min(256, src.width), min(256, src.height)
    spots = {(0, 0), (src.width - s[0], src.height - s[1]), ((src.width - s[0]) // 2, (src.height - s[1]) // 2)}
    vals = np.concatenate([src.read(alpha[0], window=Window(c, r, *s)).ravel() for c, r in sorted(spots)])
    return alpha[0] if np.isin(vals, (0, top)).mean() >= 0.99 else None


def _whole(v: float) -> bool:
    return abs(v - round(v)) < _EPS


class ReaderCache:
    """Open datasets and warped views, reused across windows of one pair (creating a WarpedVRT costs ~30x
    a tile read). Kept per thread (GDAL handles are not thread-safe) and dropped when pickled, so a pair
    can be sent to worker processes."""

    def __init__(self) -> None:
        self._local = threading.local()

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self._local = threading.local()

    def _store(self) -> dict:
        if not hasattr(self._local, "items"):
            self._local.items = {}
        return self._local.items

    def dataset(self, path: Path) -> rasterio.io.DatasetReader:
        store = self._store()
        if path not in store:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                try:
                    store[path] = rasterio.open(path)
                except _GDAL_ERRORS as e:
                    raise InputError(f"cannot open {path} as a raster ({e}): check the file is still there and "
                                     "complete; re-download or re-export it") from e
        return store[path]

    def warped(self, path: Path, target: Grid, resampling: Resampling) -> tuple[WarpedVRT, int]:
        """`path` reprojected onto `target` (float32 working type), and the 1-based index of the VRT's alpha
        band: > 0 where valid source data (nodata, mask and alpha respected) contributed to a pixel."""
        key = (path, target.width, target.height, tuple(target.transform)[:6], target.crs.to_wkt() if target.crs else None, resampling)
        store = self._store()
        if key not in store:
            src = self.dataset(path)
            alpha = mask_alpha(src)
            tagged = any(c == ColorInterp.alpha for c in src.colorinterp)
            # a source alpha mask becomes the VRT's alpha (rasterio refuses to add a second one); a band tagged
            # alpha that holds data (mask_alpha) stays a band, and validity comes from the VRT's dataset mask
            # (nodata; without nodata every warped pixel counts as valid)
            extra: dict = ({"src_alpha": alpha, "dst_alpha": alpha} if alpha else {"src_alpha": 0} if tagged
                           else {"add_alpha": True})
            vrt = WarpedVRT(src, crs=target.crs, transform=target.transform, width=target.width,
                            height=target.height, resampling=resampling, dtype="float32", **extra)
            store[key] = (vrt, alpha or (0 if tagged else vrt.count))
        return store[key]

    def close(self) -> None:
        """Close this thread's handles (warped views before their datasets)."""
        store = self._store()
        for key in sorted(store, key=lambda k: isinstance(k, Path)):
            (store[key][0] if isinstance(store[key], tuple) else store[key]).close()
        store.clear()


def _read_onto(path: Path, indexes: list[int], target: Grid, window: Window, resampling: Resampling,
               decimate: bool, cache: ReaderCache, out: np.ndarray | None = None):
    """Bands `indexes` of `path` on `target`, pixels of `window`: (float32 (n, h, w), bool valid (h, w)).
    `out`: a float32 (n, h, w) array to read into where the file is on the target grid (no copy)."""
    h, w = int(window.height), int(window.width)
    src = cache.dataset(path)
    native = grid_of(src)
    same_crs = (native.crs is None) == (target.crs is None) and (native.crs is None or native.crs == target.crs)
    m = ~native.transform @ target.transform  # target pixel -> native pixel
    if same_crs and abs(m.b) < 1e-9 and abs(m.d) < 1e-9 and m.a > 0 and m.e > 0:
        col, row = m.c + m.a * window.col_off, m.f + m.e * window.row_off
        cw, rh = m.a * w, m.e * h
        inside = col > -_EPS and row > -_EPS and col + cw < native.width + _EPS and row + rh < native.height + _EPS
        if inside and abs(m.a - 1) < 1e-9 and abs(m.e - 1) < 1e-9 and _whole(col) and _whole(row):
            win = Window(round(col), round(row), w, h)
            arr = src.read(indexes, window=win, out=out) if out is not None else src.read(indexes, window=win, out_dtype="float32")
            return arr, src.dataset_mask(window=win) > 0
        # thumbnails only: a decimated read (GDAL picks overviews); tiles always take the warp, so a
        # window read equals the same pixels of a full read
        if inside and (native.crs is None or decimate):
            win = Window(max(0.0, col), max(0.0, row), min(cw, native.width), min(rh, native.height))
            arr = src.read(indexes, window=win, out_shape=(len(indexes), h, w), resampling=resampling,
                           out_dtype="float32")
            return arr, src.dataset_mask(window=win, out_shape=(h, w)) > 0
    if native.crs is None or target.crs is None:
        raise InputError(f"{path} has no CRS and is not on the grid of the other image: pass images of the same "
                         "width and height, or georeferenced ones")
    vrt, alpha = cache.warped(path, target, resampling)
    if not alpha:  # a data band tagged alpha: no alpha in the warp (ReaderCache.warped)
        return vrt.read(list(indexes), window=window), vrt.dataset_mask(window=window) > 0
    data = vrt.read(list(indexes) + [alpha], window=window)
    return data[:-1], data[-1] > 0


def block_cache(mb: int | None) -> contextlib.AbstractContextManager:
    """GDAL's block cache bounded to `mb` MiB while the block runs (None: left as it is). The cache is one per
    process: rasterio's Env sets it with GDALSetCacheMax, so it holds for every thread, even once GDAL has
    read blocks (measured: 8 reads of 8192 x 2048 px x 4 bands grew RSS by 576 MB at the default, 127 MB under
    a 64 MiB cache, the rest being the arrays read)."""
    # rasterio passes the number to GDALSetCacheMax64, so in bytes (GDAL_CACHEMAX=256 would be a 256-byte cache)
    return contextlib.nullcontext() if mb is None else rasterio.Env(GDAL_CACHEMAX=int(mb) * 2**20)


@contextmanager
def reader_warnings_held() -> Iterator[None]:
    """The warning filters `read_side` sets, held around a whole thread pool.

    warnings.catch_warnings is process-wide, not per thread: a thread leaving its own block restores the
    filters while another thread is still reading, which let GDAL's NodataShadowWarning through to stderr."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NodataShadowWarning)
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        yield


def read_side(bands: list[BandRef], target: Grid, window: Window, resampling: Resampling, cache: ReaderCache,
              decimate: bool = False):
    """Read band refs (possibly from several files) onto `target`: float32 (B, h, w), valid bool (h, w).

    Valid means every file has data there and no band is NaN/inf. `decimate` allows a decimated read when the
    target is a coarser version of a file's grid (thumbnails). One file with every band in order (the usual
    GeoTIFF) is read straight into the result, and integer bands skip the NaN test: on a 1088 px window of
    4 uint8 bands the copy and the test were 4 ms of a ~25 ms read (both dates)."""
    h, w = int(window.height), int(window.width)
    out = np.empty((len(bands), h, w), np.float32)
    valid = np.ones((h, w), bool)
    groups: dict[Path, list[tuple[int, int]]] = {}
    for pos, (path, idx) in enumerate(bands):
        groups.setdefault(path, []).append((pos, idx))
    whole = len(groups) == 1 and [pos for pos, _ in next(iter(groups.values()))] == list(range(len(bands)))
    integer = True
    for path, items in groups.items():
        try:
            with warnings.catch_warnings():
                # nodata and an alpha band together: GDAL's mask follows nodata, which is what we want
                warnings.simplefilter("ignore", NodataShadowWarning)
                arr, v = _read_onto(path, [idx for _, idx in items], target, window, resampling, decimate, cache,
                                    out if whole else None)
            dtypes = cache.dataset(path).dtypes
        except _GDAL_ERRORS as e:
            raise InputError(f"reading {path} failed ({e}): the file is probably truncated or corrupt; "
                             "re-download or re-export it") from e
        if arr is not out:
            out[[pos for pos, _ in items]] = arr
        valid &= v
        integer = integer and all(np.issubdtype(np.dtype(dtypes[idx - 1]), np.integer) for _, idx in items)
    if not integer:  # integer bands, even resampled or warped (GDAL keeps their type), are never NaN
        valid &= np.isfinite(out).all(axis=0)
    return out, valid


__all__ = ["BandRef", "ReaderCache", "grid_of", "has_valid_pixel", "mask_alpha", "open_raster", "probe_blocks", "read_side",
           "reader_warnings_held"]
