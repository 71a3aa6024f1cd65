"""`geodelta train`: train the Siamese change network from scratch on the labelled pairs in GEODELTA_DATA.

Scenes are split by scene (VAL_SPLIT is held out whole; Taizhou is validation only). Training draws
random crops domain-balanced (half of them centred on a change pixel), with strong augmentation
for cross-domain robustness: random rescale (scale), flips / rot90, per-date gain, offset, contrast
curve, channel mixing and illumination ramps (radiometry, season, sensor), blur and noise, NIR
dropout, 0-2 px misregistration and identical-scene "no change" pairs. Loss: positive-weighted BCE
+ soft Dice. Early stopping on the mean per-domain validation F1, with a wall-clock budget.
"""

from __future__ import annotations

import argparse
import copy
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from geodelta.contracts import DetectOptions
from geodelta.perception.evaluation import metrics
from geodelta.perception.evaluation.datasets import LabelledPair, labelled_pairs
from geodelta.perception.learned import siamese as learned

TRAIN_DOMAINS = ("levir", "whu", "sztaki", "oscd")
# Held out whole for validation / early stopping (scene split): both LEVIR crops of test image 2,
# one WHU tile, Szada/1 (the usual test pair, SZTAKI SOURCE.md), two OSCD cities, the Taizhou pair.
VAL_SPLIT: dict[str, set[str]] = {
    "levir": {"test_2_0000_0000", "test_2_0000_0512"},
    "whu": {"000213"},
    "sztaki": {"Szada/1"},
    "oscd": {"aguasclaras", "rennes"},
    "landsat": {"taizhou"},
}


def held_out(lp: LabelledPair) -> bool:
    """True for a scene the shipped change models never trained on: in VAL_SPLIT, or of a domain they did not train on."""
    return lp.domain not in TRAIN_DOMAINS or lp.name in VAL_SPLIT.get(lp.domain, set())


POS_WEIGHT = 3.0  # BCE weight of change pixels (about 5-15 % of labelled pixels are change)
SCALE_RANGE = (0.25, 2.0)  # random rescale factor (log-uniform); 0.25 beat 0.5 on every held-out domain (v3 vs v2)


@dataclass
class Scene:
    """One labelled pair prepared for the network: (IN_CH, h, w) float32 per date, labels (h, w)."""

    domain: str
    name: str
    a: np.ndarray
    b: np.ndarray
    truth: np.ndarray  # bool, change
    labelled: np.ndarray  # bool, pixel has a label and both dates are valid
    change_idx: np.ndarray  # flat indices of labelled change pixels


def load_scene(lp: LabelledPair) -> Scene:
    """Read a labelled pair whole (the same reader and band roles as `geodelta detect`) and prepare it."""
    from rasterio.windows import Window

    from geodelta.perception.io.reader import open_pair
    from geodelta.perception.pipeline.detect import pair_roles

    with open_pair(lp.before, lp.after) as pair:
        a, b, valid = pair.read(Window(0, 0, pair.grid.width, pair.grid.height))
        idx, has_nir = learned.channel_indices(a.shape[0], pair_roles(pair))
    ca, sa = learned.channel_stats(a[idx][:, valid])
    cb, sb = learned.channel_stats(b[idx][:, valid])
    truth, labelled = lp.truth()
    labelled = labelled & valid
    truth = truth & labelled
    return Scene(lp.domain, lp.name, learned.prepare(a, idx, has_nir, ca, sa, valid),
                 learned.prepare(b, idx, has_nir, cb, sb, valid), truth, labelled, np.flatnonzero(truth))


def split_pairs(data: Path, val_split: dict[str, set[str]], domains=None, *, extra: bool = True) -> tuple[list[LabelledPair], list[LabelledPair]]:
    """(train, validation) labelled pairs; pairs whose files are missing are skipped."""
    domains = tuple(domains or (*TRAIN_DOMAINS, "landsat"))
    train, val = [], []
    for lp in labelled_pairs(data, domains, extra=extra):
        if not (lp.label.exists() and lp.before.exists() and lp.after.exists()):
            continue
        if lp.name in val_split.get(lp.domain, set()):
            val.append(lp)
        elif lp.domain in TRAIN_DOMAINS:
            train.append(lp)
    return train, val


# ---------------------------------------------------------------- sampling and augmentation


