"""Does refinement make change regions better? Pixel F1, boundary F1 and region-count error per domain,
before (the masker's change.tif) and after the refiner (change_refined.tif), against the labels.

Each labelled pair (perception.datasets.labelled_pairs): `detect_stage` (irmad by default) into a
temporary folder, then `refine_stage` with the chosen refiner. Pixel F1 is micro-averaged over a
domain's pairs (summed confusions); boundary F1 (2 px tolerance) and region-count error
(|#components(pred) - #components(label)| / #components(label), 4-connected) are means over pairs.
Only labelled pixels count (Taizhou: 13% labelled). Usage:
  geodelta bench refine [--domains levir whu sztaki oscd landsat] [--method irmad]
                              [--refiner superpixel] [--opt size_px=64 --opt compactness=0.1]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import rasterio

from geodelta.contracts import DetectOptions
from geodelta.perception.evaluation.datasets import DOMAINS, labelled_pairs
from geodelta.perception.evaluation.metrics import boundary_f1, confusion, count_error, merge, scores
from geodelta.perception.io.reader import open_pair
from geodelta.perception.pipeline.detect import detect_stage
from geodelta.perception.refine.registry import get_refiner
from geodelta.perception.refine.stage import refine_stage
from geodelta.settings import Settings


def _opts(items: list[str]) -> dict:
    out = {}
    for it in items:
        k, v = it.split("=", 1)
        out[k] = float(v) if "." in v or "e" in v else int(v)
    return out


def _mask(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with rasterio.open(path) as src:
        arr = src.read(1)
    return arr == 1, arr != 255


def _measure(pred: np.ndarray, truth: np.ndarray, valid: np.ndarray) -> dict:
    return {"conf": confusion(pred, truth, valid), "bf1": boundary_f1(pred, truth, valid=valid)["f1"],
            "cnt": count_error(pred & valid, truth & valid)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--domains", nargs="+", default=list(DOMAINS), choices=DOMAINS)
    ap.add_argument("--method", default="irmad")
    ap.add_argument("--refiner", default="superpixel")
    ap.add_argument("--opt", action="append", default=[], help="refiner option key=value (repeatable)")
    ap.add_argument("--tile", type=int, default=1024)
    args = ap.parse_args(argv)
    data = Settings().data
    if not data.is_dir():
        print(f"data folder {data} not found: set GEODELTA_DATA", file=sys.stderr)
        return 2
    refiner = get_refiner(args.refiner, **_opts(args.opt))
    rows: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    t_ref: dict[str, float] = defaultdict(float)
    for lp in labelled_pairs(data, args.domains):
        if not lp.label.exists():  # datasets.labelled_pairs also yields Szada/SOURCE.md as a "pair"
            continue
        truth, labelled = lp.truth()
        with tempfile.TemporaryDirectory() as tmp, open_pair(lp.before, lp.after) as pair:
            if pair.grid.shape != truth.shape:
                print(f"skip {lp.domain}/{lp.name}: label {truth.shape} vs grid {pair.grid.shape}", file=sys.stderr)
                continue
            det = detect_stage(pair, Path(tmp), DetectOptions(method=args.method))
            t0 = time.perf_counter()
            ref_tif, _ = refine_stage(pair, det.change_tif, det.prob_tif, Path(tmp), refiner, tile=args.tile)
            t_ref[lp.domain] += time.perf_counter() - t0
            before, v0 = _mask(det.change_tif)
            after, _ = _mask(ref_tif)
        valid = labelled & v0
        rows[lp.domain]["before"].append(_measure(before, truth, valid))
        rows[lp.domain]["after"].append(_measure(after, truth, valid))
    print(f"masker={args.method} refiner={args.refiner} opts={_opts(args.opt)}")
    head = f"{'domain':8} {'pairs':>5} | {'F1 px':>6} {'->':>6} | {'F1 bnd':>6} {'->':>6} | {'cnt err':>7} {'->':>7} | {'refine s':>8}"
    print(head)
    print("-" * len(head))
    means = defaultdict(list)
    for dom, r in rows.items():
        vals = []
        for k in ("before", "after"):
            f1 = scores(merge(m["conf"] for m in r[k]))["f1"]
            vals.append((f1, float(np.mean([m["bf1"] for m in r[k]])), float(np.mean([m["cnt"] for m in r[k]]))))
        (f0, b0, c0), (f1, b1, c1) = vals
        for key, v in zip(("f0", "f1", "b0", "b1", "c0", "c1"), (f0, f1, b0, b1, c0, c1)):
            means[key].append(v)
        print(f"{dom:8} {len(r['before']):5d} | {f0:6.3f} {f1:6.3f} | {b0:6.3f} {b1:6.3f} | {c0:7.2f} {c1:7.2f} | {t_ref[dom]:8.2f}")
    if means:
        m = {k: float(np.mean(v)) for k, v in means.items()}
        print(f"{'mean':8} {'':5} | {m['f0']:6.3f} {m['f1']:6.3f} | {m['b0']:6.3f} {m['b1']:6.3f} | {m['c0']:7.2f} {m['c1']:7.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
