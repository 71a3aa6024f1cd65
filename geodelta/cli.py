"""`geodelta` command line: a thin shell over the same functions the Python API exposes.

Output for the user goes to stdout; progress and logs to stderr; `--json` prints only JSON.
A `GeoDeltaError` is printed as one actionable line (no traceback) with a non-zero exit code.
"""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape

from geodelta.agent.models import list_backends  # registries: names only, cheap to import
from geodelta.bench_cli import bench_app
from geodelta.errors import GeoDeltaError, InputError, missing_dependency
from geodelta.perception.change.registry import list_maskers

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Ask how the land changed between images.")
app.add_typer(bench_app, name="bench")

out = Console()
err = Console(stderr=True)

Json = Annotated[bool, typer.Option("--json", help="Print only JSON on stdout.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")]


def _parse_aoi(aoi: str | None) -> tuple[float, float, float, float] | None:
    if not aoi:
        return None
    try:
        w, s, e, n = (float(x) for x in aoi.split(","))
    except ValueError:
        raise InputError(f"--aoi must be four numbers west,south,east,north in degrees, got {aoi!r}") from None
    if not (w < e and s < n):
        raise InputError(f"--aoi {aoi!r}: need west < east and south < north (lon/lat degrees)")
    return (w, s, e, n)


@contextmanager
def _progress(enabled: bool):
    """A rich progress bar on stderr driven by `progress(stage, done, total)` callbacks."""
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err, transient=True) as bar:
        tasks: dict[str, TaskID] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        yield update


def demo_scene() -> tuple[Path, Path]:
    """The bundled Landsat 7 Taizhou pair (public domain, see geodelta/data/demo/ATTRIBUTION.md)."""
    root = resources.files("geodelta.data") / "demo"
    return (
        Path(str(root / "taizhou_before_2000-03-17_landsat7_etm.tif")),
        Path(str(root / "taizhou_after_2003-02-06_landsat7_etm.tif")),
    )


