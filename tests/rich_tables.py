"""Rows of the rich tables the benchmarks print, for tests that run them through the installed script."""

from __future__ import annotations


def table_rows(stdout: str, n_cells: int) -> list[list[str]]:
    """The cells (stripped) of every table line of `stdout` with `n_cells` cells (box-drawing `│` separators)."""
    rows = []
    for line in stdout.splitlines():
        if "│" not in line:
            continue
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        if len(cells) == n_cells:
            rows.append(cells)
    return rows
