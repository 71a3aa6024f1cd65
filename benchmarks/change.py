"""`geodelta bench change`: each masker on every labelled real pair, per domain, beside published models.

Runs the same path as `geodelta detect` (open_pair -> fit -> tiled score -> clean -> change.tif) and
scores change.tif against the labels (micro-averaged over the pairs of a domain). Prints:
1. per-domain precision / recall / F1 / IoU per method, and the mean F1 over domains;
2. on the 7 LEVIR-CD test crops, the F1 of the seven published predictions stored with the crops;
3. throughput (megapixels per second of the detect stage) and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image
from rich.console import Console
from rich.table import Table

from geodelta.perception import metrics
from geodelta.perception.datasets import DOMAINS, labelled_pairs
from geodelta.perception.io import open_pair
from geodelta.perception.pipeline import detect_stage
from geodelta.settings import Settings


def run_method(method: str, data: Path, domains: list[str], tmp: Path, refine: str | None = None) -> tuple[dict, dict]:
    """Confusion per domain and (pixels, seconds) per domain for one masker, optionally refined
    by a training-free refiner (perception/refine.py) before scoring."""
    from geodelta.perception.refine import get_refiner, refine_stage

    confs: dict[str, list[dict]] = {d: [] for d in domains}
    speed: dict[str, list[float]] = {d: [0, 0.0] for d in domains}
    for lp in labelled_pairs(data, domains):
        pair = open_pair(lp.before, lp.after)
        out = tmp / method / lp.domain / lp.name.replace("/", "_")
        t0 = time.perf_counter()
        det = detect_stage(pair, out, method=method, min_area_m2=0.0, min_area_px=0)
        dt = time.perf_counter() - t0 - det.timings.get("polygonise_s", 0.0)
        change_tif = det.change_tif
        if refine:
            change_tif, _ = refine_stage(pair, det.change_tif, det.prob_tif, out, get_refiner(refine), min_area_px=0)
            dt = time.perf_counter() - t0
        with rasterio.open(change_tif) as src:
            pred = src.read(1) == 1
        truth, labelled = lp.truth()
        confs[lp.domain].append(metrics.confusion(pred, truth, labelled))
        speed[lp.domain][0] += pair.grid.width * pair.grid.height
        speed[lp.domain][1] += dt
    return {d: metrics.merge(c) for d, c in confs.items() if c}, speed


def published(data: Path) -> dict[str, float]:
    """Micro F1 of each `levir_crops/predict_<Method>/` folder on the 7 test crops."""
    root = data / "levir_crops"
    out = {}
    for folder in sorted(root.glob("predict_*")):
        confs = []
        for pred_path in sorted(folder.glob("*.png")):
            pred = np.asarray(Image.open(pred_path).convert("L")) > 127
            truth = np.asarray(Image.open(root / "label" / pred_path.name).convert("L")) > 127
            confs.append(metrics.confusion(pred, truth))
        out[folder.name.removeprefix("predict_")] = metrics.scores(metrics.merge(confs))["f1"]
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="geodelta bench change")
    ap.add_argument("--methods", default="cva,irmad")
    ap.add_argument("--domains", default=",".join(DOMAINS))
    ap.add_argument("--refine", default="", help="also score each method after this refiner, e.g. superpixel")
    args = ap.parse_args(argv)
    data = Settings().data
    console = Console()
    base = [m for m in args.methods.split(",") if m]
    runs = [(m, None) for m in base] + [(m, args.refine) for m in base if args.refine]
    methods = [m if r is None else f"{m}+{r}" for m, r in runs]
    domains = [d for d in args.domains.split(",") if d]
    results: dict[str, dict] = {}
    speeds: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for (m, r), label in zip(runs, methods):
            console.print(f"[dim]running {label} on {', '.join(domains)} ...[/dim]")
            results[label], speeds[label] = run_method(m, data, domains, Path(tmp), refine=r)

    table = Table(title="Change detection on real labelled pairs (micro-averaged per domain)")
    table.add_column("domain")
    for m in methods:
        for k in ("P", "R", "F1", "IoU"):
            table.add_column(f"{m} {k}", justify="right")
    mean_f1 = {m: [] for m in methods}
    for d in domains:
        row = [d]
        for m in methods:
            s = metrics.scores(results[m][d]) if d in results[m] else None
            if s:
                mean_f1[m].append(s["f1"])
            row += [f"{s[k]:.3f}" if s else "-" for k in ("precision", "recall", "f1", "iou")]
        table.add_row(*row)
    mean_row = ["mean over domains"]
    for m in methods:
        mean_row += ["", "", f"{np.mean(mean_f1[m]):.3f}" if mean_f1[m] else "-", ""]
    table.add_row(*mean_row, style="bold")
    console.print(table)
    if any(m.startswith("learned") for m in methods):
        console.print("[yellow]note:[/yellow] `learned` was trained on most of these pairs, so its rows here are optimistic; "
                      "the held-out per-domain scores are in geodelta/data/weights/MODEL_CARD.md "
                      "(`python -m geodelta.perception.train --compare`).")

    summary = {"f1": {m: {d: metrics.scores(results[m][d])["f1"] for d in results[m]} for m in methods}}
    if "levir" in domains:
        pub = published(data)
        t2 = Table(title="LEVIR-CD 7 test crops: F1 of published supervised models vs ours (training-free)")
        t2.add_column("model")
        t2.add_column("F1", justify="right")
        t2.add_column("kind")
        for name, f1 in pub.items():
            t2.add_row(name, f"{f1:.3f}", "published prediction (trained on LEVIR-CD)")
        for m in methods:
            t2.add_row(f"geodelta {m}", f"{metrics.scores(results[m]['levir'])['f1']:.3f}", "ours, no training", style="bold")
        console.print(t2)
        summary["published"] = pub

    t3 = Table(title="Throughput of the detect stage (open, fit, tiled score, clean, write)")
    t3.add_column("method")
    t3.add_column("megapixels", justify="right")
    t3.add_column("seconds", justify="right")
    t3.add_column("Mpx/s", justify="right")
    for m in methods:
        px = sum(v[0] for v in speeds[m].values())
        s = sum(v[1] for v in speeds[m].values())
        t3.add_row(m, f"{px / 1e6:.1f}", f"{s:.1f}", f"{px / 1e6 / max(s, 1e-9):.2f}")
    console.print(t3)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    console.print(f"peak RSS of this benchmark process: {peak_mb:.0f} MB (see `geodelta bench scale` for the 20,000 x 20,000 px memory bound)")
    summary["peak_rss_mb"] = peak_mb
    return summary


if __name__ == "__main__":
    main()
