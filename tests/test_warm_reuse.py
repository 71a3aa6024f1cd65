"""Warm reuse (issue 15 item 7): a second question on the same scene in the same process does not fit and
score it again, and a rewritten raster is never served from the cache."""

from __future__ import annotations

import os
import time
from pathlib import Path

from geodelta.settings import Settings
from geodelta.tools import ToolContext, build_tools


def _tools(tmp_path: Path, demo_pair):
    ctx = ToolContext.create(Settings(db=tmp_path / "gd.db", out=tmp_path / "out"))
    ctx.allow(*demo_pair)
    return ctx, {t.name: t for t in build_tools(ctx)}


def test_second_detect_on_the_same_scene_reuses_the_detection(tmp_path: Path, demo_pair) -> None:
    _, tools = _tools(tmp_path, demo_pair)
    sid = tools["load_scene"].invoke({"before": str(demo_pair[0]), "after": str(demo_pair[1])})["scene_id"]
    t0 = time.perf_counter()
    first = tools["detect_changes"].invoke({"scene_id": sid})
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    second = tools["detect_changes"].invoke({"scene_id": sid})
    warm = time.perf_counter() - t0
    assert second == first and first["n_regions"] > 0
    assert warm < cold / 5, f"warm detect {warm:.3f} s is not a reuse of the cold one ({cold:.3f} s)"
    lc1 = tools["classify_land_cover"].invoke({"analysis_id": first["analysis_id"]})
    lc2 = tools["classify_land_cover"].invoke({"analysis_id": first["analysis_id"]})
    assert lc1 == lc2 and lc1["classes_known"]
    # a different minimum area is a different detection
    third = tools["detect_changes"].invoke({"scene_id": sid, "min_area_m2": 50_000.0})
    assert third["n_regions"] < first["n_regions"]


def test_a_rewritten_raster_is_detected_again(tmp_path: Path, demo_pair) -> None:
    _, tools = _tools(tmp_path, demo_pair)
    sid = tools["load_scene"].invoke({"before": str(demo_pair[0]), "after": str(demo_pair[1])})["scene_id"]
    first = tools["detect_changes"].invoke({"scene_id": sid})
    tif = Path(first["change_tif"])
    st = tif.stat()
    os.utime(tif, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # as if another process wrote it
    calls = []
    from geodelta.perception.pipeline import detect as pipeline

    real = pipeline.detect_stage
    import geodelta.tools.detect as detect_tool

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    detect_tool.detect_stage = counting
    try:
        again = tools["detect_changes"].invoke({"scene_id": sid})
    finally:
        detect_tool.detect_stage = real
    assert calls == [1] and again["n_regions"] == first["n_regions"]
