"""`geodelta bench scale`: the whole `geodelta detect` on a large mosaic of real NAIP imagery, per engine,
against the lean floor in the same run.

The NAIP 2009 and 2020 tiles of ../shared/data/naip (4 bands uint8, 5 m, EPSG:26914; 2020 read onto
2009's grid) are mirror-tiled to a --size x --size square and written once as tiled DEFLATE GeoTIFFs
with a real projected transform (the 2009 origin, 5 m pixels). Then, each in a new process:

- the floor: one thread reads both dates window by window, applies a linear map (a fixed 4 x 4 matrix)
  and a chi-square, and writes a uint8 mask and a float32 score (tiled DEFLATE): the least any change
  stage must do (../shared/checks/floor_pass.py, the same steps). One thread also for numpy's matmul
  (OPENBLAS_NUM_THREADS=1): left to itself OpenBLAS spreads the 4 x 4 map over every CPU and the floor
  takes longer (4000 px: 2.03 s loop with its threads, 1.68 s with one);
- `geodelta detect` per engine (local: the thread pool; dask N: a LocalCluster of N worker processes),
  every stage and every output, exactly as a user runs it.

Printed per run: wall time, the ratio to the floor, megapixels per second (whole detect and change
stage), the change stage against the floor's own loop (both without process start and imports: the
change stage is fit + score (+ starting the Dask cluster) from summary.json, the floor times its loop), each stage's time (from summary.json), every output's size and bytes per input pixel, and the
peak RSS of the process tree (driver + Dask scheduler and workers), sampled every 0.2 s with psutil.
For Dask engines also the scheduler overhead per tile: a round trip of a no-op task on the same kind of
cluster, and the change stage's extra time over the local engine's, per tile.

    geodelta bench scale --size 4000
    geodelta bench scale --size 20000 --workdir /tmp/geodelta-scale --keep
    geodelta bench scale --size 4000 --geodelta /path/to/other/venv/bin/geodelta   # a before / after table
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import rasterio
from affine import Affine

from geodelta.perception.change.local_cluster import WORKER_THREAD_ENV
from geodelta.perception.io.reader import open_pair
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


class TreeRss:
    """Peak RSS (bytes) of a process and all its descendants (summed), sampled in a background thread."""

    def __init__(self, pid: int, every: float = 0.2):
        self.proc, self.every = psutil.Process(pid), every
        self.peak = self.peak_root = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                root = self.proc.memory_info().rss
                kids = sum(_rss(c) for c in self.proc.children(recursive=True))
                self.peak_root, self.peak = max(self.peak_root, root), max(self.peak, root + kids)
            except psutil.Error:
                pass
            self._stop.wait(self.every)

    def __enter__(self) -> TreeRss:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _rss(p: psutil.Process) -> int:
    try:
        return p.memory_info().rss
    except psutil.Error:
        return 0


def run_process(cmd: list[str], env: dict[str, str]) -> tuple[float, int, int, float]:
    """Run `cmd`; (wall s, peak tree RSS, peak RSS of the process itself, CPU s of it and the children it
    waited for, from wait4's rusage). CPU seconds beside wall seconds: on a shared machine wall time also
    counts other people's work. Fails loudly."""
    with tempfile.TemporaryFile("w+") as errf:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=errf, text=True)
        with TreeRss(proc.pid) as rss:
            _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            errf.seek(0)
            raise SystemExit(f"{' '.join(cmd[:3])} ... failed ({proc.returncode}):\n{errf.read()[-2000:]}")
    return wall, rss.peak, rss.peak_root, usage.ru_utime + usage.ru_stime


def floor_pass(before: Path, after: Path, out: Path, tile: int = 1024) -> float:
    """The lean floor (see the module docstring): one thread, read -> linear map + chi-square -> write; returns
    the seconds from opening the inputs to closing the outputs."""
    t0 = time.perf_counter()
    with rasterio.open(before) as src_a, rasterio.open(after) as src_b:
        prof = src_a.profile.copy()
        prof.update(count=1, dtype="uint8", compress="deflate", tiled=True, blockxsize=512, blockysize=512, nodata=255)
        prof_p = dict(prof, dtype="float32", nodata=None)
        w_mat = np.random.default_rng(0).normal(size=(src_a.count, src_a.count)).astype(np.float32)
        with rasterio.open(out / "floor_change.tif", "w", **prof) as dst_c, rasterio.open(out / "floor_prob.tif", "w", **prof_p) as dst_p:
            for r in range(0, src_a.height, tile):
                for c in range(0, src_a.width, tile):
                    win = rasterio.windows.Window(c, r, min(tile, src_a.width - c), min(tile, src_a.height - r))
                    x, y = src_a.read(window=win).astype(np.float32), src_b.read(window=win).astype(np.float32)
                    m = w_mat @ (x - y).reshape(src_a.count, -1)
                    chi = (m * m).sum(0)
                    prob = (chi / (chi + chi.mean())).astype(np.float32).reshape(int(win.height), int(win.width))
                    dst_c.write((prob > 0.5).astype(np.uint8), 1, window=win)
                    dst_p.write(prob, 1, window=win)
    return time.perf_counter() - t0


