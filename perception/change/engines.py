"""Execution engines for the change stage: the same per-window function run locally or on Dask.

An engine takes a fitted masker and writes change.tif (uint8: 1 change, 0 no change, 255 nodata) and
change_prob.tif (uint8 round(63 p), 0 where nodata: the COG's values, so finalising only re-encodes) window
by window on the pair's grid, ZSTD level 1 (the COG rewrite compresses them properly, on every CPU). Every engine calls
`change_window` (pair.read -> masker.score -> change.clean_mask on a window with a halo), so the
algorithm exists once; engines only decide where windows run and how results reach the files.

- `local`: a pool of threads in this process (the default; peak memory follows `tile` x threads).
- `dask`: one task per window (`dask_window`) on a `dask.distributed` cluster (an existing scheduler, or a
  LocalCluster of `workers` processes, see local_cluster.py). Each task writes its window to its own tile
  files (no lock, no shared file) and polygonises it; the driver writes a VRT over the tiles at each output
  path and stitches the polygon pieces. No process ever holds the scene.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import Window

from geodelta.contracts import NODATA_U8, Progress
from geodelta.errors import InputError
from geodelta.perception.change import local_cluster
from geodelta.perception.change import maskers as change
from geodelta.perception.describe.pieces import CHANGE, PieceCollector, window_pieces
from geodelta.perception.io import tile_mosaic
from geodelta.perception.io.grid import Grid
from geodelta.perception.io.rasters import block_cache, reader_warnings_held
from geodelta.perception.io.reader import AlignedPair
from geodelta.perception.io.tiling import in_strips, iter_windows, usable_cpus
from geodelta.perception.render import cog

OutPaths = tuple[Path, Path]  # (change.tif, change_prob.tif)
# An engine: run_change(pair, masker, params, out_paths, tile, progress, *, min_pixels, **engine_opts)
# -> (changed_px, valid_px)
Engine = Callable[..., tuple[int, int]]


def change_window(pair: AlignedPair, masker: change.ChangeMasker, params: dict, read_win: Window,
                  core: tuple[slice, slice], min_pixels: int, data: tuple | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Score one window read with its halo and clean the mask; return the core's (uint8 change
    1/0/255, uint8 score round(63 p) with 0 where nodata), both (h, w) of the core window.
    `data`: the window's (a, b, valid) if already read (the local engine reads ahead)."""
    a, b, valid = pair.read(read_win) if data is None else data
    prob = masker.score(a, b, valid, params)
    # a masker may set `open_radius` (the water masker: 0, thin flood channels survive) and `min_component_mean`
    # (the building head: blobs of low mean probability are dropped; a component larger than the halo that crosses
    # the window edge is judged on its part in this window and halo)
    mask = change.clean_mask(prob >= 0.5, valid, min_pixels=min_pixels, open_radius=getattr(masker, "open_radius", None),
                             prob=prob, min_mean=float(getattr(masker, "min_component_mean", 0.0)))
    prob, mask, valid = prob[core], mask[core], valid[core]
    out = np.where(valid, mask.astype(np.uint8), NODATA_U8).astype(np.uint8)
    return out, cog.quantise_prob(np.where(valid, prob, 0))


def _counts(out: np.ndarray) -> tuple[int, int]:
    """(changed, valid) pixels of a uint8 change block."""
    return int((out == 1).sum()), int((out != NODATA_U8).sum())


# The engines' files are rewritten as COGs right after (cog.finalise_change_rasters): fast ZSTD level 1 here
# (measured on the 4000 px NAIP mosaic: the writer thread spent 1.7 s on DEFLATE of float32 scores).
_WORK_COMPRESSION = {"compress": "zstd", "zstd_level": 1}


def _open_out(path: Path, grid: Grid, dtype: str, nodata: float | None, *, prob: bool = False):
    """Open an engine output on `grid` for windowed writes (tiled, ZSTD level 1); `prob`: the score raster,
    whose band scale (cog.PROB_SCALE, offset 0) says what its uint8 values mean."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        ds = rasterio.open(path, "w", **grid.to_profile(count=1, dtype=dtype, nodata=nodata, **_WORK_COMPRESSION))
    if prob:
        ds.scales, ds.offsets = (cog.PROB_SCALE,), (0.0,)
    return ds


# ---------------------------------------------------------------- local


_WINDOW = threading.local()  # .threads: CPU threads one window's score may use (set by run_local's jobs)


def window_threads() -> int | None:
    """CPU threads a masker may use inside one window's score: the local engine's CPUs divided among the windows it
    scores at once (every CPU for a masker with max_windows = 1, the learned model: see siamese.LearnedMasker);
    None outside the local engine's pool."""
    return getattr(_WINDOW, "threads", None)