def _crop(x: np.ndarray, r: int, c: int, size: int) -> np.ndarray:
    """x[..., r:r+size, c:c+size] with edge padding where the window leaves the image."""
    h, w = x.shape[-2:]
    r0, c0, r1, c1 = max(r, 0), max(c, 0), min(r + size, h), min(c + size, w)
    out = x[..., r0:r1, c0:c1]
    pad = [(0, 0)] * (x.ndim - 2) + [(r0 - r, r + size - r1), (c0 - c, c + size - c1)]
    return np.pad(out, pad, mode="edge") if any(p != (0, 0) for p in pad) else out


def _radiometry(x, rng: np.random.Generator, torch):
    """Per-sample, per-date jitter of a (N, C, s, s) standardised batch: gain, offset, contrast curve,
    RGB mixing, illumination ramp (season / sensor / sun angle), then blur and noise."""
    n, c = x.shape[0], x.shape[1] - 1  # the last channel is the NIR flag: never jittered
    f32 = dict(dtype=x.dtype)
    v = x[:, :c]
    gain = np.exp(rng.normal(0, 0.12, (n, c)) + rng.normal(0, 0.2, (n, 1)))
    off = rng.normal(0, 0.15, (n, c)) + rng.normal(0, 0.3, (n, 1))
    v = v * torch.tensor(gain, **f32)[..., None, None] + torch.tensor(off, **f32)[..., None, None]
    k = torch.tensor(rng.uniform(-0.4, 0.4, n), **f32)[:, None, None, None]  # x + k tanh(x): monotone for |k| < 1
    v = v + k * torch.tanh(v)
    mix = torch.tensor(np.eye(3) + rng.normal(0, 0.06, (n, 3, 3)), **f32)  # sensor spectral response differences
    v = torch.cat([torch.einsum("nij,njhw->nihw", mix, v[:, :3]), v[:, 3:]], 1)
    s = v.shape[-1]
    ramp = torch.linspace(-1, 1, s, **f32)
    gy = torch.tensor(rng.normal(0, 0.15, n), **f32)[:, None, None, None] * ramp[None, None, :, None]
    gx = torch.tensor(rng.normal(0, 0.15, n), **f32)[:, None, None, None] * ramp[None, None, None, :]
    v = v + gx + gy
    blur = torch.tensor(rng.random(n) < 0.2)[:, None, None, None]
    v = torch.where(blur, torch.nn.functional.avg_pool2d(v, 3, 1, 1, count_include_pad=False), v)
    sigma = torch.tensor(rng.uniform(0, 0.15, n) * (rng.random(n) < 0.5), **f32)[:, None, None, None]
    v = v + torch.randn(v.shape, **f32) * sigma
    v = torch.cat([v[:, :3], v[:, 3:] * x[:, c:]], 1)  # no NIR: the channel stays 0, as at inference
    return torch.cat([v.clamp(-8, 8), x[:, c:]], 1)