@app.command()
def detect(
    images: Annotated[list[Path], typer.Argument(help="BEFORE AFTER (or more dates, oldest first): GeoTIFF, PNG/JPEG/BMP, ENVI, or a Sentinel-2 band folder.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("geodelta-out"),
    method: Annotated[str, typer.Option(help=f"Change masker: {', '.join(list_maskers())} (default auto: the best measured for the input's kind).")] = "auto",
    bands: Annotated[Optional[str], typer.Option(help="Band roles in file order for files without band names, e.g. swir1,nir,green.")] = None,
    focus: Annotated[str, typer.Option(help="What the change of interest is about: any (default) or buildings (auto then uses the building-change model on aerial RGB).")] = "any",
    aoi: Annotated[Optional[str], typer.Option(help="west,south,east,north in lon/lat degrees.")] = None,
    min_area_m2: Annotated[float, typer.Option("--min-area-m2", min=0.0, help="Drop regions smaller than this (m², >= 0).")] = 0.0,
    tile: Annotated[int, typer.Option(min=64, max=16384, help="Tile edge in pixels, 64-16384 (peak memory follows it).")] = 1024,
    engine: Annotated[str, typer.Option(help="Where tiles run: local (default) or dask.")] = "local",
    precision: Annotated[Optional[str], typer.Option(help="Learned models on the CPU: int8 (quantised, ~2x faster) or float (default: the GEODELTA_PRECISION setting, else each model's measured default: learned int8, buildings float).")] = None,
    scheduler: Annotated[Optional[str], typer.Option(help="Dask scheduler address tcp://HOST:PORT (engine dask).")] = None,
    workers: Annotated[Optional[int], typer.Option(min=1, max=256, help="Local Dask worker processes when no --scheduler (engine dask).")] = None,
    dates: Annotated[Optional[str], typer.Option(help="One date per image, oldest first: 2009-08-18,2012-07-31,... (default: from metadata).")] = None,
    as_json: Json = False,
    quiet: Quiet = False,
) -> None:
    """Find where the land changed between two images (or along a time series) and write maps, regions and a summary."""
    if engine == "dask" and not scheduler:  # the local workers' fork server imports while this process does
        from geodelta.perception.change import local_cluster

        local_cluster.prestart()
    from geodelta.perception.pipeline.detect import run_detect

    if len(images) < 2:
        raise InputError(f"detect needs two images (BEFORE AFTER) or more dates oldest first, got {len(images)}")
    if engine != "dask" and (scheduler or workers):
        raise InputError("--scheduler and --workers need --engine dask")
    engine_opts = {k: v for k, v in {"scheduler": scheduler, "workers": workers}.items() if v is not None}
    from geodelta.perception.pipeline.staging import staged_output
    from geodelta.settings import Settings

    # GEODELTA_* (device, precision, minimum region, GDAL cache) are read here, once (perception never reads the
    # environment); what the command line gives wins
    options = Settings().detect_options(method=method, min_area_m2=min_area_m2, tile=tile, engine=engine,
                                        precision=precision, focus=focus)
    kw: dict[str, Any] = {"aoi": _parse_aoi(aoi), "engine_opts": engine_opts} | ({"bands": bands} if bands else {})
    # Outputs are written into a hidden sibling folder and moved into DIR when complete (summary.json last):
    # a killed run never leaves a half-written change.tif that looks finished. Unwritable DIR fails here, first.
    with staged_output(out_dir) as work, _progress(not (quiet or as_json)) as progress:
        if len(images) > 2:
            from geodelta.perception.pipeline.series import parse_dates, run_series

            summary = run_series(images, work, options, dates=parse_dates(dates), progress=progress, **kw)
        else:
            summary = run_detect(images[0], images[1], work, options, progress=progress, **kw)
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    if len(images) > 2:
        _print_series(summary, out_dir)
        return
    _print_detect(summary, out_dir)


def _print_series(summary: dict, out_dir: Path) -> None:
    for iv in summary["intervals"]:
        c = iv["change"]
        area = f"{c['changed_m2'] / 1e4:,.1f} ha" if "changed_m2" in c else f"{c['changed_px']:,} px"
        first = f"{iv['first_change_m2'] / 1e4:,.1f} ha" if "first_change_m2" in iv else f"{iv['first_change_px']:,} px"
        out.print(f"  interval {iv['interval']}: {iv['start']} -> {iv['end']}: {area} changed, {first} for the first time ({iv['dir']}/)")
    out.print(f"outputs in {out_dir}/: first_change.tif, timeline.png, summary.json")


def _print_detect(summary: dict, out_dir: Path) -> None:
    out.print(f"[bold]{summary['caption']}[/bold]")
    regions = summary["regions"]
    if not summary.get("classes_known"):
        out.print("[dim]Land-cover classes were not determined for these regions: 'what' is unknown.[/dim]")
    for q in summary["quadruples"][:9]:
        area = f"{q['total_area_m2'] / 1e4:.2f} ha" if "total_area_m2" in q else f"{q['total_area_px']} px"
        out.print(f"  {q['where']['sector']:>10}: {q['how_many']} region(s), {area} ({q['what']['from']} -> {q['what']['to']}, {q['how']})")
    out.print(f"{summary.get('n_regions', len(regions))} regions; outputs in {out_dir}/: " + ", ".join(sorted(set(summary["outputs"].values()) | {"summary.json"})))


@app.command()
def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="Output folder (maps, summary, memory file).")] = Path("geodelta-demo"),
    as_json: Json = False,
) -> None:
    """Ask "Where did farmland get built over?" of the bundled Landsat scene (Taizhou, 2000 -> 2003)."""
    from geodelta.agent.api import Assistant
    from geodelta.settings import Settings

    before, after = demo_scene()
    question = "Where did farmland get built over?"
    err.print(f"Demo scene: {before.name} -> {after.name} (Landsat 7 ETM+, USGS, public domain)")
    err.print(f"Question: {question}  [planner: embedded, no server, no downloads]")
    from geodelta.perception.pipeline.staging import writable_dir

    out_dir = writable_dir(out_dir)
    _ask_and_exit(Assistant(Settings(out=out_dir, db=out_dir / "geodelta.db", backend="embedded")), question, as_json,
                  footer=f"--db {out_dir / 'geodelta.db'}", before=before, after=after)


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="Your question, e.g. 'Where did farmland get built over?'")],
    paths: Annotated[Optional[list[Path]], typer.Argument(
        help="The images, oldest first: two dates, or more for a time series (instead of --before / --after).",
        show_default=False)] = None,
    before: Annotated[Optional[Path], typer.Option(help="BEFORE image.")] = None,
    after: Annotated[Optional[Path], typer.Option(help="AFTER image.")] = None,
    images: Annotated[Optional[list[Path]], typer.Option("--images", help="More than two dates, oldest first (repeat).")] = None,
    thread: Annotated[Optional[str], typer.Option(help="Continue this conversation (printed after each answer).")] = None,
    backend: Annotated[Optional[str], typer.Option(help=f"Planner: {', '.join(list_backends())} (default embedded).")] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Output folder for maps.")] = None,
    db: Annotated[Optional[Path], typer.Option(help="SQLite memory file (default GEODELTA_DB).")] = None,
    bands: Annotated[Optional[str], typer.Option(help="Band roles in file order for files without band names, e.g. swir1,nir,green.")] = None,
    as_json: Json = False,
    quiet: Quiet = False,
) -> None:
    """Ask a question about how the land changed; prints the answer, the maps and the audit id."""
    from geodelta.agent.api import Assistant
    from geodelta.perception.pipeline.staging import writable_dir
    from geodelta.settings import Settings

    if paths and (before or after):
        raise InputError("give the images either as paths after the question or as --before / --after, not both")
    if paths:  # `geodelta ask "..." a.tif b.tif c.tif` (a shell glob) and `--images a.tif b.tif c.tif` alike
        images = [*(images or []), *paths]
    if out_dir is not None:
        writable_dir(out_dir)
    if db is not None:
        writable_dir(db.expanduser().absolute().parent, "the folder of --db")
    overrides: dict[str, Any] = {k: v for k, v in {"backend": backend, "out": out_dir, "db": db}.items() if v is not None}
    _ask_and_exit(Assistant(Settings(**overrides)), question, as_json, before=before, after=after, images=images,
                  thread_id=thread, bands=bands)


