"""`geodelta bench scale`: the change stage on a large mosaic built from real NAIP imagery, per engine.

The NAIP 2009 and 2020 tiles of ../shared/data/naip (4 bands uint8, 5 m, EPSG:26914; 2020 read onto
2009's grid) are mirror-tiled to a --size x --size square and written once as tiled DEFLATE GeoTIFFs
with a real projected transform (the 2009 origin, 5 m pixels). The IR-MAD fit is done once (its time
printed); then each engine (local; Dask with 1 and 2 worker processes on a LocalCluster) scores and
writes change.tif / change_prob.tif. Printed per engine: wall time of that step, megapixels per
second, and peak RSS of the driver and of each worker, sampled with psutil every 0.2 s (plus each
worker's ru_maxrss at the end).

    geodelta bench scale --size 4000
    geodelta bench scale --size 20000 --workdir /tmp/geodelta-scale --keep
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import rasterio
from affine import Affine

from geodelta.perception import change, engines
from geodelta.perception.io import open_pair
from geodelta.settings import Settings

NAIP = ("m_4709963_se_14_1_20090818.tif", "m_4709963_se_14_1_20200831.tif")
STRIP = 512  # rows written per step while building the mosaic (one block row)


def _mirror_index(n: int, period: int) -> np.ndarray:
    """Indices 0..n-1 folded into 0..period-1 by reflection (no seams where copies meet)."""
    i = np.arange(n) % (2 * period)
    return np.where(i < period, i, 2 * period - 1 - i)


def build_mosaic(data: Path, size: int, folder: Path) -> tuple[Path, Path]:
    """before.tif / after.tif: size x size x 4 uint8 mirror-tiled NAIP, tiled 512 DEFLATE (built once)."""
    naip = data / "naip"
    pair = open_pair(naip / NAIP[0], naip / NAIP[1])
    g = pair.grid
    a, b, valid = pair.read(rasterio.windows.Window(0, 0, g.width, g.height))
    srcs = [np.where(valid, a, 0).round().clip(0, 255).astype(np.uint8),
            np.where(valid, b, 0).round().clip(0, 255).astype(np.uint8)]
    rows, cols = _mirror_index(size, g.height), _mirror_index(size, g.width)
    profile = {"driver": "GTiff", "width": size, "height": size, "count": 4, "dtype": "uint8", "crs": g.crs,
               "transform": Affine(5.0, 0, g.transform.c, 0, -5.0, g.transform.f), "tiled": True,
               "blockxsize": 512, "blockysize": 512, "compress": "deflate", "nodata": 0, "BIGTIFF": "IF_SAFER"}
    out = []
    for name, src, date in zip(("before.tif", "after.tif"), srcs, ("2009-08-18", "2020-08-31")):
        path = folder / f"{size}_{name}"
        if not path.is_file():
            tmp = path.with_suffix(".part.tif")
            with rasterio.open(tmp, "w", **profile) as dst:
                dst.update_tags(ACQUISITION_DATE=date)
                dst.descriptions = ("red", "green", "blue", "nir")
                for r0 in range(0, size, STRIP):
                    r = rows[r0:r0 + STRIP]
                    dst.write(src[:, r][:, :, cols], window=rasterio.windows.Window(0, r0, size, len(r)))
            tmp.rename(path)
        out.append(path)
    return out[0], out[1]


class RssSampler:
    """Peak RSS (bytes) of a set of processes, sampled in a background thread."""

    def __init__(self, pids: dict[str, int], every: float = 0.2):
        self.procs = {k: psutil.Process(p) for k, p in pids.items()}
        self.peak = dict.fromkeys(pids, 0)
        self.every, self._stop = every, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for k, p in self.procs.items():
                try:
                    self.peak[k] = max(self.peak[k], p.memory_info().rss)
                except psutil.Error:
                    pass
            self._stop.wait(self.every)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _maxrss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def run_engine(name: str, pair, masker, params, out: Path, tile: int, workers: int | None) -> dict:
    """One engine run; returns wall time, MP/s and RSS peaks (MiB)."""
    paths = (out / f"{name}_change.tif", out / f"{name}_prob.tif")
    n_px = pair.grid.width * pair.grid.height
    if name == "local":
        with RssSampler({"driver": os.getpid()}) as s:
            t0 = time.perf_counter()
            counts = engines.run_local(pair, masker, params, paths, tile, min_pixels=0)
            wall = time.perf_counter() - t0
        return {"engine": "local", "wall_s": wall, "mp_s": n_px / 1e6 / wall, "driver_mib": s.peak["driver"] / 2**20,
                "workers_mib": [], "workers_maxrss_mib": [], "changed": counts[0]}
    with engines.dask_client(workers=workers) as client:
        wpids = client.run(os.getpid)
        pids = {"driver": os.getpid(), **{w: p for w, p in wpids.items()}}
        with RssSampler(pids) as s:
            t0 = time.perf_counter()
            counts = engines.run_dask(pair, masker, params, paths, tile, min_pixels=0, client=client)
            wall = time.perf_counter() - t0
        maxrss = client.run(_maxrss_bytes)
    return {"engine": f"dask x{workers}", "wall_s": wall, "mp_s": n_px / 1e6 / wall, "driver_mib": s.peak["driver"] / 2**20,
            "workers_mib": [s.peak[w] / 2**20 for w in wpids], "workers_maxrss_mib": [v / 2**20 for v in maxrss.values()],
            "changed": counts[0]}


def _row(r: dict) -> str:
    w = ", ".join(f"{v:,.0f}" for v in r["workers_mib"]) or "-"
    m = ", ".join(f"{v:,.0f}" for v in r["workers_maxrss_mib"]) or "-"
    return f"| {r['engine']:<8} | {r['wall_s']:9.1f} | {r['mp_s']:6.2f} | {r['driver_mib']:9,.0f} | {w:>14} | {m:>14} | {r['changed']:,} |"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="geodelta bench scale", description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=20000, help="mosaic edge in pixels (default 20000)")
    ap.add_argument("--tile", type=int, default=1024, help="window / chunk edge in pixels")
    ap.add_argument("--engines", default="local,dask1,dask2", help="comma list of local, daskN (N workers)")
    ap.add_argument("--workdir", type=Path, default=None, help="where the mosaic and outputs go (default: a temp folder)")
    ap.add_argument("--keep", action="store_true", help="keep the workdir (reuse the mosaic next time)")
    ap.add_argument("--gdal-cache-mb", type=int, default=256,
                    help="GDAL block cache per process (MiB; GDAL's default is 5%% of RAM, which dominates peak RSS)")
    args = ap.parse_args(argv)
    # Read by GDAL when its cache is first used; worker processes inherit the environment.
    os.environ["GDAL_CACHEMAX"] = str(args.gdal_cache_mb)

    data = Settings().data
    if not (data / "naip" / NAIP[0]).is_file():
        sys.exit(f"NAIP tiles not found under {data / 'naip'}: set GEODELTA_DATA to ../shared/data")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="geodelta-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        before, after = build_mosaic(data, args.size, work)
        print(f"mosaic {args.size} x {args.size} px x 4 bands x 2 dates ({args.size**2 / 1e6:,.0f} MP) in {work} "
              f"({time.perf_counter() - t0:.1f} s; {before.stat().st_size / 2**20:,.0f} + {after.stat().st_size / 2**20:,.0f} MiB)", flush=True)
        pair = open_pair(before, after)
        masker = change.get_masker("irmad")
        t0 = time.perf_counter()
        params = masker.fit(*pair.sample())
        print(f"IR-MAD fit on the scene-wide sample: {time.perf_counter() - t0:.1f} s (shared by every engine)", flush=True)
        print(f"tile {args.tile} px, halo {change.HALO} px, GDAL_CACHEMAX {args.gdal_cache_mb} MiB, {os.cpu_count()} CPUs", flush=True)
        print("| engine   |  wall (s) |   MP/s | driver MiB | worker peak MiB | worker maxrss MiB | changed px |", flush=True)
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |", flush=True)
        results = []
        for name in args.engines.split(","):
            name = name.strip()
            workers = int(name.removeprefix("dask") or 1) if name.startswith("dask") else None
            r = run_engine("local" if name == "local" else "dask", pair, masker, params, work, args.tile, workers)
            results.append(r)
            print(_row(r), flush=True)
        if len({r["changed"] for r in results}) > 1:
            print("WARNING: engines disagree on the changed pixel count", flush=True)
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
