"""Readers for GeoTIFF/COG, PNG/JPEG/BMP and ENVI files, and the aligned pair (`open_image` dispatches
Sentinel-2 band folders to perception/io/s2folder.py and STAC Items to perception/io/stac.py).

A pair lives on ONE grid: the BEFORE grid (optionally cropped to an area of interest). The after
raster, and any band not on that grid (Sentinel-2 20/60 m bands), is reprojected onto it at read
time with rasterio's `WarpedVRT`. Nodata travels as a boolean valid mask, never as a value in the
math. Everything reads by window, so memory follows the window, not the scene.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
from affine import Affine
from rasterio.enums import Resampling
from rasterio.warp import transform_bounds
from rasterio.windows import Window, from_bounds

from geodelta.contracts import SceneRef
from geodelta.errors import InputError
from geodelta.perception.io.bands import (
    ROLES,
    date_from_tags,
    generic_names,
    infer_roles,
    is_generic,
    match_bands,
    parse_band_roles,
    roles_from_declaration,
)
from geodelta.perception.io.checksum import file_sha256
from geodelta.perception.io.grid import Grid
from geodelta.perception.io.rasters import (
    BandRef,
    ReaderCache,
    grid_of,
    has_valid_pixel,
    mask_alpha,
    open_raster,
    probe_blocks,
    read_side,
    reader_warnings_held,
)
from geodelta.perception.io.read_once import ReadOnceCache
from geodelta.perception.io.tiling import iter_windows, usable_cpus

__all__ = ["ROLES", "AlignedPair", "ImageSource", "open_image", "open_pair"]

Kind = Literal["geotiff", "image", "envi", "s2folder", "stac"]
_KINDS: dict[str, Kind] = {"GTiff": "geotiff", "COG": "geotiff", "PNG": "image", "JPEG": "image", "BMP": "image", "ENVI": "envi"}
_ENVI_DATA_SUFFIXES = ("", ".img", ".dat", ".bsq", ".bil", ".bip", ".raw", ".envi")
_SAMPLE_TILE = 128  # px, edge of the strided windows `sample` reads


@dataclass
class ImageSource:
    """One date as found on disk: its files, native grid and band metadata (no pixels held)."""

    paths: list[Path]
    kind: Kind
    grid: Grid  # its own native grid; crs None when not georeferenced
    band_names: list[str]  # band descriptions, S2 names ("B01".."B12","B8A"), or "b1".."bn"
    band_roles: dict[str, int]  # canonical role -> 0-based band index, when known
    nodata: float | None
    date: str | None  # ISO date
    dtype: str
    sha256: list[str]  # one per entry of `paths`
    band_files: list[BandRef] = field(default_factory=list)  # (file, 1-based band index) per band

    @property
    def name(self) -> str:
        return str(self.paths[0].parent if self.kind == "s2folder" else self.paths[0])




def _envi_data_file(header: Path) -> Path:
    """The data file next to an ENVI .hdr (same stem, no suffix or .img/.dat/.bsq/...)."""
    for suffix in _ENVI_DATA_SUFFIXES:
        for cand in (header.with_suffix(suffix), header.with_suffix(suffix.upper())):
            if cand != header and cand.is_file():
                return cand
    raise InputError(f"ENVI header {header} has no data file next to it (looked for {header.stem} with no suffix or "
                     f"{', '.join(s for s in _ENVI_DATA_SUFFIXES if s)}): put the data file beside the header")


# One file holds at most 2**32 px (4.3 Gpx, ten 20,000 px mosaics): a header declaring more is refused up
# front, before a block scan of a corrupt or sparse file could take hours.
MAX_PIXELS = 2**32


def _open_file(path: Path) -> ImageSource:
    data = _envi_data_file(path) if path.suffix.lower() == ".hdr" else path
    with open_raster(data) as src:
        kind: Kind = _KINDS.get(src.driver, "geotiff" if src.crs else "image")
        # an alpha mask is a mask, not a band; a band tagged alpha that holds data (mask_alpha) is read as undefined
        alpha = mask_alpha(src)
        colorinterp = [c.name if c.name != "alpha" or i + 1 == alpha else "undefined" for i, c in enumerate(src.colorinterp)]
        indexes = [i + 1 for i, c in enumerate(colorinterp) if c != "alpha"]
        if not indexes:
            raise InputError(f"{path} holds only an alpha band: pass an image with colour or spectral bands")
        desc = [src.descriptions[i - 1] or "" for i in indexes]
        described = all(desc) and len(set(desc)) == len(desc)
        names = list(desc) if described else generic_names(len(indexes))
        dtype = src.dtypes[indexes[0] - 1]
        roles = infer_roles(names, [colorinterp[i - 1] for i in indexes], dtype, described, kind)
        tags = src.tags()
        paths = [data] + [Path(f) for f in src.files if f.lower().endswith(".hdr") and Path(f) != data]
        if src.width * src.height > MAX_PIXELS:
            raise InputError(f"{path} declares {src.width:,} x {src.height:,} px ({src.width * src.height / 1e9:.1f} Gpx), "
                             f"more than GeoDelta reads from one file ({MAX_PIXELS / 1e9:.1f} Gpx): cut it into tiles "
                             "(e.g. gdal_retile.py) or crop it (gdal_translate -srcwin), or check the file is not corrupt")
        probe_blocks(src, data)
        if not has_valid_pixel(src):
            raise InputError(f"{path} holds no valid pixel (every pixel is nodata={src.nodata} or masked): "
                             "pass an image with data, or fix its nodata value (e.g. gdal_edit.py -unsetnodata)")
        source = ImageSource(
            paths=paths, kind=kind, grid=grid_of(src), band_names=names, band_roles=roles,
            nodata=src.nodata, date=date_from_tags(tags, path.name), dtype=dtype, sha256=[],
            band_files=[(data, i) for i in indexes],
        )
    source.sha256 = [file_sha256(p) for p in paths]
    return source


def open_image(path: str | Path) -> ImageSource:
    """Open one date: a GeoTIFF/COG, PNG/JPEG/BMP, ENVI (.hdr or data file), a Sentinel-2 band folder, or a
    local STAC Item JSON (perception/io/stac.py).

    Reads metadata and a few blocks only (to catch truncated files early); raises InputError when the
    file is missing, unreadable, corrupt or holds no valid pixel."""
    p = Path(path).expanduser()
    if not p.exists():
        raise InputError(f"{p} does not exist: check the path (a GeoTIFF, PNG/JPEG/BMP, ENVI file, a folder of "
                         "Sentinel-2 band files, or a STAC Item JSON)")
    if p.suffix.lower() == ".json" and p.is_file():
        from geodelta.perception.io.stac import open_stac_item

        return open_stac_item(p)
    if p.is_dir():
        from geodelta.perception.io.s2folder import open_s2_folder

        return open_s2_folder(p)
    return _open_file(p)


def _resampling(name: str | Resampling) -> Resampling:
    if isinstance(name, Resampling):
        return name
    try:
        return Resampling[name]
    except KeyError:
        raise InputError(f"unknown resampling {name!r}: use 'bilinear' (continuous bands) or 'nearest' "
                         "(class rasters)") from None


def _thumb_grid(grid: Grid, max_size: int) -> Grid:
    """The same footprint as `grid` with its longest side at most `max_size` pixels."""
    scale = max(grid.width, grid.height) / max_size
    if scale <= 1:
        return grid
    tw, th = max(1, round(grid.width / scale)), max(1, round(grid.height / scale))
    return Grid(tw, th, grid.transform @ Affine.scale(grid.width / tw, grid.height / th), grid.crs)


def _stretch(arr: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(3, h, w) float -> (h, w, 3) uint8 with a 2-98 percentile stretch per band over valid pixels."""
    out = np.zeros(arr.shape[1:] + (3,), np.uint8)
    if not valid.any():
        return out
    for i in range(3):
        lo, hi = np.percentile(arr[i][valid], (2, 98))
        scaled = np.clip((arr[i] - lo) / max(hi - lo, 1e-6), 0, 1) * 255
        out[..., i] = np.where(valid, scaled, 0).astype(np.uint8)
    return out


