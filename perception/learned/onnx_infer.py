"""Run GeoDelta's exported change networks with onnxruntime (CPU wheel, base install): no torch at inference.

A model file is an ONNX graph with two inputs `a`, `b` (float32 (N, C, H, W), H and W multiples of
`multiple`) and one output `prob` (float32 (N, 1, H, W), sigmoid already applied), plus a JSON
metadata entry `geodelta` (config, training meta, the source checkpoint's sha256), written by
perception/learned/onnx_export.py. Inference over one engine window (itself read with the engine's halo) is
cut into sub-tiles of `tile` px with a `halo` px overlap that are run `batch` at a time, so peak memory
follows `tile` x `batch`, not the window; only each sub-tile's core is kept.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np

from geodelta.errors import ConfigError
from geodelta.perception.io.checksum import file_sha256

# Sub-tile edge and overlap (px) for inference inside one engine window. The U-Net's receptive field
# reaches ~50 px from a pixel: measured on a WHU window, a 32 px sub-tile halo changed up to 0.18 in
# probability (0.04 % of the decisions), so the halo is 64 px and the default engine window (1024 px +
# 2 x 32 px engine halo) runs whole; only larger windows are cut. Batches of 4 bound peak memory.
SUB_TILE = 1024
SUB_HALO = 64
BATCH = 4


_SESSIONS: list[Any] = []  # every session load_session made in this process (release_memory's list)


def release_memory() -> int:
    """Hand the sessions' arena memory back (onnxruntime keeps its peak, ~0.7 GB for a 1088 px window, for
    the life of the session): one tiny run per session with arena shrinkage on. Called after the change
    stage, so polygonising a large scene does not sit on the network's buffers. Returns sessions shrunk."""
    if not _SESSIONS:
        return 0
    import onnxruntime as ort

    opts = ort.RunOptions()
    opts.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
    for sess in _SESSIONS:
        # 32 px: the smallest input every shipped network takes (effnet_siamese's stride-16 stages need it)
        feeds = {i.name: np.zeros((1, int(i.shape[1]), 32, 32), np.float32) for i in sess.get_inputs()}
        sess.run(None, feeds, opts)
    return len(_SESSIONS)


@functools.lru_cache(maxsize=4)
def load_session(path: str | Path, threads: int | None = None) -> tuple[Any, dict[str, Any], str]:
    """(onnxruntime.InferenceSession, the model's `geodelta` metadata, file sha256), loaded once per process."""
    try:
        import onnxruntime as ort
    except ImportError:  # it is a base dependency; a broken install lands here
        raise ConfigError("onnxruntime is missing: reinstall geodelta (`pip install -e .`)") from None
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"learned-model file not found at {path}: export one with "
                          f"`python -m geodelta.perception.learned.onnx_export --out {path}` or reinstall geodelta")
    opts = ort.SessionOptions()
    env = os.environ.get("GEODELTA_THREADS")  # e.g. 1 in a Dask worker process (engines.WORKER_THREAD_ENV)
    opts.intra_op_num_threads = int(threads or (int(env) if env else min(os.cpu_count() or 1, 8)))
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # No memory pattern (pre-planned buffers per input shape): measured on a 1088 px window, peak RSS 865 MB
    # instead of 1,412 MB at the same speed (1.7 vs 1.9 s per run, 2 threads); the arena itself stays on
    # (without it 3.2 s per run).
    opts.enable_mem_pattern = False
    try:
        sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types for corrupt or foreign files
        raise ConfigError(f"{path} is not a loadable ONNX model ({str(e).splitlines()[0][:120]}): export it again") from None
    _SESSIONS.append(sess)
    raw = sess.get_modelmeta().custom_metadata_map.get("geodelta")
    if not raw:
        raise ConfigError(f"{path} is an ONNX model without GeoDelta metadata: export it with perception/learned/onnx_export.py")
    return sess, json.loads(raw), file_sha256(path)


def _starts(n: int, core: int) -> list[int]:
    return list(range(0, max(n, 1), core))


def predict(sess: Any, xa: np.ndarray, xb: np.ndarray, *, multiple: int = 8, tile: int = SUB_TILE,
            halo: int = SUB_HALO, batch: int = BATCH, head: int | None = None, min_size: int = 0) -> np.ndarray:
    """Change probability float32 (h, w) from prepared inputs xa, xb (C, h, w): `prob`, or channel `head` of the
    `heads` output of a change-type model (one probability per change type).

    Windows up to `tile` + 2 `halo` px run whole (padded to a multiple of `multiple`, reflect); larger
    ones are cut into `tile` px cores read with `halo` px of context and run `batch` sub-tiles per call.
    """
    h, w = xa.shape[1:]
    if h <= tile + 2 * halo and w <= tile + 2 * halo:
        boxes = [(0, 0, h, w, 0, 0, h, w)]  # read box (r0, c0, r1, c1) and core box inside it
    else:
        boxes = []
        for r in _starts(h, tile):
            for c in _starts(w, tile):
                cr1, cc1 = min(r + tile, h), min(c + tile, w)
                r0, c0, r1, c1 = max(r - halo, 0), max(c - halo, 0), min(cr1 + halo, h), min(cc1 + halo, w)
                boxes.append((r0, c0, r1, c1, r, c, cr1, cc1))
    out = np.zeros((h, w), np.float32)
    # Sub-tiles of one batch share a padded shape: group them by it (edge tiles are smaller).
    groups: dict[tuple[int, int], list[tuple]] = {}
    for box in boxes:
        r0, c0, r1, c1 = box[:4]
        hh, ww = r1 - r0, c1 - c0
        # min_size: a network with stride-16 stages (effnet_siamese) needs >= 32 px; smaller windows are padded
        groups.setdefault((max(hh + (-hh % multiple), min_size), max(ww + (-ww % multiple), min_size)), []).append(box)
    for (ph, pw), items in groups.items():
        for i in range(0, len(items), max(int(batch), 1)):
            chunk = items[i: i + max(int(batch), 1)]
            prob = sess.run(["prob" if head is None else "heads"], {"a": _batch(xa, chunk, ph, pw), "b": _batch(xb, chunk, ph, pw)})[0]
            ch = 0 if head is None else int(head)
            for k, (r0, c0, _, _, r, c, cr1, cc1) in enumerate(chunk):
                out[r:cr1, c:cc1] = prob[k, ch, r - r0: cr1 - r0, c - c0: cc1 - c0]
    return out


def _batch(x: np.ndarray, boxes: list[tuple], ph: int, pw: int) -> np.ndarray:
    """(n, C, ph, pw) float32: the read boxes of x (C, h, w), padded. One box (the usual case: an engine window run
    whole) is a view of x, not a copy."""
    tiles = [_pad(x[:, b[0]:b[2], b[1]:b[3]], ph, pw) for b in boxes]
    return tiles[0][None] if len(tiles) == 1 else np.stack(tiles)


def _pad(x: np.ndarray, ph: int, pw: int) -> np.ndarray:
    """x (C, h, w) padded at the bottom/right to (C, ph, pw); reflect where the image allows it (as torch predict)."""
    h, w = x.shape[1:]
    pad = ((0, 0), (0, ph - h), (0, pw - w))
    if pad[1][1] == 0 and pad[2][1] == 0:
        return np.ascontiguousarray(x, np.float32)
    mode: Literal["reflect", "edge"] = "reflect" if h > ph - h and w > pw - w else "edge"
    return np.pad(x, pad, mode=mode).astype(np.float32, copy=False)