def scheduler_round_trip(workers: int, n: int = 200) -> float:
    """Seconds per no-op task on a fresh LocalCluster of `workers` processes (submit, run, gather)."""
    from geodelta.perception.change import engines

    with engines.dask_client(workers=workers) as client:
        client.gather(client.map(_noop, range(8), pure=False))  # warm the workers
        t0 = time.perf_counter()
        client.gather(client.map(_noop, range(n), pure=False))
        return (time.perf_counter() - t0) / n


def _noop(i: int) -> int:
    return i


def _outputs(folder: Path) -> dict[str, int]:
    """name -> bytes of every file `detect` wrote (subfolders included)."""
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}


def _mib(n: float) -> str:
    return f"{n / 2**20:,.1f}"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="geodelta bench scale", description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=20000, help="mosaic edge in pixels (default 20000)")
    ap.add_argument("--tile", type=int, default=1024, help="window / chunk edge in pixels")
    ap.add_argument("--engines", default="local,dask2", help="comma list of local, daskN (N worker processes)")
    ap.add_argument("--workdir", type=Path, default=None, help="where the mosaic and outputs go (default: a temp folder)")
    ap.add_argument("--keep", action="store_true", help="keep the workdir (reuse the mosaic next time)")
    ap.add_argument("--geodelta", type=Path, default=Path(sys.executable).with_name("geodelta"),
                    help="the geodelta script to time (default: this environment's; another venv's for a before/after)")
    ap.add_argument("--gdal-cache-mb", type=int, default=None,
                    help="set GDAL_CACHEMAX (MiB) for every process; default: not set, as a user runs detect "
                         "(which then bounds its own block cache: DetectOptions.gdal_cache_mb)")
    ap.add_argument("--floor", metavar="BEFORE AFTER OUT", nargs=3, type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.floor:  # the floor, in its own process (so its RSS and imports are its own); its loop time beside OUT
        loop_s = floor_pass(*args.floor, tile=args.tile)
        (args.floor[2].parent / "floor_loop.json").write_text(json.dumps({"loop_s": loop_s}))
        return
    env = {k: v for k, v in os.environ.items() if k != "GDAL_CACHEMAX"}  # what a user's shell has, by default
    if args.gdal_cache_mb is not None:
        env["GDAL_CACHEMAX"] = str(args.gdal_cache_mb)  # read by GDAL in every process it starts

    data = Settings().data
    if not (data / "naip" / NAIP[0]).is_file():
        sys.exit(f"NAIP tiles not found under {data / 'naip'}: set GEODELTA_DATA to ../shared/data")
    if not args.geodelta.is_file():
        sys.exit(f"no geodelta script at {args.geodelta}: pass --geodelta PATH")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="geodelta-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        before, after = build_mosaic(data, args.size, work)
        mp = args.size**2 / 1e6
        n_tiles = (-(-args.size // args.tile)) ** 2
        print(f"mosaic {args.size} x {args.size} px x 4 bands x 2 dates ({mp:,.0f} MP) in {work} "
              f"({time.perf_counter() - t0:.1f} s; {_mib(before.stat().st_size)} + {_mib(after.stat().st_size)} MiB)", flush=True)
        print(f"tile {args.tile} px ({n_tiles} tiles), GDAL_CACHEMAX {args.gdal_cache_mb or 'not set'} (MiB), "
              f"{len(os.sched_getaffinity(0))} CPUs, geodelta = {args.geodelta}", flush=True)

        floor_dir = work / "floor"
        shutil.rmtree(floor_dir, ignore_errors=True)
        floor_dir.mkdir()
        f_wall, f_rss, _, f_cpu = run_process([sys.executable, __file__, "--floor", str(before), str(after), str(floor_dir),
                                           "--tile", str(args.tile)], env | WORKER_THREAD_ENV)  # one thread, BLAS included
        f_loop = json.loads((work / "floor_loop.json").read_text())["loop_s"]
        f_bytes = sum(_outputs(floor_dir).values())
        print(f"floor (1 thread, read -> linear map -> write uint8 + float32): {f_wall:.1f} s ({f_cpu:.1f} CPU s), {mp / f_wall:.2f} MP/s, "
              f"{f_bytes / mp / 1e6:.2f} B/px, peak RSS {_mib(f_rss)} MiB; its loop alone {f_loop:.1f} s, {mp / f_loop:.2f} MP/s", flush=True)

        rows, stages, files = [], {}, {}
        for name in [e.strip() for e in args.engines.split(",") if e.strip()]:
            out = work / f"detect_{name}"
            shutil.rmtree(out, ignore_errors=True)
            cmd = [str(args.geodelta), "detect", str(before), str(after), "--out", str(out), "--tile", str(args.tile), "--quiet"]
            if name.startswith("dask"):
                cmd += ["--engine", "dask", "--workers", str(int(name.removeprefix("dask") or 2))]
            wall, rss, rss_root, cpu = run_process(cmd, env)
            summary = json.loads((out / "summary.json").read_text())
            t = summary.get("timings_s", {})
            files[name] = _outputs(out)
            total = sum(files[name].values())
            stages[name] = t
            change_s = sum(t.get(k, 0.0) for k in ("fit", "engine_start", "score"))
            rows.append({"engine": name, "wall": wall, "ratio": wall / f_wall, "mp_s": mp / wall,
                         "change_mp_s": mp / change_s if change_s else float("nan"), "bpp": total / (mp * 1e6),
                         "out_mib": total / 2**20, "rss": rss, "rss_root": rss_root, "cpu": cpu,
                         "changed": summary.get("change", {}).get("changed_px"), "regions": summary.get("n_regions", len(summary.get("regions", [])))})
            print(f"  {name}: {wall:.1f} s ({cpu:.1f} CPU s)", flush=True)

        print("\n| engine | detect wall (s) | x floor | CPU s (driver) | MP/s | change MP/s | change / floor loop | output MiB | B/px | peak RSS MiB (tree / driver) | changed px |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        print(f"| floor | {f_wall:.1f} | 1.0 | {f_cpu:.1f} | {mp / f_wall:.2f} | {mp / f_loop:.2f} | 1.00 | {_mib(f_bytes)} | {f_bytes / mp / 1e6:.2f} | {_mib(f_rss)} | - |")
        for r in rows:
            print(f"| {r['engine']} | {r['wall']:.1f} | {r['ratio']:.1f} | {r['cpu']:.1f} | {r['mp_s']:.2f} | {r['change_mp_s']:.2f} | "
                  f"{r['change_mp_s'] / (mp / f_loop):.2f} | {r['out_mib']:,.1f} | "
                  f"{r['bpp']:.2f} | {_mib(r['rss'])} / {_mib(r['rss_root'])} | {r['changed']:,} |")
        order = ["open", "fit", "score", "polygonise", "describe", "render", "total"]
        keys = order + sorted({k for t in stages.values() for k in t} - set(order))
        print("\nstage times (s, from summary.json):\n| engine | " + " | ".join(keys) + " |")
        print("| --- |" + " ---: |" * len(keys))
        for name, t in stages.items():
            print(f"| {name} | " + " | ".join(f"{t.get(k, float('nan')):.2f}" for k in keys) + " |")
        names = sorted({f for fs in files.values() for f in fs})
        print("\noutput sizes (MiB):\n| file | " + " | ".join(files) + " |")
        print("| --- |" + " ---: |" * len(files))
        for f in names:
            print(f"| {f} | " + " | ".join(_mib(fs[f]) if f in fs else "-" for fs in files.values()) + " |")
        if "local" in stages:
            for name in stages:
                if name.startswith("dask"):
                    workers = int(name.removeprefix("dask") or 2)
                    rt = scheduler_round_trip(workers)
                    extra = (stages[name]["score"] - stages["local"]["score"]) / n_tiles
                    print(f"\n{name}: scheduler round trip {rt * 1e3:.1f} ms per no-op task; change stage "
                          f"{extra * 1e3:+.0f} ms per tile against the local engine ({n_tiles} tiles); "
                          f"whole detect {stages[name]['total'] / stages['local']['total']:.2f}x the local engine's (goal <= 1.2)")
        if len({r["changed"] for r in rows}) > 1:
            print("WARNING: engines disagree on the changed pixel count", flush=True)
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