@dataclass
class AlignedPair:
    """Two dates on one grid (the BEFORE grid, or its crop to the AOI), with matched bands."""

    before: ImageSource
    after: ImageSource
    grid: Grid
    band_names: list[str]  # the matched bands, in the order read() returns them
    band_roles: dict[str, int] = field(default_factory=dict)  # role -> index into band_names
    before_bands: list[BandRef] = field(default_factory=list)
    after_bands: list[BandRef] = field(default_factory=list)
    resampling: str = "bilinear"  # how the after raster (and off-grid bands) are resampled
    # where band_roles come from: "declared" (the user's --bands), "named" (Sentinel-2 names or band
    # descriptions) or "assumed" (colour interpretation / the 8-bit RGB(N) convention: a guess)
    roles_source: str = "named"
    readers: ReaderCache = field(default_factory=ReaderCache, repr=False, compare=False)
    _cache: ReadOnceCache = field(default_factory=ReadOnceCache, repr=False, compare=False)  # thumbnails, samples

    def close(self) -> None:
        """Close the file handles this thread holds (they reopen on the next read)."""
        self.readers.close()

    def __enter__(self) -> AlignedPair:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """a, b: float32 (B, h, w) on self.grid; valid: bool (h, w), True where both dates have data.

        Invalid pixels hold 0 in a and b: use `valid`, never the value."""
        window = Window(*map(int, (window.col_off, window.row_off, window.width, window.height)))
        if (window.col_off < 0 or window.row_off < 0 or window.width < 1 or window.height < 1
                or window.col_off + window.width > self.grid.width or window.row_off + window.height > self.grid.height):
            raise ValueError(f"window {window} is not inside the {self.grid.width}x{self.grid.height} grid")
        rs = _resampling(self.resampling)
        a, va = read_side(self.before_bands, self.grid, window, rs, self.readers)
        b, vb = read_side(self.after_bands, self.grid, window, rs, self.readers)
        valid = va & vb
        a[:, ~valid] = 0
        b[:, ~valid] = 0
        return a, b, valid

    def sample(self, max_pixels: int = 200_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """a, b: float32 (B, N) valid pixels from a lattice of windows spread over the whole scene, N <= max_pixels.

        About 2 * max_pixels pixels are read, then a seeded random subset is kept (for fitting). Read once per
        pair (the change masker and the land cover both fit on it) and shared read-only."""
        return self._cache.get_shared(("sample", max_pixels, seed), lambda: self._read_sample(max_pixels, seed))

    def _read_sample(self, max_pixels: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        wins = list(iter_windows(self.grid, _SAMPLE_TILE))
        n_rows = -(-self.grid.height // _SAMPLE_TILE)
        n_cols = -(-self.grid.width // _SAMPLE_TILE)
        k = min(len(wins), max(1, math.ceil(2 * max_pixels / _SAMPLE_TILE**2)))
        kr = min(n_rows, max(1, round(math.sqrt(k * n_rows / n_cols))))
        kc = min(n_cols, max(1, math.ceil(k / kr)))
        rows = np.unique(np.linspace(0, n_rows - 1, kr).round().astype(int))
        cols = np.unique(np.linspace(0, n_cols - 1, kc).round().astype(int))
        cores = [wins[r * n_cols + c][1] for r in rows for c in cols]
        # Each 128 px window decodes whole blocks of both files (0.22 s for the ~25 windows of a tiled NAIP
        # mosaic, a fifth of its change stage), so they are read on every CPU (GDAL decodes without the GIL);
        # map keeps their order, so the sample is the same.
        with reader_warnings_held(), ThreadPoolExecutor(min(len(cores), usable_cpus()), thread_name_prefix="geodelta-sample") as pool:
            parts = [(a[:, valid], b[:, valid]) for a, b, valid in pool.map(self.read, cores)]
        parts_a, parts_b = [p[0] for p in parts], [p[1] for p in parts]
        a, b = np.concatenate(parts_a, axis=1), np.concatenate(parts_b, axis=1)
        if a.shape[1] == 0:
            raise InputError(f"no pixel is valid in both {self.before.name} and {self.after.name}: check their nodata "
                             "values and that the two images cover the same place")
        if a.shape[1] > max_pixels:
            keep = np.sort(np.random.default_rng(seed).choice(a.shape[1], max_pixels, replace=False))
            a, b = a[:, keep], b[:, keep]
        a.flags.writeable = b.flags.writeable = False
        return a, b

    def rgb(self, which: Literal["before", "after"], max_size: int = 1024) -> np.ndarray:
        """uint8 (h, w, 3) true-colour thumbnail on self.grid's footprint, longest side <= max_size.

        Uses the source's red/green/blue bands (grey from its first band when it has none); decimated read, once
        per (date, size): detect reads them ahead on a helper thread while it polygonises, render uses them."""
        return self._cache.get(("rgb", which, max_size), lambda: self._read_rgb(which, max_size))

    def _read_rgb(self, which: Literal["before", "after"], max_size: int) -> np.ndarray:
        source = self._source(which)
        if all(r in source.band_roles for r in ("red", "green", "blue")):
            bands = [source.band_files[source.band_roles[r]] for r in ("red", "green", "blue")]
        else:
            bands = [source.band_files[0]] * 3
        thumb = _thumb_grid(self.grid, max_size)
        rs = Resampling.average if thumb is not self.grid else _resampling(self.resampling)
        arr, valid = read_side(bands, thumb, Window(0, 0, thumb.width, thumb.height), rs, self.readers, decimate=True)
        return _stretch(arr, valid)

    def scene_ref(self, which: Literal["before", "after"]) -> SceneRef:
        """What was read for one date, with the grid the pair is aligned to."""
        source = self._source(which)
        g = self.grid
        return SceneRef(
            paths=[str(p) for p in source.paths], sha256=list(source.sha256),
            crs=g.crs.to_string() if g.crs else None, bounds=g.bounds if g.crs else None,
            resolution=g.resolution if g.crs else None, width=g.width, height=g.height,
            dates=[source.date], bands=list(self.band_names),
        )

    def _source(self, which: str) -> ImageSource:
        if which not in ("before", "after"):
            raise ValueError(f"which must be 'before' or 'after', got {which!r}")
        return self.before if which == "before" else self.after


def _crop_to_aoi(source: ImageSource, aoi: tuple[float, float, float, float]) -> Grid:
    """The before grid cut to a lon/lat (west, south, east, north) box, rounded outward to whole pixels."""
    w, s, e, n = aoi
    if not (w < e and s < n):
        raise InputError(f"area of interest {aoi} must be (west, south, east, north) in degrees with west < east "
                         "and south < north")
    g = source.grid
    win = from_bounds(*transform_bounds("EPSG:4326", g.crs, w, s, e, n, densify_pts=21), transform=g.transform)
    c0 = max(0, math.floor(win.col_off + 1e-6))
    r0 = max(0, math.floor(win.row_off + 1e-6))
    c1 = min(g.width, math.ceil(win.col_off + win.width - 1e-6))
    r1 = min(g.height, math.ceil(win.row_off + win.height - 1e-6))
    if c1 <= c0 or r1 <= r0:
        lonlat = tuple(round(v, 5) for v in transform_bounds(g.crs, "EPSG:4326", *g.bounds))
        raise InputError(f"the area of interest {aoi} (lon/lat W,S,E,N) misses {source.name}, which covers {lonlat}: "
                         "pass an area inside the scene, or none")
    return Grid(c1 - c0, r1 - r0, g.transform @ Affine.translation(c0, r0), g.crs)


def _check_overlap(before: ImageSource, after: ImageSource, grid: Grid) -> None:
    try:
        ab = transform_bounds(after.grid.crs, grid.crs, *after.grid.bounds, densify_pts=21)
    except Exception as e:  # pyproj/GDAL raise several types for impossible transforms
        raise InputError(f"cannot transform the footprint of {after.name} ({after.grid.crs}) into the CRS of "
                         f"{before.name} ({grid.crs}): {e}. Reproject the after image to the before CRS") from e
    gb = grid.bounds
    if max(ab[0], gb[0]) >= min(ab[2], gb[2]) or max(ab[1], gb[1]) >= min(ab[3], gb[3]):
        raise InputError(f"{after.name} does not overlap {before.name}: its footprint {tuple(round(v, 3) for v in ab)} "
                         f"in {grid.crs} misses {tuple(round(v, 3) for v in gb)}. Pass two images of the same place")


def open_pair(
    before: str | Path | ImageSource,
    after: str | Path | ImageSource,
    aoi: tuple[float, float, float, float] | None = None,
    resampling: str = "bilinear",
    bands: str | list[str] | None = None,
) -> AlignedPair:
    """Open two dates and put them on one grid (the before grid, cropped to `aoi` lon/lat W,S,E,N if given).

    The after raster is reprojected onto that grid on read (WarpedVRT, `resampling`; use 'nearest' for
    class rasters). Bands are matched by name/role. `bands` declares the role of each band in file order
    ("swir1,nir,green", see bands.parse_band_roles) for files that carry none; it overrides what the
    files say. Raises InputError when the pair cannot be aligned."""
    b = before if isinstance(before, ImageSource) else open_image(before)
    a = after if isinstance(after, ImageSource) else open_image(after)
    _resampling(resampling)
    if b.grid.georeferenced != a.grid.georeferenced:
        plain, geo, role = (a, b, "after") if b.grid.georeferenced else (b, a, "before")
        raise InputError(f"{plain.name} has no CRS (not georeferenced) but {geo.name} has {geo.grid.crs}: "
                         f"georeference or reproject it, or pass a georeferenced {role} image "
                         "(or two plain images of the same size)")
    if not b.grid.georeferenced:
        if b.grid.shape != a.grid.shape:
            raise InputError(f"{b.name} is {b.grid.width}x{b.grid.height} px but {a.name} is "
                             f"{a.grid.width}x{a.grid.height} px: images without georeference must have the same "
                             "width and height; crop or resize one, or pass georeferenced GeoTIFFs")
        if aoi is not None:
            raise InputError(f"an area of interest needs georeferenced images, and {b.name} has no CRS: "
                             "drop the area, or pass georeferenced GeoTIFFs")
        grid = b.grid
    else:
        grid = _crop_to_aoi(b, aoi) if aoi is not None else b.grid
        _check_overlap(b, a, grid)
    matched = match_bands(b.band_names, b.band_roles, a.band_names, a.band_roles)
    if matched is None:
        raise InputError(f"cannot match the bands of {b.name} {b.band_names} with those of {a.name} {a.band_names}: "
                         "pass images with the same bands in the same order, or with band descriptions naming "
                         "blue/green/red/nir/swir")
    names, bi, ai, roles = matched
    if bands is not None:
        try:
            declared = parse_band_roles(bands) or []  # None only for bands=None, excluded above
        except ValueError as e:
            raise InputError(str(e)) from None
        if len(declared) != len(b.band_names) or len(declared) != len(a.band_names):
            raise InputError(f"--bands declares {len(declared)} band roles but {b.name} has {len(b.band_names)} bands and "
                             f"{a.name} {len(a.band_names)}: give one role per band, in file order")
        roles = roles_from_declaration(declared)
        names = [r or n for r, n in zip(declared, b.band_names)] if is_generic(b.band_names) else list(b.band_names)
        bi = ai = list(range(len(declared)))
        b, a = replace(b, band_roles=dict(roles)), replace(a, band_roles=dict(roles))
        source = "declared"
    else:
        source = "named" if not is_generic(names) else "assumed"
    return AlignedPair(
        before=b, after=a, grid=grid, band_names=names, band_roles=roles, roles_source=source,
        before_bands=[b.band_files[i] for i in bi], after_bands=[a.band_files[i] for i in ai],
        resampling=resampling if isinstance(resampling, str) else resampling.name,
    )