class Sampler:
    """Domain-balanced random crops with augmentation; deterministic for a given seed."""

    def __init__(self, scenes: list[Scene], crop: int, seed: int, scale_range: tuple[float, float] = SCALE_RANGE):
        self.crop, self.rng, self.scale_range = crop, np.random.default_rng(seed), tuple(scale_range)
        self.by_domain: dict[str, list[Scene]] = {}
        for s in scenes:
            self.by_domain.setdefault(s.domain, []).append(s)
        self.domains = sorted(self.by_domain)

    def one(self, torch):
        rng, crop = self.rng, self.crop
        scenes = self.by_domain[self.domains[rng.integers(len(self.domains))]]
        areas = np.array([s.truth.size for s in scenes], float)
        sc = scenes[rng.choice(len(scenes), p=areas / areas.sum())]
        h, w = sc.truth.shape
        has_nir = bool(sc.a[-1, 0, 0] > 0.5)
        scale = math.exp(rng.uniform(*np.log(self.scale_range)))
        src = max(8, min(int(round(crop / scale)), h, w))
        if sc.change_idx.size and rng.random() < 0.5:
            cy, cx = divmod(int(sc.change_idx[rng.integers(sc.change_idx.size)]), w)
            r, c = cy - src // 2 + int(rng.integers(-src // 4, src // 4 + 1)), cx - src // 2 + int(rng.integers(-src // 4, src // 4 + 1))
            r, c = int(np.clip(r, 0, h - src)), int(np.clip(c, 0, w - src))
        else:
            r, c = int(rng.integers(0, h - src + 1)), int(rng.integers(0, w - src + 1))
        same = rng.random() < 0.1  # an unchanged pair: one date twice, all "no change"
        dr, dc = (rng.integers(-2, 3, 2) if rng.random() < 0.3 else (0, 0))
        a = _crop(sc.a, r, c, src)
        b = _crop(sc.a if same else sc.b, r + int(dr), c + int(dc), src)
        y = np.zeros((src, src), np.float32) if same else _crop(sc.truth, r, c, src).astype(np.float32)
        m = _crop(sc.labelled, r, c, src).astype(np.float32)
        arr = np.concatenate([a, b, y[None], m[None]], 0).astype(np.float32)
        arr = np.rot90(arr, int(rng.integers(4)), (1, 2))
        arr = arr[:, :, ::-1] if rng.random() < 0.5 else arr
        t = torch.from_numpy(np.ascontiguousarray(arr))
        if src != crop:
            t = torch.nn.functional.interpolate(t[None], size=(crop, crop), mode="bilinear", align_corners=False,
                                                antialias=src > crop)[0]
        ch = learned.IN_CH
        a, b = t[:ch], t[ch:2 * ch]
        if has_nir and rng.random() < 0.3:  # NIR dropout: the same scene as an RGB-only pair
            a, b = a.clone(), b.clone()
            a[3:] = 0
            b[3:] = 0
        return a, b, (t[2 * ch] > 0.5).float()[None], (t[2 * ch + 1] > 0.5).float()[None]

    def batch(self, n: int, torch):
        items = [self.one(torch) for _ in range(n)]
        a, b, y, m = (torch.stack([it[i] for it in items]) for i in range(4))
        return _radiometry(a, self.rng, torch), _radiometry(b, self.rng, torch), y, m


def loss_fn(logits, y, m, torch):
    """Positive-weighted BCE over labelled pixels + soft Dice of the change class (batch-wise)."""
    F = torch.nn.functional
    bce = F.binary_cross_entropy_with_logits(logits, y, weight=m * (1 + (POS_WEIGHT - 1) * y), reduction="sum") / m.sum().clamp(min=1)
    p = torch.sigmoid(logits) * m
    dice = 1 - (2 * (p * y).sum() + 1) / (p.sum() + (y * m).sum() + 1)
    return bce + dice


# ---------------------------------------------------------------- validation and the loop


def learning_rate(progress: float, peak: float, warmup: float = 0.05) -> float:
    """Linear warm-up to `peak` over the first `warmup` of training, then cosine decay to 1 % of it."""
    progress = min(max(progress, 0.0), 1.0)
    if progress < warmup:
        return peak * (0.1 + 0.9 * progress / warmup)
    t = (progress - warmup) / (1 - warmup)
    return peak * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * t)))


def validate(model, scenes: list[Scene]) -> dict[str, dict[str, float]]:
    """Per-domain micro precision / recall / F1 of prob >= 0.5 on whole validation scenes."""
    model.eval()
    confs: dict[str, list[dict]] = {}
    for s in scenes:
        pred = learned.predict(model, s.a, s.b) >= 0.5
        confs.setdefault(s.domain, []).append(metrics.confusion(pred, s.truth, s.labelled))
    return {d: metrics.scores(metrics.merge(c)) for d, c in confs.items()}


