"""Property test of the readers: damaged or odd files give a clean InputError or a valid result.

Truncated, bit-flipped and zero-length GeoTIFF / PNG / JPEG / ENVI bytes, a TIFF header declaring
100,000 x 100,000 px, NaN / inf floats, 1 x 1 px images, 16-bit, palette and RGBA PNGs, all-nodata,
pairs of different sizes: never a crash, a hang (hypothesis deadline) or a multi-GB allocation
(resident memory is checked after every example).
"""

from __future__ import annotations

import io
import struct
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import rasterio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from rasterio.transform import from_origin

from geodelta.errors import InputError
from geodelta.perception.io.reader import open_image, open_pair

MAX_SECONDS = 20  # per example, open + read of a window
MAX_RSS_GROWTH = 1.5 * 2**30  # bytes: a 100k x 100k header must not be allocated (30 GB as uint8 RGB)


def _png(arr: np.ndarray, mode: str | None = None, palette: bool = False) -> bytes:
    img = Image.fromarray(arr, mode) if mode else Image.fromarray(arr)
    if palette:
        img = img.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=80)
    return buf.getvalue()


def _geotiff(path: Path, arr: np.ndarray, nodata: float | None = None, driver: str = "GTiff") -> None:
    profile = {"driver": driver, "width": arr.shape[2], "height": arr.shape[1], "count": arr.shape[0],
               "dtype": arr.dtype.name, "crs": "EPSG:32651", "transform": from_origin(500000, 3500000, 30, 30)}
    if nodata is not None:
        profile["nodata"] = nodata
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(arr)


def _huge_tiff_header() -> bytes:
    """A minimal little-endian TIFF whose IFD declares 100,000 x 100,000 px, 8-bit RGB, one strip of 3 bytes."""
    entries = [(256, 4, 1, 100_000), (257, 4, 1, 100_000), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
               (273, 4, 1, 8 + 2 + 9 * 12 + 4), (277, 3, 1, 1), (278, 4, 1, 100_000), (279, 4, 1, 3)]
    ifd = struct.pack("<H", len(entries)) + b"".join(
        struct.pack("<HHI", tag, typ, n) + (struct.pack("<HH", val, 0) if typ == 3 else struct.pack("<I", val))
        for tag, typ, n, val in entries) + struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + b"\x00\x00\x00"


def _base(kind: str, tmp: Path, rng: np.random.Generator) -> Path:
    """A valid file of `kind` (before mutation)."""
    rgb = rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)
    p = tmp / f"{kind}"
    if kind == "png_rgb":
        p = p.with_suffix(".png"); p.write_bytes(_png(rgb))
    elif kind == "png_rgba":
        rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
        p = p.with_suffix(".png"); p.write_bytes(_png(rgba))
    elif kind == "png_16bit":
        p = p.with_suffix(".png"); p.write_bytes(_png(rng.integers(0, 65535, (24, 32), dtype=np.uint16)))
    elif kind == "png_palette":
        p = p.with_suffix(".png"); p.write_bytes(_png(rgb, palette=True))
    elif kind == "png_1x1":
        p = p.with_suffix(".png"); p.write_bytes(_png(rgb[:1, :1]))
    elif kind == "jpeg":
        p = p.with_suffix(".jpg"); p.write_bytes(_jpeg(rgb))
    elif kind == "tif_float_nan_inf":
        arr = rng.normal(size=(4, 24, 32)).astype(np.float32)
        arr[0, :3] = np.nan
        arr[1, 5:7] = np.inf
        arr[2, 8] = -np.inf
        p = p.with_suffix(".tif"); _geotiff(p, arr)
    elif kind == "tif_all_nodata":
        p = p.with_suffix(".tif"); _geotiff(p, np.zeros((3, 24, 32), np.uint16), nodata=0)
    elif kind == "tif_all_nan":
        p = p.with_suffix(".tif"); _geotiff(p, np.full((3, 24, 32), np.nan, np.float32))
    elif kind == "tif_uint16":
        p = p.with_suffix(".tif"); _geotiff(p, rng.integers(0, 10000, (6, 24, 32), dtype=np.uint16))
    elif kind == "envi":
        p = p.with_suffix(".img"); _geotiff(p, rng.integers(0, 255, (3, 24, 32), dtype=np.uint8), driver="ENVI")
    elif kind == "tif_huge_header":
        p = p.with_suffix(".tif"); p.write_bytes(_huge_tiff_header())
    else:  # pragma: no cover
        raise AssertionError(kind)
    return p