def local_threads(threads: int | None = None) -> int:
    """Worker threads of the local engine: `threads`, else GEODELTA_THREADS, else the CPUs this process may use."""
    if threads is None:
        env = os.environ.get("GEODELTA_THREADS")
        threads = int(env) if env else usable_cpus()
    if int(threads) < 1:
        raise InputError(f"threads must be >= 1, got {threads}")
    return int(threads)


# The local engine runs its windows in vertical strips this wide, each top to bottom. A window's halo reaches into
# the file blocks of the window row above, which GDAL's block cache (DetectOptions.gdal_cache_mb, 256 MiB) keeps
# only while the blocks of one row of windows fit in it. Whole rows of the 20000 px NAIP mosaic (4 bands x 2 files,
# 512 px blocks: ~40 block columns x 4 block rows x 2 MiB) did not, and each block was decoded about twice:
# in strips the change stage took 18.8 s instead of 25.5 (same outputs). Scenes narrower than a strip run as before.
STRIP_PX = 6144


def run_local(pair: AlignedPair, masker: change.ChangeMasker, params: dict, out_paths: OutPaths, tile: int = 1024,
              progress: Progress | None = None, *, min_pixels: int = 0, threads: int | None = None,
              strip_px: int = STRIP_PX) -> tuple[int, int]:
    """Windows on a pool of `threads` threads in this process (default: every CPU it may use); returns
    (changed_px, valid_px).

    Threads, not processes: rasterio/GDAL reads, numpy and scipy.ndimage release the GIL, so windows
    score in parallel while sharing the fitted masker, and each thread keeps its own GDAL handles
    (the pair's ReaderCache is thread-local). Results are written by this thread in the order they run (strips, STRIP_PX), at
    most 2 x threads windows ahead of the writer, so peak memory follows `tile` x threads."""
    grid = pair.grid
    windows = in_strips(list(iter_windows(grid, tile, halo=change.HALO)), max(strip_px, tile))
    cpus = local_threads(threads)
    n_threads = min(cpus, max(1, len(windows)))
    if not getattr(masker, "thread_safe", False):  # e.g. the learned model on torch: torch threads inside one call
        n_threads = 1
    n_threads = min(n_threads, getattr(masker, "max_windows", None) or n_threads)  # the learned model: 1 (memory)
    changed = valid_total = 0
    per_window = max(1, cpus // n_threads)

    def job(i: int) -> tuple[np.ndarray, np.ndarray]:
        read_win, _, core = windows[i]
        _WINDOW.threads = per_window
        return change_window(pair, masker, params, read_win, core, min_pixels)

    with (
        _open_out(Path(out_paths[0]), grid, "uint8", NODATA_U8) as dst_c,
        _open_out(Path(out_paths[1]), grid, "uint8", None, prob=True) as dst_p,
    ):
        def write(i: int, out: np.ndarray, prob: np.ndarray) -> None:
            nonlocal changed, valid_total
            core_win = windows[i][1]
            dst_c.write(out, 1, window=core_win)
            dst_p.write(prob, 1, window=core_win)
            c, v = _counts(out)
            changed += c
            valid_total += v
            if progress:
                progress("change", i + 1, len(windows))

        from concurrent.futures import ThreadPoolExecutor

        if n_threads == 1:
            # One window at a time (the learned model: every CPU inside onnxruntime): the next window is read on
            # a helper thread meanwhile (GDAL releases the GIL), so the network never waits for the disk.
            _WINDOW.threads = per_window
            with reader_warnings_held(), ThreadPoolExecutor(1, thread_name_prefix="geodelta-read") as reader:
                ahead = reader.submit(pair.read, windows[0][0]) if windows else None
                for i in range(len(windows)):
                    data = ahead.result() if ahead is not None else None
                    ahead = reader.submit(pair.read, windows[i + 1][0]) if i + 1 < len(windows) else None
                    write(i, *change_window(pair, masker, params, windows[i][0], windows[i][2], min_pixels, data))
            return changed, valid_total
        from collections import deque

        with reader_warnings_held(), ThreadPoolExecutor(n_threads, thread_name_prefix="geodelta-change") as pool:
            pending: deque = deque()
            try:
                for i in range(len(windows)):
                    pending.append((i, pool.submit(job, i)))
                    while len(pending) >= 2 * n_threads or (pending and pending[0][1].done()):
                        j, fut = pending.popleft()
                        write(j, *fut.result())
                while pending:
                    j, fut = pending.popleft()
                    write(j, *fut.result())
            finally:
                for _, fut in pending:
                    fut.cancel()
    return changed, valid_total


# ---------------------------------------------------------------- dask


def tile_folders(out_paths: OutPaths) -> tuple[Path, Path]:
    """Where the dask engine's tasks write the window tiles of each output (beside it, so a shared output
    folder is all a multi-machine cluster needs)."""
    return tuple(Path(p).with_name(f"{Path(p).name}.tiles") for p in out_paths)  # type: ignore[return-value]


def remove_work(out_paths: OutPaths) -> None:
    """Delete what an engine wrote for `out_paths`: the files, and the dask engine's tile folders."""
    import shutil

    for path, folder in zip(out_paths, tile_folders(out_paths)):
        Path(path).unlink(missing_ok=True)
        shutil.rmtree(folder, ignore_errors=True)


def dask_window(pair: AlignedPair, masker: change.ChangeMasker, params: dict, read_win: Window, core_win: Window,
                core: tuple[slice, slice], min_pixels: int, folders: tuple[Path, Path], cache_mb: int | None = None) -> tuple:
    """One block task on a worker: score the window, write its change and score tiles, polygonise it, with
    GDAL's block cache bounded to `cache_mb` in the worker (DetectOptions.gdal_cache_mb).

    Returns (changed_px, valid_px, whole pieces, border pieces): the driver only stitches the pieces
    (describe/pieces.py), so polygonising runs on the workers, in parallel, beside the scoring."""
    with block_cache(cache_mb):
        out, prob = change_window(pair, masker, params, read_win, core, min_pixels)
    tile_mosaic.write_tile(folders[0], pair.grid, core_win, out, NODATA_U8)
    tile_mosaic.write_tile(folders[1], pair.grid, core_win, prob, None)
    c0, r0 = int(core_win.col_off), int(core_win.row_off)
    whole, border = window_pieces(out == CHANGE, prob, c0, r0, pair.grid.width, pair.grid.height)
    return (*_counts(out), whole, border)


def _client(scheduler: str | None, workers: int | None, client: Any | None):
    """(client, cluster-to-close) for an address, a LocalCluster of `workers` processes, or a given client."""
    from dask.distributed import Client, LocalCluster

    if client is not None:
        return client, None
    if scheduler:
        try:
            return Client(scheduler, timeout="30s"), None
        except OSError as e:
            raise InputError(f"cannot reach the Dask scheduler at {scheduler} ({e}): start one with "
                             "`dask scheduler` and `dask worker tcp://HOST:PORT`, or use --workers N") from e
    n = int(workers or os.cpu_count() or 1)
    if n < 1:
        raise InputError(f"--workers must be >= 1, got {workers}")
    # No dashboard; the scheduler's small HTTP health server binds 127.0.0.1 too (8787, or any free port).
    # The workers' threads, environment and start method: local_cluster.py.
    import dask

    with dask.config.set(local_cluster.worker_config()):
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address=None, env=dict(local_cluster.WORKER_THREAD_ENV))
    return Client(cluster), cluster


