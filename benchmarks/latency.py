"""`geodelta bench latency`: the demo question's time, cold (a new process: imports, Assistant, question) and
warm (a second and third question in the same Assistant), with each tool call's time from the audit trail.

Each repeat is a new Python process with a fresh memory file and output folder, so "cold" is what a
user of `geodelta ask` or a freshly started chat worker waits; "warm" is a chat platform's steady state.
Goals (issue 15): warm < 1 s, cold < 3 s.

    geodelta bench latency --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile

from geodelta.settings import Settings

QUESTIONS = ("Where did farmland get built over?", "where did new water appear?", "did any trees disappear?")

_CHILD = r"""
import json, os, sys, time
t0 = time.perf_counter()
def cpu():
    t = os.times()
    return t.user + t.system
from geodelta import Assistant
from geodelta.settings import Settings
t_import = time.perf_counter() - t0
db, out, before, after = sys.argv[1:5]
questions = json.loads(sys.argv[5])
a = Assistant(Settings(db=db, out=out, backend="embedded"))
t_init = time.perf_counter() - t0 - t_import
times, cpus, audits = [], [], []
for q in questions:
    t, c = time.perf_counter(), cpu()
    ans = a.ask(q, before=before, after=after)
    times.append(time.perf_counter() - t)
    cpus.append(cpu() - c)
    audits.append(ans.audit_id)
cold = time.perf_counter() - t0 - sum(times[1:])
cold_cpu = cpu() - sum(cpus[1:])  # this process's CPU seconds from start to the first answer
tools = []
for run in audits:
    tools.append({e.tool: round(e.duration_ms or 0.0, 1) for e in a.memory.run_events(run) if e.kind == "tool_result"})
a.close()
print(json.dumps({"import": t_import, "init": t_init, "questions": times, "cold": cold, "tools": tools,
                  "cold_cpu": cold_cpu, "warm_cpu": cpus[1:]}))
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="geodelta bench latency", description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="new processes to run (default 3; medians printed)")
    args = ap.parse_args(argv)
    demo = Settings().data / "demo"
    before, after = demo / "taizhou_before_2000-03-17_landsat7_etm.tif", demo / "taizhou_after_2003-02-06_landsat7_etm.tif"
    if not before.is_file():
        print(f"demo scene not found under {demo}: set GEODELTA_DATA to ../shared/data", file=sys.stderr)
        return 2
    runs = []
    for i in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="geodelta-latency-") as tmp:
            res = subprocess.run([sys.executable, "-c", _CHILD, f"{tmp}/gd.db", f"{tmp}/out", str(before), str(after),
                                  json.dumps(QUESTIONS)], capture_output=True, text=True, timeout=600, check=False)
        if res.returncode != 0:
            print(res.stderr[-2000:], file=sys.stderr)
            return 1
        r = json.loads(res.stdout.strip().splitlines()[-1])
        runs.append(r)
        print(f"run {i + 1}: cold {r['cold']:.2f} s (import {r['import']:.2f}, Assistant {r['init']:.2f}, question "
              f"{r['questions'][0]:.2f}); warm {', '.join(f'{t:.2f}' for t in r['questions'][1:])} s; CPU s: cold "
              f"{r['cold_cpu']:.2f}, warm {', '.join(f'{t:.2f}' for t in r['warm_cpu'])}", flush=True)

    def med(f):
        return statistics.median(f(r) for r in runs)

    # CPU seconds beside wall seconds: on a shared machine wall time also counts other people's work
    print(f"\n| demo question (median of {len(runs)} processes) | wall s | CPU s | goal (wall) |")
    print("| --- | ---: | ---: | --- |")
    print(f"| import geodelta + langgraph | {med(lambda r: r['import']):.2f} | | |")
    print(f"| Assistant() | {med(lambda r: r['init']):.2f} | | |")
    print(f"| first question | {med(lambda r: r['questions'][0]):.2f} | | |")
    print(f"| **cold** (new process to answer) | {med(lambda r: r['cold']):.2f} | {med(lambda r: r['cold_cpu']):.2f} | < 3 |")
    print(f"| **warm** (next question, same Assistant) | {med(lambda r: statistics.median(r['questions'][1:])):.2f} | "
          f"{med(lambda r: statistics.median(r['warm_cpu'])):.2f} | < 1 |")
    names = list(runs[0]["tools"][0])
    print("\n| tool (ms, median) | first question | warm question |")
    print("| --- | ---: | ---: |")
    for n in names:
        first = [r["tools"][0].get(n, 0.0) for r in runs]
        warm = [t.get(n, 0.0) for r in runs for t in r["tools"][1:]]
        print(f"| {n} | {statistics.median(first):.0f} | {statistics.median(warm):.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
