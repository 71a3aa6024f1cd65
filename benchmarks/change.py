"""`geodelta bench change`: each masker on every labelled real pair, per domain, beside published models.

Runs the same path as `geodelta detect` (open_pair -> fit -> tiled score -> clean -> change.tif) and
scores change.tif against the labels (micro-averaged over the pairs of a domain). Prints:
1. F1 per domain and method on all labelled pairs, and the mean F1 over domains;
2. F1 on the held-out scenes only (perception.train.VAL_SPLIT, never trained on): the fair table for
   `learned`, whose other rows include its training pairs;
3. precision / recall / F1 / IoU per method and domain;
4. on the LEVIR-CD test crops, the F1 of the seven published predictions stored with the crops, on
   all 7 crops and on the 2 held-out ones;
5. throughput (megapixels per second of the detect stage) and the process's peak RSS.
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
    """Confusion per (domain, pair name) and (pixels, seconds) per domain for one masker, optionally
    refined by a training-free refiner (perception/refine.py) before scoring."""
    from geodelta.perception.refine import get_refiner, refine_stage

    confs: dict[tuple[str, str], dict] = {}
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
        confs[(lp.domain, lp.name)] = metrics.confusion(pred, truth, labelled)
        speed[lp.domain][0] += pair.grid.width * pair.grid.height
        speed[lp.domain][1] += dt
    return confs, speed


def per_domain(confs: dict[tuple[str, str], dict], keep=lambda domain, name: True) -> dict[str, dict]:
    """Micro-averaged scores per domain over the pairs that `keep` accepts."""
    by: dict[str, list[dict]] = {}
    for (d, name), c in confs.items():
        if keep(d, name):
            by.setdefault(d, []).append(c)
    return {d: metrics.scores(metrics.merge(c)) for d, c in by.items()}


def f1_table(title: str, scores: dict[str, dict[str, dict]], methods: list[str], domains: list[str]) -> Table:
    """Rows: domains (+ the mean over domains); columns: F1 of each method."""
    table = Table(title=title)
    table.add_column("domain")
    for m in methods:
        table.add_column(m, justify="right")
    for d in domains:
        table.add_row(d, *(f"{scores[m][d]['f1']:.3f}" if d in scores[m] else "-" for m in methods))
    means = [[scores[m][d]["f1"] for d in domains if d in scores[m]] for m in methods]
    table.add_row("mean over domains", *(f"{np.mean(v):.3f}" if v else "-" for v in means), style="bold")
    return table


def published(data: Path, names: set[str] | None = None) -> dict[str, float]:
    """Micro F1 of each `levir_crops/predict_<Method>/` folder on the test crops (those in `names` if given)."""
    root = data / "levir_crops"
    out = {}
    for folder in sorted(root.glob("predict_*")):
        confs = []
        for pred_path in sorted(folder.glob("*.png")):
            if names is not None and pred_path.stem not in names:
                continue
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

    from geodelta.perception.train import VAL_SPLIT  # torch-free: torch is imported only when training

    held_out = lambda d, name: name in VAL_SPLIT.get(d, set())  # noqa: E731
    scores = {m: per_domain(results[m]) for m in methods}
    scores_val = {m: per_domain(results[m], held_out) for m in methods}
    console.print(f1_table("F1, all labelled pairs", scores, methods, domains))
    console.print(f1_table("F1, held-out scenes only",
                           scores_val, methods, domains))
    if any(m.startswith("learned") for m in methods):
        console.print("[yellow]note:[/yellow] `learned` was trained on the pairs outside perception.train.VAL_SPLIT, "
                      "so its 'all labelled pairs' F1 is optimistic; compare methods on the held-out table.")
    detail = Table(title="Precision / recall / F1 / IoU, all labelled pairs")
    for col in ("method", "domain", "P", "R", "F1", "IoU"):
        detail.add_column(col, justify="left" if col in ("method", "domain") else "right")
    for m in methods:
        for d in domains:
            if d in scores[m]:
                s = scores[m][d]
                detail.add_row(m, d, *(f"{s[k]:.3f}" for k in ("precision", "recall", "f1", "iou")))
        detail.add_section()
    console.print(detail)

    summary = {"f1": {m: {d: v["f1"] for d, v in scores[m].items()} for m in methods},
               "f1_held_out": {m: {d: v["f1"] for d, v in scores_val[m].items()} for m in methods}}
    if "levir" in domains:
        held = VAL_SPLIT["levir"]
        pub, pub_val = published(data), published(data, held)
        t2 = Table(title="LEVIR-CD test crops: F1 of published supervised models vs ours")
        t2.add_column("model")
        t2.add_column("F1, 7 test crops", justify="right")
        t2.add_column(f"F1, {len(held)} held-out crops", justify="right")
        t2.add_column("kind")
        for name, f1 in pub.items():
            t2.add_row(name, f"{f1:.3f}", f"{pub_val.get(name, float('nan')):.3f}", "published prediction (trained on LEVIR-CD)")
        for m in methods:
            kind = ("ours, trained on 5 of the 7 crops (not the held-out ones)" if m.startswith("learned")
                    else "ours, training-free")
            val = scores_val[m].get("levir")
            t2.add_row(f"geodelta {m}", f"{scores[m]['levir']['f1']:.3f}", f"{val['f1']:.3f}" if val else "-", kind, style="bold")
        console.print(t2)
        summary["published"] = pub
        summary["published_held_out"] = pub_val

    t3 = Table(title="Detect-stage throughput")
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
