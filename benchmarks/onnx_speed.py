"""ONNX change-model speed sweep: megapixels per second on a real 1024 x 1024 px WHU window, per model, for
onnxruntime threads (1, 2), graph optimisation level (ALL, EXTENDED), sub-tile size and batch
(perception/learned/onnx_infer.py). Run: `python benchmarks/onnx_speed.py [MODEL.onnx ...]` (default: the
shipped change models). Other load on the machine lowers every figure; the printed load average says how much.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import onnxruntime as ort
from rasterio.windows import Window

from geodelta.perception.io.reader import open_pair
from geodelta.perception.learned import onnx_infer
from geodelta.perception.learned import siamese as learned
from geodelta.settings import Settings


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    weights = learned.default_weights().parent
    models = argv or [str(weights / f"{m}{p}.onnx") for m in ("siamese_v3", "effnet_siamese_v1") for p in ("_int8", "")]
    root = Settings().data / "whu_tiles"
    with open_pair(root / "A" / "000213.png", root / "B" / "000213.png") as pair:
        xa, xb = learned.prepare_window(pair, Window(0, 0, pair.grid.width, pair.grid.height))
    print(f"window {xa.shape[1]} x {xa.shape[2]} px, {os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.2f}")
    levels = {"ALL": ort.GraphOptimizationLevel.ORT_ENABLE_ALL, "EXTENDED": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED}
    for path in models:
        if not Path(path).is_file():
            print(f"{path}: not found")
            continue
        for threads, level in ((2, "ALL"), (2, "EXTENDED"), (1, "ALL")):
            opts = ort.SessionOptions()
            opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
            opts.graph_optimization_level = levels[level]
            sess = ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
            for tile, batch in ((1024, 1), (512, 1), (512, 4), (256, 4)):
                onnx_infer.predict(sess, xa[:, :256, :256], xb[:, :256, :256], tile=tile, batch=batch)  # warm-up
                t0, n = time.perf_counter(), 2
                for _ in range(n):
                    onnx_infer.predict(sess, xa, xb, tile=tile, batch=batch)
                mps = n * xa.shape[1] * xa.shape[2] / 1e6 / (time.perf_counter() - t0)
                print(f"{Path(path).name:24s} threads {threads} opt {level:8s} tile {tile:4d} batch {batch}: {mps:.2f} MP/s", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