def train(data_dir: str | Path, out_path: str | Path, *, max_minutes: float = 55.0, epochs: int = 110, seed: int = 0,
          steps_per_epoch: int = 100, batch_size: int = 8, crop: int = 96, lr: float = 3e-3, patience: int = 20,
          threads: int = 2, domains: tuple[str, ...] | None = None, val_split: dict[str, set[str]] | None = None,
          max_train_pairs: int | None = None, extra: bool = True, config: dict[str, Any] | None = None,
          scale_range: tuple[float, float] = SCALE_RANGE, quiet: bool = False) -> dict[str, Any]:
    """Train from scratch; write the best checkpoint (by mean validation F1) to out_path; return metrics."""
    torch = learned.require_torch()
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    t_start = time.monotonic()
    torch.set_num_threads(int(threads))
    torch.manual_seed(seed)
    val_split = VAL_SPLIT if val_split is None else val_split
    train_lp, val_lp = split_pairs(Path(data_dir), val_split, domains, extra=extra)
    train_lp = train_lp[:max_train_pairs] if max_train_pairs else train_lp
    if not train_lp:
        from geodelta.errors import InputError

        raise InputError(f"no labelled training pairs found under {data_dir}: set GEODELTA_DATA to ../shared/data")
    train_sc = [load_scene(lp) for lp in train_lp]
    val_sc = [load_scene(lp) for lp in val_lp]
    cfg = learned.DEFAULT_CONFIG | {"widths": [16, 32, 48, 64]} | (config or {})
    model = learned.build_model(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    total = epochs * steps_per_epoch
    budget_s = max_minutes * 60.0
    sampler = Sampler(train_sc, crop, seed, scale_range)
    console = Console(stderr=True, quiet=quiet)
    best: dict[str, Any] = {"score": -1.0, "epoch": 0, "val": {}, "state": copy.deepcopy(model.state_dict())}
    history, stopped, steps, epoch = [], "epochs", 0, 0
    with Progress(TextColumn("[bold]train[/bold] {task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=console, transient=quiet) as bar:
        task = bar.add_task("epoch 0", total=epochs)
        for epoch in range(1, epochs + 1):
            model.train()
            losses = []
            for _ in range(steps_per_epoch):
                # progress: the step count or the wall-clock budget, whichever is further along, so the
                # learning rate is annealed by the end of the budget even when the machine is slower
                progress = max(steps / total, (time.monotonic() - t_start) / budget_s)
                for group in opt.param_groups:
                    group["lr"] = learning_rate(progress, lr)
                a, b, y, m = sampler.batch(batch_size, torch)
                loss = loss_fn(model(a, b), y, m, torch)
                opt.zero_grad()
                loss.backward()
                opt.step()
                steps += 1
                losses.append(float(loss.detach()))
            val = validate(model, val_sc) if val_sc else {}
            score = float(np.mean([v["f1"] for v in val.values()])) if val else -float(np.mean(losses))
            history.append({"epoch": epoch, "loss": float(np.mean(losses)), "mean_f1": score,
                            "f1": {d: round(v["f1"], 4) for d, v in val.items()}})
            if score > best["score"]:
                best = {"score": score, "epoch": epoch, "val": val, "state": copy.deepcopy(model.state_dict())}
            minutes = (time.monotonic() - t_start) / 60
            bar.update(task, advance=1, description=f"epoch {epoch} loss {np.mean(losses):.3f} val F1 {score:.3f} "
                       f"(best {best['score']:.3f} @ {best['epoch']}) " + " ".join(f"{d}={v['f1']:.2f}" for d, v in val.items()))
            if not console.is_terminal:  # a log file: one line per epoch instead of a live bar
                console.log(f"epoch {epoch}: loss {np.mean(losses):.3f}, val F1 {score:.3f} "
                            + " ".join(f"{d}={v['f1']:.3f}" for d, v in val.items()) + f", {minutes:.1f} min")
            if epoch - best["epoch"] >= patience:
                stopped = "early"
                break
            if minutes * (epoch + 1) / epoch > max_minutes:  # the next epoch would overrun the budget
                stopped = "time"
                break
    model.load_state_dict(best["state"])
    minutes = (time.monotonic() - t_start) / 60
    meta = {"name": Path(out_path).stem, "seed": seed, "epochs_run": epoch, "best_epoch": best["epoch"], "steps": steps,
            "batch_size": batch_size, "crop": crop, "lr": lr, "scale_range": list(scale_range), "minutes": round(minutes, 2), "stopped": stopped,
            "train_pairs": [f"{lp.domain}/{lp.name}" for lp in train_lp], "val_pairs": [f"{lp.domain}/{lp.name}" for lp in val_lp],
            "val": {d: {k: round(v, 4) for k, v in s.items()} for d, s in best["val"].items()}}
    sha = learned.save_checkpoint(model, Path(out_path), cfg, meta)
    return meta | {"out": str(out_path), "sha256": sha, "params": learned.count_parameters(model), "history": history}


def compare(data_dir: str | Path, weights: str | Path | None = None, methods=("learned", "irmad"),
            val_split: dict[str, set[str]] | None = None) -> dict[str, dict[str, dict[str, float]]]:
    """Per-domain scores of each masker on the validation pairs through `pipeline.detect_stage`, the path
    of `geodelta detect` and `geodelta bench change` (band subset, scene-wide fit, tiles with halo, clean)."""
    import tempfile

    import rasterio

    from geodelta.perception.io.reader import open_pair
    from geodelta.perception.pipeline.detect import detect_stage

    _, val_lp = split_pairs(Path(data_dir), VAL_SPLIT if val_split is None else val_split)
    out: dict[str, dict[str, list]] = {m: {} for m in methods}
    with tempfile.TemporaryDirectory() as tmp:
        for i, lp in enumerate(val_lp):
            truth, labelled = lp.truth()
            with open_pair(lp.before, lp.after) as pair:
                for m in methods:
                    opts = {"weights": weights} if m == "learned" and weights else {}
                    det = detect_stage(pair, Path(tmp) / f"{m}_{i}", DetectOptions(method=m, min_area_m2=0.0, min_area_px=0,
                                                                                    masker_opts=opts))
                    with rasterio.open(det.change_tif) as src:
                        pred = src.read(1) == 1
                    out[m].setdefault(lp.domain, []).append(metrics.confusion(pred, truth, labelled))
    return {m: {d: metrics.scores(metrics.merge(c)) for d, c in per.items()} for m, per in out.items()}


def _scale_range(text: str) -> tuple[float, float]:
    """'MIN,MAX' -> (MIN, MAX), both positive with MIN <= MAX; InputError otherwise."""
    from geodelta.errors import InputError

    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"--scale-range wants MIN,MAX (e.g. 0.5,2), got {text!r}") from None
    if not 0 < lo <= hi:
        raise InputError(f"--scale-range needs 0 < MIN <= MAX, got {text!r}")
    return lo, hi


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """`geodelta train` / `python -m geodelta.perception.learned.train`; `--arch effnet_siamese` trains the pretrained
    Siamese EfficientNet-Lite0 instead (perception/learned/train_effnet.py, its own options incl. `--resume`)."""
    from geodelta.settings import Settings

    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--arch", default="siamese_v3")
    known, rest = pre.parse_known_args(argv)
    if known.arch == "effnet_siamese":
        from geodelta.perception.learned import train_effnet

        return train_effnet.main(rest)
    if known.arch != "siamese_v3":
        from geodelta.errors import InputError

        raise InputError(f"--arch must be siamese_v3 (the default) or effnet_siamese, got {known.arch!r}")
    argv = rest

    ap = argparse.ArgumentParser(prog="geodelta train", description=__doc__.splitlines()[0],
                                 epilog="--arch siamese_v3|effnet_siamese selects the network (default siamese_v3)")
    ap.add_argument("--data", type=Path, default=None, help="labelled data folder (default: GEODELTA_DATA)")
    ap.add_argument("--out", type=Path, default=Path("siamese_v3.pt"), help="checkpoint to write")
    ap.add_argument("--max-minutes", type=float, default=55.0, help="wall-clock budget incl. data loading")
    ap.add_argument("--epochs", type=int, default=110)
    ap.add_argument("--steps-per-epoch", type=int, default=100, help="training steps between validations")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--crop", type=int, default=96)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--patience", type=int, default=20, help="epochs without a better mean validation F1")
    ap.add_argument("--scale-range", default=f"{SCALE_RANGE[0]},{SCALE_RANGE[1]}",
                    help="random rescale factors MIN,MAX (log-uniform), e.g. 0.25,2")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--compare", action="store_true", help="after training, score learned vs irmad per validation domain")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    data = args.data or Settings().data
    result = train(data, args.out, max_minutes=args.max_minutes, epochs=args.epochs, seed=args.seed,
                   steps_per_epoch=args.steps_per_epoch, batch_size=args.batch_size, crop=args.crop, lr=args.lr,
                   patience=args.patience, threads=args.threads, scale_range=_scale_range(args.scale_range),
                   quiet=args.quiet)
    if args.compare:
        result["compare"] = compare(data, args.out)
    import json
    import sys

    summary = {k: v for k, v in result.items() if k not in ("history", "train_pairs")}
    sys.stdout.write(json.dumps(summary, indent=1, default=str) + "\n")
    return result


if __name__ == "__main__":
    main()
