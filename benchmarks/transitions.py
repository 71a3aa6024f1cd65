"""`geodelta bench transitions`: does a land-cover transition between the dates improve the learned change mask?

Issue 14 proposed a change decision that combines the learned pixel change (siamese_v3, the `learned` masker)
with a confident land-cover transition (post-classification comparison with the RGB land-cover classifier,
landcover_rgb_v2). This benchmark measures it both ways on real labelled RGB pairs:
- the classifier runs on square patches (`--patch` px, half-overlapping) at each date; per pixel, the patch
  probabilities are averaged, and P(same class) = sum_k p_before(k) p_after(k) (the dates taken as independent);
- `pcc t`: post-classification comparison alone, change where 1 - P(same) >= t;
- `learned + pcc t & p >= q`: the learned mask, plus pixels in a confident transition whose learned
  probability is at least q (a transition lowers the threshold: more recall);
- `learned & not same s`: the learned mask, minus pixels whose cover is confidently unchanged (more precision).
Scenes are scored per group, train and held-out apart (train.VAL_SPLIT): tune on train, read held-out.
Prints micro pixel precision / recall / F1 per group and variant.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import numpy as np
from rich.console import Console
from rich.table import Table

from geodelta.perception.evaluation import metrics
from geodelta.perception.evaluation.datasets import LabelledPair, labelled_pairs
from geodelta.perception.landcover.rgb import classify_chips
from geodelta.perception.learned.siamese import LearnedMasker
from geodelta.perception.learned.train import held_out
from geodelta.settings import Settings

RGB_DOMAINS = ("sztaki", "levir", "whu", "beijing")  # RGB pairs: where the RGB classifier applies


def patch_probs(img: np.ndarray, patch: int) -> np.ndarray:
    """(7, h, w) land-cover probabilities per pixel: the mean over the half-overlapping patches that cover it."""
    h, w = img.shape[1:]
    step = max(patch // 2, 1)
    rows = sorted({*range(0, max(h - patch, 0) + 1, step), max(h - patch, 0)})
    cols = sorted({*range(0, max(w - patch, 0) + 1, step), max(w - patch, 0)})
    boxes = [(r, c) for r in rows for c in cols]
    probs = classify_chips([np.ascontiguousarray(np.moveaxis(img[:, r:r + patch, c:c + patch], 0, -1)) for r, c in boxes])
    acc = np.zeros((probs.shape[1], h, w), np.float32)
    n = np.zeros((h, w), np.float32)
    for (r, c), p in zip(boxes, probs):
        acc[:, r:r + patch, c:c + patch] += p[:, None, None]
        n[r:r + patch, c:c + patch] += 1
    return acc / np.maximum(n, 1)


def variants(prob: np.ndarray, same: np.ndarray) -> Iterator[tuple[str, np.ndarray]]:
    """(name, change mask) of every rule measured."""
    learned = prob >= 0.5
    yield "learned (siamese_v3 alone)", learned
    for t in (0.8, 0.9):
        yield f"pcc {t}", (1 - same) >= t
        for q in (0.2, 0.3):
            yield f"learned + pcc {t} & p >= {q}", learned | (((1 - same) >= t) & (prob >= q))
    for s in (0.5, 0.7):
        yield f"learned & not same {s}", learned & ~(same >= s)


def _group(lp: LabelledPair) -> str:
    """"<domain> train" or "<domain> held-out" (the shipped models' split; Beijing was never trained on)."""
    return f"{lp.domain} {'held-out' if held_out(lp) else 'train'}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="geodelta bench transitions", description=__doc__.splitlines()[0])
    ap.add_argument("--domains", default=",".join(RGB_DOMAINS), help=f"comma-separated, of {', '.join(RGB_DOMAINS)}")
    ap.add_argument("--patch", type=int, default=64, help="land-cover patch edge, px (AID chips: 150 px at 0.5-8 m)")
    ap.add_argument("--max-pairs", type=int, default=0, help="at most this many pairs per domain (0: all)")
    args = ap.parse_args(argv)
    masker = LearnedMasker(roles={"red": 0, "green": 1, "blue": 2})
    confs: dict[str, dict[str, list]] = {}
    seen: dict[str, int] = {}
    console = Console()
    for lp in labelled_pairs(Settings().data, [d for d in args.domains.split(",") if d]):
        if args.max_pairs and seen.get(lp.domain, 0) >= args.max_pairs:
            continue
        seen[lp.domain] = seen.get(lp.domain, 0) + 1
        a, b = lp.rgb()
        truth, labelled = lp.truth()
        fa, fb = a.astype(np.float32), b.astype(np.float32)
        sample = slice(None, None, 97)  # every 97th pixel fits the masker (it only checks shapes and roles)
        params = masker.fit(fa.reshape(3, -1)[:, sample], fb.reshape(3, -1)[:, sample])
        prob = np.asarray(masker.score(fa, fb, np.ones(truth.shape, bool), params), np.float32)
        same = (patch_probs(a, args.patch) * patch_probs(b, args.patch)).sum(0)
        group = confs.setdefault(_group(lp), {})
        for name, mask in variants(prob, same):
            group.setdefault(name, []).append(metrics.confusion(mask, truth, labelled))
        console.print(f"[dim]{lp.domain} {lp.name}: {truth.shape[1]} x {truth.shape[0]} px[/dim]")
    table = Table(title=f"Learned change with land-cover transitions ({args.patch} px patches): micro pixel P / R / F1")
    for col in ("group", "rule", "precision", "recall", "F1"):
        table.add_column(col, justify="left" if col in ("group", "rule") else "right")
    for group in sorted(confs):
        for name, cs in confs[group].items():
            s = metrics.scores(metrics.merge(cs))
            table.add_row(group, name, f"{s['precision']:.3f}", f"{s['recall']:.3f}", f"{s['f1']:.3f}")
    console.print(table)
    return 0