@contextmanager
def dask_client(scheduler: str | None = None, workers: int | None = None, client: Any | None = None) -> Iterator[Any]:
    """A distributed Client for the dask engine, closed on exit when this function started it (so a time
    series or a benchmark reuses one cluster for many runs: pass it on as engine_opts["client"])."""
    cl, cluster = _client(scheduler, workers, client)
    try:
        yield cl
    finally:
        if cluster is not None:
            cl.close()
            cluster.close()


def _warm_imports() -> None:
    """Run on each worker while the driver fits: the modules a block task unpickles, imported ahead of it."""
    import geodelta.perception.change.engines
    import geodelta.perception.change.maskers
    import geodelta.perception.io.reader  # noqa: F401


def _warm_masker(masker: Any) -> None:
    """Run on each worker: the masker's `warm()` (the learned model loads its onnxruntime session), if any."""
    warm = getattr(masker, "warm", None)
    if warm is not None:
        warm()


@contextmanager
def started(engine: str, engine_opts: dict | None = None, masker: Any | None = None,
            closing: list[threading.Thread] | None = None) -> Iterator[Callable[[], dict]]:
    """Start what `engine` needs in the background now; yields `resolve()` -> the engine options to pass.

    For "dask" without a client or scheduler address this starts the LocalCluster, imports GeoDelta on
    its workers and warms `masker` there (`warm()`: the learned model's session, loaded once per worker
    process) in a thread while the caller fits the masker (a cluster of 2 processes takes seconds to
    start, as long as the fit), and closes it on exit: there, or on a thread appended to `closing` (the
    caller joins it; closing 2 workers takes ~0.25 s, which then overlaps the caller's next stage).
    Other engines: the options unchanged."""
    opts = dict(engine_opts or {})
    if engine != "dask" or opts.get("client") is not None or opts.get("scheduler"):
        yield lambda: opts
        return
    from concurrent.futures import ThreadPoolExecutor

    def start() -> tuple[Any, Any]:
        cl, cluster = _client(None, opts.get("workers"), None)
        cl.run(_warm_imports)
        if masker is not None:
            cl.run(_warm_masker, masker)
        return cl, cluster

    pool = ThreadPoolExecutor(1, thread_name_prefix="geodelta-dask-start")
    fut = pool.submit(start)
    pool.shutdown(wait=False)
    try:
        yield lambda: {k: v for k, v in opts.items() if k != "workers"} | {"client": fut.result()[0]}
    finally:
        cl, cluster = fut.result()

        def close() -> None:
            cl.close()
            cluster.close()

        if closing is None:
            close()
        else:
            closing.append(threading.Thread(target=close, name="geodelta-dask-close"))
            closing[-1].start()