KINDS = ["png_rgb", "png_rgba", "png_16bit", "png_palette", "png_1x1", "jpeg", "tif_float_nan_inf", "tif_all_nodata",
         "tif_all_nan", "tif_uint16", "envi", "tif_huge_header"]


def _mutate(path: Path, how: str, at: float, bits: list[int]) -> None:
    data = bytearray(path.read_bytes())
    if how == "truncate":
        data = data[: int(len(data) * at)]
    elif how == "zero":
        data = bytearray()
    elif how == "flip" and data:
        for b in bits:
            i = b % (len(data) * 8)
            data[i // 8] ^= 1 << (i % 8)
    path.write_bytes(bytes(data))


def _exercise(path: Path, other: Path | None = None) -> None:
    """What detect does first: open the image (or the pair) and read one window of pixels."""
    src = open_image(path)
    assert src.grid.width >= 1 and src.grid.height >= 1
    with open_pair(path, other or path) as pair:
        from rasterio.windows import Window

        g = pair.grid
        before, after, valid = pair.read(Window(0, 0, min(g.width, 256), min(g.height, 256)))
        assert before.shape[-2:] == valid.shape and after.shape == before.shape
        assert np.isfinite(before[..., valid]).all() and np.isfinite(after[..., valid]).all()


class _PeakRSS:
    """Peak resident memory of this process while a block runs, sampled every 5 ms by a thread."""

    def __enter__(self) -> _PeakRSS:
        import threading

        self._proc = psutil.Process()
        self.start = self.peak = self._proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._proc.memory_info().rss)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)


def _check(fn) -> None:
    """fn() returns or raises a clean InputError, within MAX_SECONDS and without growing memory by GBs."""
    t0 = time.perf_counter()
    with _PeakRSS() as rss:
        try:
            fn()
        except InputError as e:
            assert str(e) and "Traceback" not in str(e)
    assert time.perf_counter() - t0 < MAX_SECONDS
    assert rss.peak - rss.start < MAX_RSS_GROWTH, f"peak memory grew by {(rss.peak - rss.start) / 2**20:.0f} MiB"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(KINDS), how=st.sampled_from(["none", "truncate", "flip", "zero"]),
       at=st.floats(0.0, 0.99), bits=st.lists(st.integers(0, 2**20), min_size=1, max_size=8), seed=st.integers(0, 99))
def test_damaged_or_odd_files_fail_cleanly(tmp_path_factory, kind, how, at, bits, seed) -> None:
    tmp = tmp_path_factory.mktemp("fuzz")
    path = _base(kind, tmp, np.random.default_rng(seed))
    _mutate(path, how, at, bits)
    _check(lambda: _exercise(path))


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_unmutated(kind: str, tmp_path: Path) -> None:
    """The odd-but-valid files are read (or refused with a reason) deterministically."""
    path = _base(kind, tmp_path, np.random.default_rng(0))
    _check(lambda: _exercise(path))
    if kind in ("tif_all_nodata", "tif_all_nan"):
        with pytest.raises(InputError, match="no valid pixel"):
            _exercise(path)
    if kind == "tif_huge_header":
        with pytest.raises(InputError, match="100,000 x 100,000 px"):
            _exercise(path)


def test_pairs_of_different_sizes(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    a = tmp_path / "a.png"
    b = tmp_path / "b.png"
    a.write_bytes(_png(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)))
    b.write_bytes(_png(rng.integers(0, 255, (25, 31, 3), dtype=np.uint8)))
    with pytest.raises(InputError, match="24"):
        _exercise(a, b)
