"""Intent benchmark: per-field accuracy of the embedded planner's question -> ChangeQuery reading.

`benchmarks/intent_questions.jsonl` holds questions with the expected fields, split into "tune"
(used while writing the lexicon), "heldout" (written first, in other wordings; the lexicon was designed
with them in view, so read it as a regression set) and "blind" (written after the parser, scored once
and never tuned on: 24/32 all-fields right on that first scoring; the honest generalisation number).
Rows with `"expected": {"clarify": true}` must get a question back; `previous` makes a follow-up.
Run: `python benchmarks/intent.py [--split heldout] [--show-errors]` or `geodelta bench intent`.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

QUESTIONS = Path(__file__).with_name("intent_questions.jsonl")
FIELDS = ("from", "to", "direction", "area", "min_area")


def load_questions(path: Path | None = None) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (path or QUESTIONS).read_text(encoding="utf-8").splitlines() if line.strip()]


def _area_equal(a: dict[str, Any], b: dict[str, Any]) -> bool:
    if a.get("kind") != b.get("kind"):
        return False
    if a["kind"] == "bbox":
        return all(math.isclose(x, y, abs_tol=1e-9) for x, y in zip(a["bbox"], b["bbox"]))
    return a.get("sector") == b.get("sector")


def score(row: dict[str, Any]) -> dict[str, Any]:
    """Which fields the parser got right for one benchmark row."""
    from geodelta.agent.intent import parse_question
    from geodelta.contracts import ChangeQuery

    prev = ChangeQuery.model_validate(row["previous"]) if row.get("previous") else None
    res = parse_question(row["question"], prev)
    exp = row["expected"]
    if exp.get("clarify"):
        ok = res.clarify is not None
        return {"id": row["id"], "fields": {f: ok for f in FIELDS}, "got": {"clarify": res.clarify}}
    q = res.query
    if q is None or res.clarify:
        return {"id": row["id"], "fields": {f: False for f in FIELDS}, "got": {"clarify": res.clarify}}
    got = q.model_dump(mode="json")
    fields = {
        "from": sorted(got["from_classes"]) == sorted(exp["from_classes"]),
        "to": sorted(got["to_classes"]) == sorted(exp["to_classes"]),
        "direction": got["direction"] == exp["direction"],
        "area": _area_equal(got["area"], exp["area"]),
        "min_area": math.isclose(got["min_area_m2"], exp["min_area_m2"], rel_tol=1e-6, abs_tol=1e-6),
    }
    return {"id": row["id"], "fields": fields, "got": {k: got[k] for k in ("from_classes", "to_classes", "direction", "area", "min_area_m2")}}


def bench_intent(path: Path | None = None, split: str | None = None) -> dict[str, Any]:
    """Per-split, per-field accuracy: {"splits": {name: {"n", field: acc, "all": acc}}, "errors": [...]}."""
    rows = [r for r in load_questions(path) if split in (None, "all") or r["split"] == split]
    per: dict[str, list[dict[str, Any]]] = {}
    errors = []
    for r in rows:
        s = score(r)
        per.setdefault(r["split"], []).append(s)
        if not all(s["fields"].values()):
            errors.append({"id": r["id"], "split": r["split"], "question": r["question"], "expected": r["expected"],
                           "got": s["got"], "wrong": [f for f, ok in s["fields"].items() if not ok]})
    out = {}
    for name in sorted(per, key=lambda n: (n != "tune", n)):
        scores = per[name]
        n = len(scores)
        stats: dict[str, Any] = {"n": n}
        for f in FIELDS:
            stats[f] = sum(s["fields"][f] for s in scores) / n
        stats["all"] = sum(all(s["fields"].values()) for s in scores) / n
        out[name] = stats
    return {"splits": out, "errors": errors}


def table(result: dict[str, Any]):
    """A rich Table of the accuracies (one row per split)."""
    from rich.table import Table

    t = Table(title="Intent parsing accuracy (embedded planner)")
    for col in ("split", "n", *FIELDS, "all fields"):
        t.add_column(col, justify="right" if col != "split" else "left")
    for name, s in result["splits"].items():
        t.add_row(name, str(s["n"]), *(f"{s[f]:.1%}" for f in FIELDS), f"{s['all']:.1%}")
    return t


def run(split: str = "all", path: Path | None = None, show_errors: bool = False):
    """Score the questions, print the table (and the misses) with rich, and return the table."""
    from rich.console import Console

    result = bench_intent(path, None if split == "all" else split)
    console = Console()
    t = table(result)
    console.print(t)
    if show_errors:
        for e in result["errors"]:
            console.print(f"[bold]{e['id']}[/] {e['question']!r} wrong={e['wrong']}\n  expected={e['expected']}\n  got={e['got']}")
    return t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", default="all", choices=("all", "tune", "heldout", "blind"))
    ap.add_argument("--questions", type=Path, default=None)
    ap.add_argument("--show-errors", action="store_true")
    ap.add_argument("--json", action="store_true", help="print the result as JSON only")
    args = ap.parse_args(argv)
    if args.json:
        print(json.dumps(bench_intent(args.questions, None if args.split == "all" else args.split), indent=2))
    else:
        run(args.split, args.questions, args.show_errors)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
