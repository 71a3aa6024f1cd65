"""Every command's failure cases through the INSTALLED `geodelta` script, in a subprocess.

What a user meets: the exit status (see `geodelta.errors`), one clear line on stderr naming the
offending input, and no traceback or internal exception text. CliRunner cannot stand in for this:
it bypassed `main()`, which once dropped every exit code of `typer.Exit`.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

GEODELTA = str(Path(sys.executable).parent / "geodelta")
# Internal text a user must never see: tracebacks, exception class names, pydantic's help links, errno codes.
INTERNAL = ("Traceback", "UnionType", "__mro__", "pydantic.dev", "Errno", "ValidationError", "KeyError",
            "FileNotFoundError", "ModuleNotFoundError")


def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([GEODELTA, *args], capture_output=True, text=True, env=full_env, cwd=cwd, timeout=timeout)


def assert_clean_failure(proc: subprocess.CompletedProcess, code: int, *mentions: str) -> str:
    """Exit `code`; the stderr line(s) start with 'error:' and name every string in `mentions`; nothing internal."""
    text = proc.stdout + proc.stderr
    assert proc.returncode == code, f"exit {proc.returncode}, expected {code}:\n{text}"
    for bad in INTERNAL:
        assert bad not in text, f"{bad!r} leaked:\n{text}"
    error_lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(error_lines) == 1, f"expected one error line on stderr:\n{proc.stderr}"
    flat = " ".join(proc.stderr.split())
    for m in mentions:
        assert m.lower() in flat.lower(), f"{m!r} not named in:\n{proc.stderr}"
    return error_lines[0]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"GEODELTA_DB": str(tmp_path / "gd.db")}


@pytest.fixture
def corrupt_tif(tmp_path: Path, demo_pair) -> Path:
    p = tmp_path / "truncated.tif"
    p.write_bytes(demo_pair[0].read_bytes()[:3000])
    return p


# ---------------------------------------------------------------- detect


@pytest.mark.parametrize("case", ["missing", "not-image", "truncated", "passwd", "min-area", "tile", "one-image",
                                  "aoi", "workers", "method", "out-is-proc", "out-is-file"])
def test_detect_failures(case: str, tmp_path: Path, demo_pair, corrupt_tif: Path, env) -> None:
    b, a = (str(p) for p in demo_pair)
    out = str(tmp_path / "o")
    not_image = tmp_path / "x.png"
    not_image.write_text("not an image")
    a_file = tmp_path / "afile"
    a_file.write_text("x")
    cases = {
        "missing": ((str(tmp_path / "nothere.tif"), a, "--out", out), "nothere.tif"),
        "not-image": ((str(not_image), a, "--out", out), "x.png"),
        "truncated": ((str(corrupt_tif), a, "--out", out), "truncated.tif"),
        "passwd": (("/etc/passwd", a, "--out", out), "/etc/passwd"),
        "min-area": ((b, a, "--out", out, "--min-area-m2", "-5"), "--min-area-m2"),
        "tile": ((b, a, "--out", out, "--tile", "3"), "--tile"),
        "one-image": ((b, "--out", out), "two images"),
        "aoi": ((b, a, "--out", out, "--aoi", "1,2,3"), "--aoi"),
        "workers": ((b, a, "--out", out, "--workers", "2"), "--engine dask"),
        "method": ((b, a, "--out", out, "--method", "nosuch"), "nosuch"),
        "out-is-proc": ((b, a, "--out", "/proc/geodelta-out"), "/proc/geodelta-out"),
        "out-is-file": ((b, a, "--out", str(a_file)), "afile"),
    }
    args, mention = cases[case]
    assert_clean_failure(run("detect", *args, env=env), 2, mention)
    assert not Path(out).exists() or not (Path(out) / "change.tif").exists()


def test_detect_min_area_names_the_range(tmp_path: Path, demo_pair, env) -> None:
    line = assert_clean_failure(run("detect", *map(str, demo_pair), "--out", str(tmp_path / "o"), "--min-area-m2", "-5",
                                    env=env), 2, "--min-area-m2")
    assert "greater than or equal to 0" in line


# ---------------------------------------------------------------- ask, plan, demo


def test_ask_missing_file_reaches_the_person(tmp_path: Path, demo_pair, env) -> None:
    proc = run("ask", "where did farmland get built over?", "--before", str(tmp_path / "missing.tif"),
               "--after", str(demo_pair[1]), env=env)
    assert_clean_failure(proc, 2, "missing.tif", "does not exist")


def test_ask_json_prints_the_answer_even_when_it_fails(tmp_path: Path, demo_pair, env) -> None:
    import json

    proc = run("ask", "what changed?", "--before", "/etc/passwd", "--after", str(demo_pair[1]), "--json", env=env)
    assert proc.returncode == 2, proc.stderr
    answer = json.loads(proc.stdout)
    assert answer["status"] == "failed" and answer["exit_code"] == 2
    assert "/etc/passwd" in answer["text"] and "UnionType" not in answer["text"]


def test_ask_takes_the_images_as_paths_after_the_question(tmp_path: Path, demo_pair, env) -> None:
    """`geodelta ask "..." BEFORE AFTER` (and a shell glob after --images) answers like --before / --after."""
    import json

    b, a = (str(p) for p in demo_pair)
    q = "where did farmland get built over?"
    by_flag = json.loads(run("ask", q, "--before", b, "--after", a, "--json", env=env).stdout)
    by_path = run("ask", q, b, a, "--json", env=env)
    assert by_path.returncode == 0, by_path.stderr
    answer = json.loads(by_path.stdout)
    assert answer["status"] == "answered" and answer["text"] == by_flag["text"]
    globbed = run("ask", q, "--images", b, a, "--json", env=env)  # what `--images *.tif` expands to
    assert globbed.returncode == 0 and json.loads(globbed.stdout)["text"] == by_flag["text"]
    assert_clean_failure(run("ask", q, b, a, "--before", b, env=env), 2, "not both")


def test_ask_without_images_asks_back_with_exit_5(env) -> None:
    proc = run("ask", "where did farmland get built over?", env=env)
    assert proc.returncode == 5, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "?" in proc.stdout


@pytest.mark.parametrize("case", ["backend", "env-setting", "out", "server-down"])
def test_ask_failures(case: str, demo_pair, env) -> None:
    b, a = (str(p) for p in demo_pair)
    q = "where did farmland get built over?"
    cases = {
        "backend": ((q, "--before", b, "--after", a, "--backend", "nope"), {}, 2, "backend"),
        "env-setting": ((q, "--before", b, "--after", a), {"GEODELTA_TILE_SIZE": "abc"}, 2, "GEODELTA_TILE_SIZE"),
        "out": ((q, "--before", b, "--after", a, "--out", "/proc/geodelta-out"), {}, 2, "/proc/geodelta-out"),
        # a closed port on 127.0.0.1: the server is down
        "server-down": ((q, "--before", b, "--after", a, "--backend", "openai"),
                        {"GEODELTA_OPENAI_BASE_URL": "http://127.0.0.1:9/v1", "GEODELTA_OPENAI_MAX_RETRIES": "0"}, 3,
                        "127.0.0.1:9"),
    }
    args, extra_env, code, mention = cases[case]
    assert_clean_failure(run("ask", *args, env={**env, **extra_env}), code, mention)


def test_plan_refuses_a_question_about_nothing() -> None:
    assert_clean_failure(run("plan", "hello there"), 2, "what change should I look for")


def test_demo_unwritable_out() -> None:
    assert_clean_failure(run("demo", "--out", "/proc/geodelta-demo"), 2, "/proc/geodelta-demo")


# ---------------------------------------------------------------- audit, scenes, history


@pytest.fixture(scope="module")
def trail(tmp_path_factory) -> Path:
    """A real trail: one demo question answered by the installed script."""
    out = tmp_path_factory.mktemp("demo")
    proc = run("demo", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return out / "geodelta.db"


def _tampered(db: Path, tmp_path: Path, sql: str) -> Path:
    copy = tmp_path / "tampered.db"
    copy.write_bytes(db.read_bytes())
    conn = sqlite3.connect(copy)
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='trigger'").fetchall():
        conn.execute(f"DROP TRIGGER {name}")  # as an attacker with file access would
    conn.execute(sql)
    conn.commit()
    conn.close()
    return copy


def test_audit_verify_exit_status(trail: Path, tmp_path: Path) -> None:
    ok = run("audit", "verify", "--db", str(trail))
    assert ok.returncode == 0 and ok.stdout.startswith("OK:"), ok.stdout + ok.stderr
    edited = run("audit", "verify", "--db", str(_tampered(trail, tmp_path, "UPDATE audit_events SET tool='forged' WHERE id=3")))
    assert edited.returncode == 1 and "row 3: hash mismatch" in edited.stdout, edited.stdout
    deleted = run("audit", "verify", "--db", str(_tampered(trail, tmp_path, "DELETE FROM audit_events WHERE id=5")))
    assert deleted.returncode == 1 and "row 6" in deleted.stdout, deleted.stdout


@pytest.mark.parametrize("args,code,mention", [
    (("audit", "verify", "--db", "{tmp}/none.db"), 2, "none.db"),
    (("audit", "show", "nosuchid", "--db", "{trail}"), 1, "nosuchid"),
    (("audit", "export", "--jsonl", "/proc/geodelta/t.jsonl", "--db", "{trail}"), 2, "/proc/geodelta/t.jsonl"),
    (("scenes", "--db", "{tmp}/none.db"), 2, "none.db"),
    (("history", "nothread", "--db", "{trail}"), 1, "nothread"),
    (("audit", "verify", "--db", "{trail}", "--bogus"), 2, "--bogus"),
])
def test_memory_command_failures(args, code, mention, trail: Path, tmp_path: Path) -> None:
    args = [a.format(tmp=tmp_path, trail=trail) for a in args]
    assert_clean_failure(run(*args), code, mention)


# ---------------------------------------------------------------- bench, train, optional extras


def _shadow(tmp_path: Path, module: str) -> dict[str, str]:
    """PYTHONPATH that makes `module` absent, as in an install without its extra."""
    d = tmp_path / f"without_{module}" / module
    d.mkdir(parents=True)
    (d / "__init__.py").write_text(f"raise ModuleNotFoundError(\"No module named '{module}'\", name='{module}')\n")
    return {"PYTHONPATH": str(d.parent)}


def test_bench_scale_without_psutil_names_the_extra(tmp_path: Path, data_dir: Path) -> None:
    line = assert_clean_failure(run("bench", "scale", "--size", "512", env=_shadow(tmp_path, "psutil")), 4, "psutil")
    assert "pip install 'geodelta[bench]'" in line


def test_train_without_torch_names_the_extra(tmp_path: Path, data_dir: Path) -> None:
    line = assert_clean_failure(run("train", "--out", str(tmp_path / "m.pt"), env=_shadow(tmp_path, "torch")), 4, "torch")
    assert "geodelta[train]" in line


def test_detect_dask_engine_without_dask_names_the_extra(tmp_path: Path, demo_pair) -> None:
    proc = run("detect", *map(str, demo_pair), "--out", str(tmp_path / "o"), "--engine", "dask",
               env=_shadow(tmp_path, "dask"))
    assert "geodelta[dask]" in assert_clean_failure(proc, 4, "dask")
    assert not (tmp_path / "o").exists()  # the staging folder was removed; nothing half-written


@pytest.mark.parametrize("args,env_extra,code,mention", [
    (("bench", "nosuch"), {}, 2, "nosuch"),
    (("bench", "change"), {"GEODELTA_DATA": "/nonexistent-data"}, 2, "GEODELTA_DATA"),
    (("bench", "landcover"), {"GEODELTA_DATA": "/nonexistent-data"}, 2, "/nonexistent-data"),
    (("train", "--scale-range", "3,1"), {}, 2, "--scale-range"),
])
def test_bench_and_train_failures(args, env_extra, code, mention) -> None:
    assert_clean_failure(run(*args, env=env_extra), code, mention)