def run_dask(pair: AlignedPair, masker: change.ChangeMasker, params: dict, out_paths: OutPaths, tile: int = 1024,
             progress: Progress | None = None, *, min_pixels: int = 0, scheduler: str | None = None,
             workers: int | None = None, client: Any | None = None, collector: PieceCollector | None = None,
             cache_mb: int | None = None) -> tuple[int, int]:
    """The same windows as `run_local`, one task each on a distributed cluster (`dask_window`).

    `scheduler`: address of a running scheduler (tcp://HOST:PORT); else a LocalCluster of `workers`
    worker processes (default: one per CPU) on 127.0.0.1, closed afterwards; or an open `client`.
    `collector` receives every window's polygon pieces, made on the workers. The tasks write tiles into
    `tile_folders(out_paths)`, which must be visible to every worker (a shared file system on a multi-machine
    cluster); each output path then holds a VRT over its tiles (GDAL opens it whatever its name says).
    `remove_work(out_paths)` deletes both. `cache_mb`: GDAL's block cache in the workers while a task reads."""
    import dask
    from dask.distributed import as_completed

    grid = pair.grid
    windows = in_strips(list(iter_windows(grid, tile, halo=change.HALO)), max(STRIP_PX, tile))
    folders = tile_folders(out_paths)
    remove_work(out_paths)  # tiles of an earlier run must not mix with this one's

    # One graph node per object so each worker unpickles the pair (and its open readers) once.
    pair_d, masker_d, params_d, folders_d = (dask.delayed(o, pure=True, traverse=False) for o in (pair, masker, params, folders))
    task = dask.delayed(dask_window, pure=True)
    graph = []
    for i, (read_win, core_win, core) in enumerate(windows):
        # in the local engine's order (strips): without priorities the scheduler ran them in key-hash order, so
        # no worker's block cache ever held a neighbour's blocks
        with dask.annotate(priority=len(windows) - i):
            graph.append(task(pair_d, masker_d, params_d, read_win, core_win, core, min_pixels, folders_d, cache_mb))
    changed = valid_total = 0
    with dask_client(scheduler, workers, client) as cl:
        futures = cl.compute(graph)
        for done, fut in enumerate(as_completed(futures), start=1):
            c, v, whole, border = fut.result()
            changed += int(c)
            valid_total += int(v)
            if collector is not None:
                collector.add(whole, border)
            fut.release()
            if progress:
                progress("change", done, len(futures))
    cores = [core_win for _, core_win, _ in windows]
    tile_mosaic.write_vrt(Path(out_paths[0]), grid, folders[0], cores, "uint8", NODATA_U8)
    tile_mosaic.write_vrt(Path(out_paths[1]), grid, folders[1], cores, "uint8", None, scale=cog.PROB_SCALE)
    return changed, valid_total


ENGINES: dict[str, Engine] = {"local": run_local, "dask": run_dask}


def list_engines() -> list[str]:
    return sorted(ENGINES)


def get_engine(name: str) -> Engine:
    """An engine by registry name; unknown names raise InputError listing the choices."""
    try:
        return ENGINES[name]
    except KeyError:
        raise InputError(f"unknown engine {name!r}: choose one of {', '.join(list_engines())}") from None
