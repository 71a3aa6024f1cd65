"""How GeoDelta starts the worker processes of a Dask LocalCluster (the dask engine without --scheduler).

Three settings, each measured on the 4000 px NAIP mosaic with 2 workers on 2 CPUs:
- one library thread per worker (each worker runs one task at a time);
- Dask's statistical profiler off;
- no MALLOC_TRIM_THRESHOLD_ in the workers' environment (Dask sets it), and workers forked from a fork
  server that imported GeoDelta once, started early (`prestart`) so it imports while the driver works.

Light on purpose: only the standard library and dask's config are imported here, so the CLI can call
`prestart` before it imports the rest of GeoDelta.
"""

from __future__ import annotations

import multiprocessing
from typing import Any

# Environment of LocalCluster worker processes (read at their start, before numpy loads OpenBLAS): each worker
# runs one task at a time, so the libraries inside it get one thread too (with their defaults, onnxruntime and
# OpenBLAS one thread per CPU, 2 workers ran 4 busy threads on 2 CPUs).
WORKER_THREAD_ENV = {"GEODELTA_THREADS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
# Dask config of the LocalCluster's workers (a Nanny hands its config to the worker it starts): no statistical
# profiler, which samples every thread's stack every 10 ms for a dashboard we do not serve; a window task took
# ~10 % longer with it.
WORKER_CONFIG: dict[str, Any] = {"distributed.worker.profile.enabled": False}
# Dask starts workers with MALLOC_TRIM_THRESHOLD_=65536 (distributed.nanny.pre-spawn-environ). Setting any glibc
# malloc threshold turns off glibc's dynamic mmap threshold, so every array over 128 KiB (a window's 4 MB float
# temporaries) is a fresh mmap: page faults and zeroing on each use. A window's score took 227 ms in a worker with
# it, 171 ms without (175-200 ms in a plain process). GeoDelta frees memory itself (heap.trim after big stages).
DROPPED_WORKER_ENV = ("MALLOC_TRIM_THRESHOLD_",)
# What a block task runs, imported once in the fork server. Spawned workers each imported Python, distributed and
# these anew: 0.7 CPU s each before their first task, 1.2 s under the geodelta script (a spawned child imports
# the parent's main module again).
WORKER_MODULES = ("distributed", "geodelta.perception.change.engines", "geodelta.perception.change.maskers",
                  "geodelta.perception.io.reader", "geodelta.perception.describe.pieces")


def has_fork_server() -> bool:
    return "forkserver" in multiprocessing.get_all_start_methods()


def prestart() -> None:
    """Start the fork server now (it imports WORKER_MODULES in its own process while this one goes on): the
    first LocalCluster then starts in ~0.1 s instead of ~0.9. A no-op where there is no fork server, or when
    it already runs. The fork server is a fresh single-threaded process, so no thread of this one is forked."""
    if not has_fork_server():
        return
    from multiprocessing import forkserver

    multiprocessing.get_context("forkserver").set_forkserver_preload(list(WORKER_MODULES))
    forkserver.ensure_running()


def worker_config() -> dict[str, Any]:
    """Dask config to start a LocalCluster's workers with: WORKER_CONFIG, Dask's pre-spawn environment less
    DROPPED_WORKER_ENV (read now, so a user's own settings stay), and the fork server where there is one."""
    import dask

    env = dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {}
    config = WORKER_CONFIG | {"distributed.nanny.pre-spawn-environ":
                              {k: v for k, v in env.items() if k not in DROPPED_WORKER_ENV}}
    if has_fork_server():
        from distributed.utils import get_mp_context

        config["distributed.worker.multiprocessing-method"] = "forkserver"
        with dask.config.set(config):
            get_mp_context()  # sets distributed's own preload list, once per process; ours replaces it
        prestart()
    return config
