"""Local-model benchmark: an in-process vision-language model folder as planner and as region classifier.

Planner: each question of `benchmarks/intent_questions.jsonl` (fields as in `benchmarks/intent.py`)
goes through the local backend with the real tool schemas (`with_corrections`, as in the graph);
the first `set_query` call is scored field by field like the embedded planner (a row expecting a
clarification must get a `QUESTION:` back). Classifier: LEVIR-CD changed regions (`levir_crops/label`,
255 = building change) are cut into before/after chips; the model's "after" class should be built_up
(the "before" class is not labelled, so only its distribution is printed).

Run: `python benchmarks/local_model.py --model ~/models/qwen2.5-vl-3b [--device cuda] [--limit 40] [--chips 8]`
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from intent import FIELDS, _area_equal, load_questions  # noqa: E402  (benchmarks/ is not a package)

HELP = """benchmarks/local_model.py needs a model folder on disk (it never downloads one):

  huggingface-cli download Qwen/Qwen2.5-VL-3B-Instruct --local-dir ~/models/qwen2.5-vl-3b
  python benchmarks/local_model.py --model ~/models/qwen2.5-vl-3b [--device cuda|cpu] [--limit 40] [--chips 8]

Any transformers image-text-to-text model folder with a chat template works (Qwen2.5-VL, SmolVLM ...);
its tool calls must use <tool_call>{"name": ..., "arguments": ...}</tool_call> blocks."""


def _fields(query: Any, clarify: str | None, exp: dict[str, Any]) -> dict[str, bool]:
    """Per-field correctness of one reply (the same rules as benchmarks/intent.score)."""
    import math

    if exp.get("clarify"):
        return {f: clarify is not None for f in FIELDS}
    if query is None:
        return {f: False for f in FIELDS}
    got = query.model_dump(mode="json")
    return {
        "from": sorted(got["from_classes"]) == sorted(exp["from_classes"]),
        "to": sorted(got["to_classes"]) == sorted(exp["to_classes"]),
        "direction": got["direction"] == exp["direction"],
        "area": _area_equal(got["area"], exp["area"]),
        "min_area": math.isclose(got["min_area_m2"], exp["min_area_m2"], rel_tol=1e-6, abs_tol=1e-6),
    }


def _messages(row: dict[str, Any], before: str, after: str) -> list[Any]:
    """The planner's input: a follow-up gets the previous turn's set_query call and result first."""
    from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

    from geodelta.agent.state import question_message

    msgs: list[Any] = []
    if row.get("previous"):
        msgs += [
            HumanMessage("(previous question)", additional_kwargs={"geodelta": {"question": True}}),
            AIMessage(content="", tool_calls=[{"name": "set_query", "args": row["previous"], "id": "call_0_set_query"}]),
            ToolMessage(content=json.dumps({"query": row["previous"]}), tool_call_id="call_0_set_query", name="set_query"),
            AIMessage(content="ANSWER: done."),
        ]
    return msgs + [question_message(row["question"], before=before, after=after)]


def bench_planner(model: Any, settings: Any, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-field accuracy and seconds per question of the model's first set_query call."""
    from geodelta.agent.toolcalls import with_corrections
    from geodelta.contracts import ChangeQuery
    from geodelta.errors import ModelError
    from geodelta.tools import ToolContext, build_tools

    tools = build_tools(ToolContext.create(settings))
    bound, schemas = model.bind_tools(tools), {t.name: t.args_schema for t in tools}
    demo = settings.data / "demo"
    before, after = str(demo / "taizhou_before_2000-03-17_landsat7_etm.tif"), str(demo / "taizhou_after_2003-02-06_landsat7_etm.tif")
    scores, seconds, failures, corrections = [], [], [], 0
    for row in rows:
        t0 = time.perf_counter()
        query = clarify = None
        try:
            reply = with_corrections(bound, _messages(row, before, after), schemas, settings.max_corrections)
            corrections += reply.response_metadata.get("geodelta_corrections", 0)
            call = next((c for c in reply.tool_calls if c["name"] == "set_query"), None)
            query = ChangeQuery.model_validate(call["args"]) if call else None
            clarify = reply.additional_kwargs.get("geodelta_clarify")
        except ModelError as exc:
            failures.append({"id": row["id"], "error": str(exc)[:200]})
        seconds.append(time.perf_counter() - t0)
        scores.append({"id": row["id"], "split": row["split"], "fields": _fields(query, clarify, row["expected"])})
    n = len(scores)
    acc = {f: sum(s["fields"][f] for s in scores) / n for f in FIELDS} if n else {}
    acc["all"] = sum(all(s["fields"].values()) for s in scores) / n if n else 0.0
    return {"n": n, "accuracy": acc, "s_per_question": statistics.mean(seconds) if seconds else 0.0,
            "s_median": statistics.median(seconds) if seconds else 0.0, "model_errors": failures, "corrections": corrections}


