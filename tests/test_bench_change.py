"""`geodelta bench change` through the real CLI on the LEVIR crops: the F1 tables, the held-out table
and the published models' scores on the held-out crops."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from rich_tables import table_rows


def _bench():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "change.py"
    spec = importlib.util.spec_from_file_location("geodelta_bench_change", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bench_change_held_out_table(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    summary = _bench().main(["--methods", "cva", "--domains", "levir"])
    out = " ".join(capsys.readouterr().out.split())  # rich wraps titles at the terminal width
    assert "F1, held-out scenes only" in out
    assert "LEVIR-CD test crops" in out and "held-out crops" in out
    all_f1, held_f1 = summary["f1"]["cva"]["levir"], summary["f1_held_out"]["cva"]["levir"]
    assert 0.0 < all_f1 < 1.0 and 0.0 < held_f1 < 1.0
    # the held-out table scores 2 of the 7 crops, so it is a different number
    assert abs(all_f1 - held_f1) > 1e-6
    # seven published models, scored on all crops and on the two held-out crops; all are strong on LEVIR
    assert len(summary["published"]) == 7 and summary["published"].keys() == summary["published_held_out"].keys()
    assert all(0.8 < f1 <= 1.0 for f1 in summary["published_held_out"].values())
    # `NAME:KEY=VALUE` reaches the masker: CVA on smoothed bands marks other pixels
    smoothed = _bench().main(["--methods", "cva:smooth=1", "--domains", "levir"])["f1"]["cva:smooth=1"]["levir"]
    assert 0.0 < smoothed < 1.0 and abs(smoothed - all_f1) > 1e-6


def test_bench_change_masker_options() -> None:
    bench = _bench()
    assert bench.method_options("cva:smooth=1.5;name=x") == ("cva", {"masker_opts": {"smooth": 1.5, "name": "x"}})
    assert bench.method_options("irmad") == ("irmad", {})
    with pytest.raises(SystemExit, match="not KEY=VALUE"):
        bench.method_options("cva:smooth")


def test_bench_refine_through_the_console_script(data_dir: Path) -> None:
    import subprocess
    import sys

    exe = Path(sys.executable).with_name("geodelta")
    proc = subprocess.run([str(exe), "bench", "refine", "--domains", "levir"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    row = next(line for line in proc.stdout.splitlines() if line.startswith("levir"))
    cells = [c for c in row.replace("|", " ").split()]
    assert cells[1] == "7"  # the seven LEVIR test crops
    f1_before, f1_after = float(cells[2]), float(cells[3])
    assert 0.0 < f1_before < 1.0 and 0.0 < f1_after < 1.0


def test_bench_resolution_auto_follows_the_pixel_size(data_dir: Path) -> None:
    """R, G, B only at 5 / 10 / 30 m (real labelled pairs): auto takes learned, cva, irmad, and scores as the one it took."""
    import subprocess
    import sys

    exe = Path(sys.executable).with_name("geodelta")
    proc = subprocess.run([str(exe), "bench", "resolution", "--methods", "cva,auto"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = {cells[0]: cells for cells in table_rows(proc.stdout, 4) if cells[0].startswith(("sztaki", "oscd", "landsat"))}
    assert [r[3] for r in rows.values()] == ["learned", "cva", "irmad"], proc.stdout
    assert rows["oscd 10 m"][1] == rows["oscd 10 m"][2]  # auto ran cva there: the same F1
    assert all(0.0 < float(r[2]) < 1.0 for r in rows.values())


def test_bench_transitions_combines_learned_change_with_land_cover(data_dir: Path) -> None:
    """`geodelta bench transitions` on the Beijing pairs: a union with transitions can only add recall, an
    intersection with "cover changed" can only lose it; every rule's scores are real fractions."""
    import subprocess
    import sys

    exe = Path(sys.executable).with_name("geodelta")
    proc = subprocess.run([str(exe), "bench", "transitions", "--domains", "beijing", "--patch", "128"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = {cells[1]: [float(x) for x in cells[2:]] for cells in table_rows(proc.stdout, 5) if cells[0] == "beijing held-out"}
    learned = rows.pop("learned (siamese_v3 alone)")
    assert len(rows) == 8 and 0.0 < learned[2] < 1.0, proc.stdout
    for name, (p, r, f1) in rows.items():
        assert 0.0 <= p <= 1.0 and 0.0 <= r <= 1.0 and 0.0 <= f1 <= 1.0
        if name.startswith("learned +"):
            assert r >= learned[1], name
        if name.startswith("learned &"):
            assert r <= learned[1], name
