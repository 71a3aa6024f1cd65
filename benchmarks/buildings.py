"""`geodelta bench buildings`: the building head's component filter, on training and held-out scenes.

The `buildings` masker (effnet_siamese_v1's building head) drops mask components whose mean probability is below
`BuildingMasker.min_component_mean`. This benchmark reproduces that choice. Each labelled building pair (LEVIR
crops with the train/val extras, WHU tiles, Beijing) is scored whole. It is thresholded at 0.5 and cleaned as the
engines clean a window (min 16 px), and its 4-connected components are dropped below each mean in `--means`.
Prints micro pixel F1 and object F1 (watershed-split objects matched at IoU >= 0.5, as in `bench change`) per group.
Train and held-out scenes are shown apart (train.VAL_SPLIT; Beijing was never trained on).
"""

from __future__ import annotations

import argparse

import numpy as np
from rich.console import Console
from rich.table import Table
from scipy import ndimage

from geodelta.perception.change import objects
from geodelta.perception.change.maskers import clean_mask
from geodelta.perception.evaluation.datasets import LabelledPair, labelled_pairs
from geodelta.perception.learned.siamese import BuildingMasker
from geodelta.perception.learned.train import held_out
from geodelta.settings import Settings

DOMAINS = ("levir", "whu", "beijing")
MIN_PX = 16  # the product's minimum region size (DetectOptions.min_area_px)


def _group(lp: LabelledPair) -> str:
    return f"{lp.domain} {'held-out' if held_out(lp) else 'train'}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="geodelta bench buildings", description=__doc__.splitlines()[0])
    ap.add_argument("--domains", default=",".join(DOMAINS), help=f"comma-separated, of {', '.join(DOMAINS)}")
    ap.add_argument("--means", default="0,0.6,0.7,0.8,0.85", help="minimum component mean probabilities to compare")
    args = ap.parse_args(argv)
    means = [float(x) for x in args.means.split(",")]
    masker = BuildingMasker(roles={"red": 0, "green": 1, "blue": 2})
    sums: dict[tuple[str, float], np.ndarray] = {}
    console = Console()
    for lp in labelled_pairs(Settings().data, [d for d in args.domains.split(",") if d], extra=True):
        a, b = (x.astype(np.float32) for x in lp.rgb())
        truth, labelled = lp.truth()
        everywhere = np.ones(truth.shape, bool)
        params = masker.fit(a.reshape(3, -1)[:, ::97], b.reshape(3, -1)[:, ::97])  # it checks shapes and roles only
        prob = np.asarray(masker.score(a, b, everywhere, params), np.float32)
        cc, n = ndimage.label(clean_mask(prob >= 0.5, everywhere, min_pixels=MIN_PX))
        mean = np.concatenate([[0.0], ndimage.mean(prob, cc, np.arange(1, n + 1))]) if n else np.zeros(1)
        for m in means:
            keep = mean >= m
            keep[0] = False
            pred = keep[cc]
            o = objects.match_objects(objects.split_objects(pred & labelled), objects.components(truth & labelled), labelled)
            counts = [(pred & truth & labelled).sum(), (pred & ~truth & labelled).sum(), (~pred & truth & labelled).sum(),
                      o["tp"], o["n_pred"], o["n_truth"]]
            sums[(_group(lp), m)] = sums.get((_group(lp), m), np.zeros(6, np.int64)) + np.array(counts, np.int64)
        console.print(f"[dim]{lp.domain} {lp.name}: {n} components[/dim]")
    table = Table(title="Building head: components below a mean probability dropped (pixel F1, object F1)")
    for col in ("group", "min mean", "pixel F1", "object F1", "objects (pred / label)"):
        table.add_column(col, justify="left" if col == "group" else "right")
    for (group, m), (tp, fp, fn, otp, npred, ntruth) in sorted(sums.items()):
        table.add_row(group, f"{m:g}", f"{2 * tp / max(2 * tp + fp + fn, 1):.3f}", f"{2 * otp / max(npred + ntruth, 1):.3f}",
                      f"{npred} / {ntruth}")
    console.print(table)
    return 0