def _ask_and_exit(assistant: Any, question: str, as_json: bool, *, footer: str | None = None, **ask_kw: Any) -> None:
    """`ask` and `demo`: one question, the answer printed (or its JSON), then the answer's exit status."""
    try:
        answer = assistant.ask(question, **ask_kw)
    finally:
        assistant.close()
    if as_json:
        print(answer.model_dump_json(indent=2))
    else:
        _print_answer(answer)
        if footer is not None:
            out.print(f"[dim]audit trail: geodelta audit show {answer.audit_id} {footer}[/dim]")
    _exit_for(answer)


def _exit_for(answer) -> None:
    """`ask` and `demo` exit 0 when answered ("no change found" included), else the answer's exit code."""
    if answer.status == "failed":
        err.print(f"[bold red]error:[/bold red] {answer.text}", soft_wrap=True, highlight=False)
    if answer.exit_code:
        raise typer.Exit(answer.exit_code)


def _print_answer(answer) -> None:
    q = answer.query
    if answer.clarification:
        out.print(f"[bold yellow]?[/bold yellow] {answer.clarification}")
        out.print(f"[dim]thread: {answer.thread_id} (answer with --thread {answer.thread_id})[/dim]")
        return
    area = q.area.sector if q.area.kind == "sector" else q.area.kind
    out.print(f"[dim]query: from {q.from_classes or 'any'} to {q.to_classes or 'any'}, {q.direction}, area {area}, min {q.min_area_m2:g} m²[/dim]")
    out.print(f"[bold]{answer.text}[/bold]")
    for c in answer.caveats:
        out.print(f"[yellow]note:[/yellow] {c}")
    out.print("justification:")
    for e in answer.justification:
        out.print(f"  - {e.claim}: {e.value}  [dim]({e.tool} {e.tool_call_id})[/dim]")
    for kind, path in answer.maps.items():
        out.print(f"  {kind:>12}: {path}")
    out.print(f"[dim]confidence {answer.confidence:.2f} · audit id {answer.audit_id} · thread {answer.thread_id}[/dim]")


@app.command()
def plan(
    question: Annotated[str, typer.Argument(help="A question about change.")],
    as_json: Json = False,
) -> None:
    """Show the explicit change-of-interest (ChangeQuery) a question is turned into; runs no tool."""
    from geodelta.agent.intent import parse_question

    res = parse_question(question)
    if res.query is None:
        raise InputError(res.clarify or "the question could not be turned into a change query")
    if as_json:
        print(res.query.model_dump_json(indent=2))
        return
    out.print_json(res.query.model_dump_json())