def levir_chips(data: Path, n: int, out: Path, min_px: int = 64) -> list[tuple[Path, Path]]:
    """Up to n before/after chips (PNG, >= 64 px a side) around LEVIR-CD changed regions, largest first."""
    import numpy as np
    from PIL import Image
    from skimage.measure import label, regionprops

    found = []
    for lab in sorted((data / "levir_crops" / "label").glob("*.png")):
        mask = np.asarray(Image.open(lab)) > 127  # 255 = building change
        for r in regionprops(label(mask)):
            if r.area >= min_px:
                found.append((r.area, lab.name, r.bbox))
    chips = []
    for i, (_, name, (r0, c0, r1, c1)) in enumerate(sorted(found, reverse=True)[:n]):
        cy, cx, half = (r0 + r1) // 2, (c0 + c1) // 2, max(32, (max(r1 - r0, c1 - c0) + 16) // 2)
        box = (max(0, cx - half), max(0, cy - half), min(256, cx + half), min(256, cy + half))
        pair = []
        for d in ("A", "B"):
            p = out / f"chip{i}_{d}_{name}"
            Image.open(data / "levir_crops" / d / name).crop(box).save(p)
            pair.append(p)
        chips.append((pair[0], pair[1]))
    return chips


def bench_chips(model: Any, settings: Any, n: int) -> dict[str, Any]:
    """Share of LEVIR-CD change chips the model calls built_up after, and seconds per chip."""
    from geodelta.agent.models.local import classify_chips

    with tempfile.TemporaryDirectory() as tmp:
        chips = levir_chips(settings.data, n, Path(tmp))
        notes: list[str] = []
        t0 = time.perf_counter()
        got = classify_chips(model, chips, notes=notes)
        dt = time.perf_counter() - t0
    n = len(got)
    return {"n": n, "after_built_up": sum(a == "built_up" for _, a in got) / n if n else 0.0,
            "before": dict(Counter(b for b, _ in got)), "after": dict(Counter(a for _, a in got)),
            "unusable": len(notes), "s_per_chip": dt / n if n else 0.0}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, help="a local model folder (config.json, weights, processor, chat template)")
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16"))
    ap.add_argument("--max-new-tokens", type=int, default=384)
    ap.add_argument("--split", default="all", choices=("all", "tune", "heldout", "blind"))
    ap.add_argument("--limit", type=int, default=0, help="first N questions only (0 = all)")
    ap.add_argument("--chips", type=int, default=8, help="LEVIR-CD change chips to classify (0 = skip)")
    ap.add_argument("--questions", type=Path, default=None)
    ap.add_argument("--json", action="store_true", help="print the result as JSON only")
    args = ap.parse_args(argv)
    if args.model is None:
        print(HELP, file=sys.stderr)
        return 2

    from geodelta.agent.models.local import make_local_model, model_identity
    from geodelta.settings import Settings

    tmp = Path(tempfile.mkdtemp(prefix="geodelta-bench-"))
    settings = Settings(backend="local", vlm_path=args.model, device=args.device, out=tmp / "out", db=tmp / "g.db")
    settings = settings.model_copy(update={"vlm_dtype": args.dtype, "vlm_max_new_tokens": args.max_new_tokens})
    t0 = time.perf_counter()
    model = make_local_model(settings)
    load_s = time.perf_counter() - t0
    rows = [r for r in load_questions(args.questions) if args.split == "all" or r["split"] == args.split]
    rows = rows[: args.limit] if args.limit else rows
    result = {"model": model_identity(settings), "device": model.vlm.device, "load_s": load_s,
              "planner": bench_planner(model, settings, rows)}
    if args.chips:
        result["chips"] = bench_chips(model, settings, args.chips)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    p = result["planner"]
    print(f"model {result['model']['path']} on {result['device']} (loaded in {load_s:.1f} s)")
    print(f"planner: {p['n']} questions, {p['s_per_question']:.2f} s/question (median {p['s_median']:.2f}), "
          f"{len(p['model_errors'])} ModelErrors, {p['corrections']} corrective retries")
    print("  " + "  ".join(f"{k}={v:.1%}" for k, v in p["accuracy"].items()))
    if "chips" in result:
        c = result["chips"]
        print(f"chips: {c['n']} LEVIR-CD change chips, after=built_up {c['after_built_up']:.1%}, {c['unusable']} unusable "
              f"replies, {c['s_per_chip']:.2f} s/chip; before classes {c['before']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
