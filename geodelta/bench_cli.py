"""`geodelta bench ...`: one command per script in the checkout's benchmarks/ folder (each prints tables)."""

from __future__ import annotations

from pathlib import Path

import typer

from geodelta.errors import InputError

bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks on the real data in GEODELTA_DATA (print tables).")


def _run_benchmark(name: str, argv: list[str]) -> None:
    """Benchmarks live in the checkout's benchmarks/ folder (beside ../shared/data), not in the wheel."""
    import runpy

    script = Path(__file__).resolve().parent.parent / "benchmarks" / f"{name}.py"
    if not script.is_file():
        raise InputError(f"benchmark script {script} not found: benchmarks run from a source checkout of GeoDelta")
    if name in NEEDS_DATA:
        from geodelta.settings import Settings

        data = Settings().data
        if not data.is_dir():
            raise InputError(f"bench {name} reads the labelled data folder, not found at {data}: "
                             "set GEODELTA_DATA to ../shared/data")
    module = runpy.run_path(str(script), run_name=f"geodelta_bench_{name}")
    rc = module["main"](argv)
    if isinstance(rc, int) and rc:  # some benchmarks return an exit status (e.g. 2: data folder missing)
        raise typer.Exit(rc)


# benchmark name -> what it prints; each runs benchmarks/<name>.py main(argv) with the extra arguments
BENCHMARKS = {
    "change": "Per-domain F1 of each masker (all, held-out), refined or not, beside published LEVIR-CD models; speed.",
    "intent": "Per-field accuracy of the embedded planner on the question set (tune / held-out / blind).",
    "latency": "The demo question's time cold (a new process) and warm (next question, same Assistant), per tool.",
    "landcover": "Land cover vs real labels: OSCD urban change, CORINE arable -> urban, Taizhou farmland built over.",
    "refine": "Pixel F1, boundary F1 and region-count error before / after a refiner, per domain.",
    "resolution": "Pixel F1 per masker on R, G, B only at 5, 10, 30 m: where auto stops using the learned model.",
    "buildings": "The building head's component filter (min mean probability): pixel and object F1, train / held-out.",
    "transitions": "Learned change alone vs combined with patch-wise RGB land-cover transitions, per domain (train / held-out).",
    "scale": "The whole detect per engine on a large real-imagery mosaic against the lean floor: stage times, MP/s, "
             "output sizes, peak RSS.",
}
NEEDS_DATA = {"buildings", "change", "landcover", "refine", "resolution", "scale", "transitions"}  # read GEODELTA_DATA; intent reads its own question set


def _bench_command(name: str, help_text: str) -> None:
    def command(ctx: typer.Context) -> None:
        _run_benchmark(name, list(ctx.args))

    command.__doc__ = help_text
    bench_app.command(name, context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(command)


for _name, _help in BENCHMARKS.items():
    _bench_command(_name, _help)
