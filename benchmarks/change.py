"""`geodelta bench change`: each masker on every labelled real pair, per domain, beside published models.

Runs the same path as `geodelta detect` (open_pair -> fit -> tiled score -> clean -> change.tif) and
scores change.tif against the labels (micro-averaged over the pairs of a domain). Prints:
1. F1 per domain and method on all labelled pairs, and the mean F1 over domains;
2. F1 on the held-out scenes only (perception.train.VAL_SPLIT, never trained on): the fair table for
   `learned`, whose other rows include its training pairs;
3. precision / recall / F1 / IoU per method and domain;
4. on the LEVIR-CD test crops, the F1 of the seven published predictions stored with the crops, on
   all 7 crops and on the 2 held-out ones;
5. held-out pixel F1 beside object F1 (touching objects split by watershed, a match at IoU >= 0.5,
   perception/change/objects.py), and which masker `auto` chose per domain against the best single method;
6. throughput (megapixels per second of the detect stage), the learned model's pure inference speed
   (onnxruntime on a 1024 px window, the threads this machine has) and the process's peak RSS.
Domains with band roles the files do not carry (OMBRIA) are opened with them declared, as a user would.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from PIL import Image
from rich.console import Console
from rich.table import Table

from geodelta.contracts import DetectOptions
from geodelta.errors import GeoDeltaError
from geodelta.perception.change import objects
from geodelta.perception.evaluation import metrics
from geodelta.perception.evaluation.datasets import DOMAINS, EXTRA_DOMAINS, labelled_pairs
from geodelta.perception.io.reader import open_pair
from geodelta.perception.pipeline.detect import detect_stage
from geodelta.settings import Settings


def pairs_for(data: Path, domains: list[str], max_pairs: int = 0) -> list:
    """The labelled pairs of `domains`; with max_pairs > 0 at most that many per domain: the validation scenes
    (perception.train.VAL_SPLIT) first, the rest evenly spaced (deterministic)."""
    from geodelta.perception.learned.train import VAL_SPLIT

    by: dict[str, list] = {}
    for lp in labelled_pairs(data, domains):
        by.setdefault(lp.domain, []).append(lp)
    out = []
    for d in domains:
        lps = by.get(d, [])
        if max_pairs and len(lps) > max_pairs:
            val = [lp for lp in lps if lp.name in VAL_SPLIT.get(d, set())][:max_pairs]
            rest = [lp for lp in lps if lp not in val]
            k = max_pairs - len(val)
            lps = val + ([rest[i] for i in np.linspace(0, len(rest) - 1, k).round().astype(int)] if k > 0 and rest else [])
        out.extend(lps)
    return out


def masker_options(given: str) -> dict[str, Any]:
    """`KEY=VALUE;KEY=VALUE` -> masker keyword options, values read as JSON where they parse (1 -> 1, x -> "x")."""
    opts: dict[str, Any] = {}
    for item in filter(None, given.split(";")):
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"masker option {item!r} is not KEY=VALUE")
        try:
            opts[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            opts[key.strip()] = value
    return opts


def method_options(spec: str) -> tuple[str, dict]:
    """(masker name, DetectOptions fields) of a --methods entry: `learned@MODEL` is the learned masker with another
    ONNX file, MODEL a path or a name in geodelta/data/weights (e.g. learned@effnet_siamese_v1);
    `learned@MODEL:TYPE` scores one change-type head of it (e.g. learned@effnet_siamese_v1:building);
    `auto@buildings` is auto for a question about buildings (ChangeQuery.focus), which routes aerial RGB to the
    building-change model; `NAME:KEY=VALUE;...` passes options to masker NAME (e.g. cva:smooth=1)."""
    if spec == "auto@buildings":
        return "auto", {"focus": "buildings"}
    if not spec.startswith("learned@"):
        name, _, given = spec.partition(":")
        return name, ({"masker_opts": masker_options(given)} if given else {})
    from geodelta.perception.learned import siamese as learned

    model, _, kind = spec.split("@", 1)[1].partition(":")
    path = Path(model) if Path(model).suffix in (".onnx", ".pt") else learned.default_weights().parent / f"{model}.onnx"
    return "learned", {"masker_opts": {"weights": str(path)} | ({"change_type": kind} if kind else {})}


def run_method(method: str, data: Path, domains: list[str], tmp: Path, refine: str | None = None,
               pairs: list | None = None) -> tuple[dict, dict, dict, dict]:
    """Per (domain, pair name): pixel confusion, object counts and the masker `auto` chose; (pixels, seconds)
    per domain, for one masker, optionally refined by a training-free refiner (perception/refine/)."""
    from geodelta.perception.refine.registry import get_refiner
    from geodelta.perception.refine.stage import refine_stage

    confs: dict[tuple[str, str], dict] = {}
    objs: dict[tuple[str, str], dict] = {}
    chosen: dict[tuple[str, str], str] = {}
    speed: dict[str, list[float]] = {d: [0, 0.0] for d in domains}
    for lp in pairs if pairs is not None else labelled_pairs(data, domains):
        pair = open_pair(lp.before, lp.after, bands=lp.bands)
        out = tmp / method / lp.domain / lp.name.replace("/", "_")
        t0 = time.perf_counter()
        name, opts = method_options(method)
        try:
            det = detect_stage(pair, out, DetectOptions(method=name, min_area_m2=0.0, min_area_px=0, **opts))
        except GeoDeltaError as e:  # e.g. the learned model on bands without red (OMBRIA): not applicable, shown as "-"
            print(f"{method} skips {lp.domain}/{lp.name}: {e}"[:200])
            continue
        dt = time.perf_counter() - t0 - det.timings.get("polygonise_s", 0.0)
        change_tif = det.change_tif
        if refine:
            change_tif, _ = refine_stage(pair, det.change_tif, det.prob_tif, out, get_refiner(refine), min_area_px=0)
            dt = time.perf_counter() - t0
        with rasterio.open(change_tif) as src:
            pred = src.read(1) == 1
        truth, labelled = lp.truth()
        key = (lp.domain, lp.name)
        confs[key] = metrics.confusion(pred, truth, labelled)
        objs[key] = objects.match_objects(objects.split_objects(pred & labelled), objects.components(truth & labelled), labelled)
        chosen[key] = det.params.get("chosen", method)
        speed[lp.domain][0] += pair.grid.width * pair.grid.height
        speed[lp.domain][1] += dt
    return confs, speed, objs, chosen


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


def held_out_tables(results, objs, chosen, methods, domains, held_out):
    """(pixel F1 | object F1 table on held-out pairs, auto-vs-best table or None, {method: {domain: object scores}})."""
    table = Table(title="Held-out scenes: pixel F1 | object F1 (watershed-split objects, match at IoU >= 0.5)")
    table.add_column("domain")
    for m in methods:
        table.add_column(m, justify="right")
    pix = {m: per_domain(results[m], held_out) for m in methods}
    obj: dict[str, dict[str, dict]] = {}
    for m in methods:
        by: dict[str, list[dict]] = {}
        for (d, name), c in objs[m].items():
            if held_out(d, name):
                by.setdefault(d, []).append(c)
        obj[m] = {d: objects.object_scores(cs) for d, cs in by.items()}
    for d in domains:
        if any(d in pix[m] for m in methods):
            table.add_row(d, *(f"{pix[m][d]['f1']:.3f} | {obj[m][d]['f1']:.3f}" if d in pix[m] else "-" for m in methods))
    auto_tab = None
    if "auto" in methods:
        auto_tab = Table(title="auto: the masker it chose per held-out domain vs the best single method (pixel F1)")
        for col in ("domain", "auto chose", "auto F1", "best single", "best F1", "auto >= best"):
            auto_tab.add_column(col)
        singles = [m for m in methods if m != "auto" and "+" not in m]
        for d in domains:
            if d not in pix["auto"] or not singles:
                continue
            picks = sorted({c for (dd, name), c in chosen["auto"].items() if dd == d and held_out(dd, name)})
            covering = [m for m in singles if d in pix[m]]
            if not covering:  # e.g. OMBRIA with only learned maskers, which need a red band
                continue
            best = max(covering, key=lambda m: pix[m][d]["f1"])
            a, b = pix["auto"][d]["f1"], pix[best][d]["f1"]
            auto_tab.add_row(d, ",".join(picks), f"{a:.3f}", best, f"{b:.3f}", "yes" if a >= b - 1e-9 else "no")
    return table, auto_tab, {m: {d: v for d, v in obj[m].items()} for m in methods}


def learned_inference_speed(data: Path, repeats: int = 3, weights: str | None = None) -> float | None:
    """Megapixels per second of an ONNX change model alone (default: the shipped one) on a real 1024 x 1024 px
    window (WHU), through onnx_infer.predict with its default threads, sub-tile and batch."""
    from rasterio.windows import Window

    from geodelta.perception.learned import onnx_infer
    from geodelta.perception.learned import siamese as learned

    root = data / "whu_tiles"
    if not (root / "A" / "000213.png").is_file():
        return None
    with open_pair(root / "A" / "000213.png", root / "B" / "000213.png") as pair:
        xa, xb = learned.prepare_window(pair, Window(0, 0, pair.grid.width, pair.grid.height))
    sess, _, _ = onnx_infer.load_session(str(weights or learned.shipped_model("siamese_v3")))
    onnx_infer.predict(sess, xa[:, :256, :256], xb[:, :256, :256])  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeats):
        onnx_infer.predict(sess, xa, xb)
    return repeats * xa.shape[1] * xa.shape[2] / 1e6 / (time.perf_counter() - t0)


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
    ap.add_argument("--methods", default="cva,irmad,learned,auto")
    ap.add_argument("--domains", default=",".join(DOMAINS + EXTRA_DOMAINS))
    ap.add_argument("--max-pairs", type=int, default=0, help="at most this many pairs per domain, evenly spaced (0: all)")
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
    objs: dict[str, dict] = {}
    chosen: dict[str, dict] = {}
    pairs = pairs_for(data, domains, args.max_pairs)
    with tempfile.TemporaryDirectory() as tmp:
        for (m, r), label in zip(runs, methods):
            console.print(f"[dim]running {label} on {', '.join(domains)} ({len(pairs)} pairs) ...[/dim]")
            results[label], speeds[label], objs[label], chosen[label] = run_method(m, data, domains, Path(tmp), refine=r, pairs=pairs)

    from geodelta.perception.learned.train import TRAIN_DOMAINS, VAL_SPLIT  # torch-free: torch is imported only when training

    # held out: the validation scenes, and every pair of a domain the learned model never trained on
    held_out = lambda d, name: name in VAL_SPLIT.get(d, set()) or d not in TRAIN_DOMAINS  # noqa: E731
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
            kind = ("ours, trained on 5 of the 7 crops (not the held-out ones)" if m.startswith(("learned", "auto"))
                    else "ours, training-free")
            val = scores_val[m].get("levir")
            t2.add_row(f"geodelta {m}", f"{scores[m]['levir']['f1']:.3f}", f"{val['f1']:.3f}" if val else "-", kind, style="bold")
        console.print(t2)
        summary["published"] = pub
        summary["published_held_out"] = pub_val

    held_tab, auto_tab, summary["object_f1_held_out"] = held_out_tables(results, objs, chosen, methods, domains, held_out)
    console.print(held_tab)
    if auto_tab is not None:
        console.print(auto_tab)

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
    if "learned" in base or "auto" in base or "buildings" in base:
        from geodelta.perception.learned.siamese import shipped_model

        for model in ("siamese_v3", "effnet_siamese_v1"):
            for precision in ("int8", "float"):  # each model's default: siamese.DEFAULT_PRECISION
                mps = learned_inference_speed(data, weights=str(shipped_model(model, precision)))
                if mps is None:
                    continue
                console.print(f"{model} {precision} inference (onnxruntime, 1024 x 1024 px WHU window, {os.cpu_count()} "
                              f"CPU cores): {mps:.2f} Mpx/s (goal >= 2)")
                summary.setdefault("inference_mpx_s", {})[f"{model}:{precision}"] = mps
        summary["learned_inference_mpx_s"] = summary.get("inference_mpx_s", {}).get("siamese_v3:int8")
    for m in base:
        if m.startswith("learned@"):
            mps = learned_inference_speed(data, weights=method_options(m)[1]["masker_opts"]["weights"])
            if mps is not None:
                console.print(f"{m} inference (onnxruntime, 1024 x 1024 px WHU window, {os.cpu_count()} CPU cores): "
                              f"{mps:.2f} Mpx/s (goal >= 2)")
                summary.setdefault("inference_mpx_s", {})[m] = mps
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    console.print(f"peak RSS of this benchmark process: {peak_mb:.0f} MB (see `geodelta bench scale` for the 20,000 x 20,000 px memory bound)")
    summary["peak_rss_mb"] = peak_mb
    return summary


if __name__ == "__main__":
    main()