@app.command("mcp")
def mcp_command(
    transport: Annotated[str, typer.Option(help="stdio (default: for chat apps that start the server) or http (streamable HTTP).")] = "stdio",
    host: Annotated[str, typer.Option(help="HTTP address; anything but loopback needs GEODELTA_MCP_TOKEN.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port (the endpoint is http://HOST:PORT/mcp).")] = 8765,
) -> None:
    """Serve GeoDelta to MCP chat apps and agents: tools ask, detect, plan, audit_verify; scenes and history as resources.

    Files must lie under GEODELTA_ALLOWED_ROOTS (default: the folder the server runs in); needs the \\[mcp] extra."""
    from geodelta.agent.mcp_server import serve

    serve(transport, host=host, port=port)  # type: ignore[arg-type]  # serve() refuses unknown transports


def _register_memory_commands() -> None:
    from geodelta.memory.commands import audit_app, history_command, scenes_command

    app.add_typer(audit_app, name="audit")
    app.command("scenes", help="Scenes remembered in the memory file.")(scenes_command)
    app.command("history", help="The events of one conversation thread.")(history_command)


_register_memory_commands()


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def train(ctx: typer.Context) -> None:
    """Train GeoDelta's Siamese change model on the labelled data in GEODELTA_DATA (needs the \\[train] extra).

    Options: --arch siamese_v3|effnet_siamese (default siamese_v3; effnet_siamese is the pretrained
    EfficientNet-Lite0 network and takes --resume) --data --out --max-minutes --epochs --steps-per-epoch
    --batch-size --crop --lr --patience --scale-range --seed --threads --compare --quiet (see
    `python -m geodelta.perception.learned.train --help` and
    `python -m geodelta.perception.learned.train_effnet --help`).
    """
    from geodelta.perception.learned.train import main as train_main

    train_main(list(ctx.args))


# Lazily imported optional modules -> the extra that installs them (see pyproject.toml).
OPTIONAL_MODULES = {
    "psutil": "bench", "dask": "dask", "distributed": "dask", "torch": "train", "torchvision": "train",
    "segment_anything": "sam", "transformers": "vlm", "accelerate": "vlm", "mcp": "mcp",
}


def _line(message: str) -> None:
    err.print(f"[bold red]error:[/bold red] {message}", soft_wrap=True, highlight=False, markup=True)


def validation_line(exc: Exception) -> str:
    """One line for a pydantic ValidationError: which setting or field, what is allowed, what was given."""
    errors = exc.errors(include_url=False)  # type: ignore[attr-defined]
    parts = []
    for e in errors[:3]:
        name = ".".join(str(x) for x in e.get("loc", ())) or "value"
        env = f" (GEODELTA_{name.upper()})" if getattr(exc, "title", "") == "Settings" else ""
        parts.append(f"{name}{env}: {e.get('msg', 'invalid')}, got {e.get('input')!r}")
    more = f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""
    return "invalid value for " + "; ".join(parts) + more


def main() -> None:
    """Console-script entry point: one clean line on stderr for every user-facing failure, and a true exit code.

    `standalone_mode=False` makes click *return* the code of a `typer.Exit` instead of exiting; it is passed
    on to `sys.exit` here (dropping it made `audit verify` on a tampered trail exit 0). Exit codes: see
    `geodelta.errors`. Anything not handled below is a bug and keeps its traceback.
    """
    from pydantic import ValidationError

    try:
        rc = app(standalone_mode=False)
    except GeoDeltaError as exc:
        _line(escape(str(exc)))
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        err.print("aborted")
        sys.exit(130)
    except typer.TyperException as exc:  # typer's (vendored click) usage errors: bad option values, missing arguments
        ctx = getattr(exc, "ctx", None)
        hint = f" (see: {ctx.command_path} --help)" if ctx is not None else ""
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        _line(escape(message) + hint)
        sys.exit(getattr(exc, "exit_code", 2))
    except ValidationError as exc:
        _line(escape(validation_line(exc)))
        sys.exit(InputError.exit_code)
    except ModuleNotFoundError as exc:
        root = (exc.name or "").split(".")[0]
        if root not in OPTIONAL_MODULES:
            raise
        missing = missing_dependency(root, OPTIONAL_MODULES[root], "this command")
        _line(escape(str(missing)))
        sys.exit(missing.exit_code)
    sys.exit(rc if isinstance(rc, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
