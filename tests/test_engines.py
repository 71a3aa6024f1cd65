"""The Dask engine writes the same change.tif as the local engine, on real pairs, with 2 worker processes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from typer.testing import CliRunner

from geodelta.cli import app
from geodelta.contracts import DetectOptions
from geodelta.errors import InputError
from geodelta.perception.change import engines
from geodelta.perception.change import maskers as change
from geodelta.perception.io.reader import open_pair
from geodelta.perception.pipeline.detect import detect_stage
from geodelta.perception.render import cog

runner = CliRunner()


@pytest.fixture(scope="module")
def client():
    """A LocalCluster of 2 worker processes on 127.0.0.1 (what `--engine dask --workers 2` starts)."""
    with engines.dask_client(workers=2) as cl:
        assert len(cl.scheduler_info()["workers"]) == 2
        yield cl


def _worker_settings() -> tuple:
    import os

    import dask

    return (dask.config.get("distributed.worker.profile.enabled"), os.environ.get("GEODELTA_THREADS"),
            os.environ.get("MALLOC_TRIM_THRESHOLD_"))


def test_local_cluster_workers_run_one_thread_without_the_profiler(client) -> None:
    """The workers GeoDelta starts: one library thread each, no stack-sampling profiler (engines.WORKER_CONFIG), and
    glibc's dynamic mmap threshold left on (no MALLOC_TRIM_THRESHOLD_, engines.DROPPED_WORKER_ENV)."""
    assert set(client.run(_worker_settings).values()) == {(False, "1", None)}


def _read(path: Path) -> tuple[np.ndarray, dict]:
    with rasterio.open(path) as src:
        return src.read(1), {"crs": src.crs, "transform": src.transform, "shape": src.shape, "dtype": src.dtypes[0],
                             "nodata": src.nodata, "scales": src.scales}


def test_dask_equals_local_on_the_landsat_pair(demo_pair, tmp_path: Path, client) -> None:
    pair = open_pair(*demo_pair)
    masker = change.get_masker("irmad")
    params = masker.fit(*pair.sample())
    tile = 128  # 4 x 4 blocks of the 400 x 400 scene: the halo crosses block seams
    local = engines.run_local(pair, masker, params, (tmp_path / "l.tif", tmp_path / "lp.tif"), tile, min_pixels=16)
    seen: list[tuple[int, int]] = []
    dask_counts = engines.run_dask(pair, masker, params, (tmp_path / "d.tif", tmp_path / "dp.tif"), tile,
                                   lambda stage, done, total: seen.append((done, total)), min_pixels=16, client=client)
    assert dask_counts == local
    assert seen[-1] == (16, 16)
    (lc, lmeta), (dc, dmeta) = _read(tmp_path / "l.tif"), _read(tmp_path / "d.tif")
    assert lmeta == dmeta
    n_diff = int((lc != dc).sum())
    print(f"landsat: {n_diff} differing change pixels of {lc.size}")
    assert n_diff == 0
    assert 0 < (lc == 1).sum() == local[0]
    assert np.array_equal(_read(tmp_path / "lp.tif")[0], _read(tmp_path / "dp.tif")[0])
    # the dask outputs are VRTs over one tile file per window, which remove_work deletes with them
    with rasterio.open(tmp_path / "d.tif") as src:
        assert src.driver == "VRT" and len(src.files) == 1 + 16
    engines.remove_work((tmp_path / "d.tif", tmp_path / "dp.tif"))
    assert not any(p.name.startswith("d") for p in tmp_path.iterdir())


def test_detect_stage_dask_equals_local_on_naip_warped_pair(data_dir: Path, tmp_path: Path, client) -> None:
    # 2020's grid is shifted 1 m from 2009's: every block goes through the WarpedVRT read path.
    naip = data_dir / "naip"
    pair = open_pair(naip / "m_4709963_se_14_1_20090818.tif", naip / "m_4709963_se_14_1_20200831.tif")
    local = detect_stage(pair, tmp_path / "local", DetectOptions(tile=256))
    dask = detect_stage(pair, tmp_path / "dask", DetectOptions(tile=256, engine="dask"), engine_opts={"client": client})
    a, b = _read(local.change_tif)[0], _read(dask.change_tif)[0]
    print(f"naip: {int((a != b).sum())} differing change pixels of {a.size}")
    assert np.array_equal(a, b)
    # the COGs made from the dask engine's VRTs: the same grid, band scale and score values as the local engine's
    assert _read(local.change_tif)[1] == _read(dask.change_tif)[1]
    (lp, lpmeta), (dp, dpmeta) = _read(local.prob_tif), _read(dask.prob_tif)
    assert lpmeta == dpmeta and lpmeta["scales"] == (cog.PROB_SCALE,) and np.array_equal(lp, dp)
    assert cog.cog_layout_errors(dask.prob_tif) == [] and cog.cog_layout_errors(dask.change_tif) == []
    assert (local.changed_px, local.valid_px) == (dask.changed_px, dask.valid_px)
    assert len(local.regions) == len(dask.regions) > 0
    # dask polygonises on its workers (pieces stitched on the driver), local from change.tif: the same regions
    # (windows of another size: the outlines are normalised before simplifying, so they come out the same)
    key = lambda r: (r.id, r.area_px, r.bbox_px, round(r.confidence, 9), r.geometry().wkb)  # noqa: E731
    assert [key(r) for r in local.regions] == [key(r) for r in dask.regions]
    crossing = [r for r in dask.regions if r.bbox_px[0] // 256 != (r.bbox_px[2] - 1) // 256]
    assert crossing  # regions that span worker windows were stitched


def test_unknown_engine_and_orphan_dask_options_are_input_errors(demo_pair, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown engine"):
        engines.get_engine("spark")
    res = runner.invoke(app, ["detect", *map(str, demo_pair), "--out", str(tmp_path), "--workers", "2", "-q"])
    assert res.exit_code != 0 and "--engine dask" in str(res.exception)


def test_cli_engine_dask_with_one_worker(demo_pair, tmp_path: Path) -> None:
    res = runner.invoke(app, ["detect", *map(str, demo_pair), "--out", str(tmp_path / "d"), "--engine", "dask",
                              "--workers", "1", "--tile", "256", "-q"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["detect", *map(str, demo_pair), "--out", str(tmp_path / "l"), "--tile", "256", "-q"],
                        catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert np.array_equal(_read(tmp_path / "d" / "change.tif")[0], _read(tmp_path / "l" / "change.tif")[0])


def test_local_threads_write_the_same_bytes_as_one_thread(data_dir: Path, tmp_path: Path) -> None:
    # the warped NAIP pair: every thread opens its own GDAL handles and WarpedVRT
    naip = data_dir / "naip"
    pair = open_pair(naip / "m_4709963_se_14_1_20090818.tif", naip / "m_4709963_se_14_1_20200831.tif")
    masker = change.get_masker("irmad")
    params = masker.fit(*pair.sample())
    one = engines.run_local(pair, masker, params, (tmp_path / "c1.tif", tmp_path / "p1.tif"), 256, min_pixels=16, threads=1)
    progress: list[int] = []
    three = engines.run_local(pair, masker, params, (tmp_path / "c3.tif", tmp_path / "p3.tif"), 256,
                              lambda stage, done, total: progress.append(done), min_pixels=16, threads=3)
    assert one == three and one[0] > 0
    assert progress == sorted(progress) and progress[-1] == len(progress)  # written in window order
    for a, b in (("c1.tif", "c3.tif"), ("p1.tif", "p3.tif")):
        assert np.array_equal(_read(tmp_path / a)[0], _read(tmp_path / b)[0])
    with pytest.raises(InputError, match="threads"):
        engines.run_local(pair, masker, params, (tmp_path / "x.tif", tmp_path / "y.tif"), 256, threads=0)


def test_local_engine_in_strips_writes_what_whole_rows_write(data_dir: Path, tmp_path: Path) -> None:
    """Windows in 512 px strips (2 windows of 256 px across) and in whole rows of the NAIP scene: the same rasters."""
    from geodelta.perception.io.tiling import in_strips, iter_windows

    naip = data_dir / "naip"
    pair = open_pair(naip / "m_4709963_se_14_1_20090818.tif", naip / "m_4709963_se_14_1_20200831.tif")
    assert pair.grid.width > 512  # two strips
    masker = change.get_masker("cva")
    params = masker.fit(*pair.sample())
    rows = engines.run_local(pair, masker, params, (tmp_path / "cr.tif", tmp_path / "pr.tif"), 256, min_pixels=16,
                             strip_px=10**9)
    strips = engines.run_local(pair, masker, params, (tmp_path / "cs.tif", tmp_path / "ps.tif"), 256, min_pixels=16,
                               strip_px=512)
    assert rows == strips and rows[0] > 0
    for a, b in (("cr.tif", "cs.tif"), ("pr.tif", "ps.tif")):
        assert np.array_equal(_read(tmp_path / a)[0], _read(tmp_path / b)[0])
    order = [(int(core.col_off), int(core.row_off)) for _, core, _ in in_strips(list(iter_windows(pair.grid, 256)), 512)]
    assert sorted(order) == sorted((int(c.col_off), int(c.row_off)) for _, c, _ in iter_windows(pair.grid, 256))
    assert order[:3] == [(0, 0), (256, 0), (0, 256)]  # the first strip, top to bottom, before the second
    assert all(c < 512 for c, _ in order[: 2 * -(-pair.grid.height // 256)])


def _sessions_loaded() -> int:
    from geodelta.perception.learned import onnx_infer

    return onnx_infer.load_session.cache_info().currsize


def _worker_env() -> tuple[str | None, str | None]:
    import os

    return os.environ.get("GEODELTA_THREADS"), os.environ.get("OPENBLAS_NUM_THREADS")


def test_started_cluster_warms_the_learned_model_on_one_thread_per_worker() -> None:
    """While the driver fits, each LocalCluster worker loads the learned model's session (once per process),
    and its libraries run one thread each (a worker runs one task at a time)."""
    masker = change.get_masker("auto", roles={"red": 0, "green": 1, "blue": 2}, scene={"pixel_m": 0.5})
    assert masker.chosen == "learned"
    with engines.started("dask", {"workers": 2}, masker) as resolve:
        cl = resolve()["client"]
        loaded = cl.run(_sessions_loaded)
        envs = cl.run(_worker_env)
    assert len(loaded) == 2 and all(n == 1 for n in loaded.values())
    assert all(e == ("1", "1") for e in envs.values())


def test_learned_model_scores_windows_in_parallel_with_the_same_bytes(data_dir: Path, tmp_path: Path) -> None:
    """`auto` on RGB picks the ONNX model, whose sessions may run from several threads (one onnxruntime thread
    per window): the same change.tif and change_prob.tif as one window at a time. By default the engine runs it
    one window at a time (max_windows = 1: the memory of one run); the parallel path stays correct."""
    lv = data_dir / "levir_crops"
    pair = open_pair(lv / "A" / "test_2_0000_0000.png", lv / "B" / "test_2_0000_0000.png")
    masker = change.get_masker("auto", roles=dict(pair.band_roles), scene={"pixel_m": None})
    assert masker.chosen == "learned" and masker.thread_safe and masker.max_windows == 1
    masker.max_windows = None  # let the pool run 2 windows at once
    params = masker.fit(*pair.sample())
    one = engines.run_local(pair, masker, params, (tmp_path / "c1.tif", tmp_path / "p1.tif"), 128, min_pixels=16, threads=1)
    two = engines.run_local(pair, masker, params, (tmp_path / "c2.tif", tmp_path / "p2.tif"), 128, min_pixels=16, threads=2)
    assert one == two and one[0] > 0
    for a, b in (("c1.tif", "c2.tif"), ("p1.tif", "p2.tif")):
        assert np.array_equal(_read(tmp_path / a)[0], _read(tmp_path / b)[0])


def test_started_closes_the_cluster_on_a_thread_the_caller_joins() -> None:
    """With a `closing` list, the LocalCluster closes on a thread (detect polygonises meanwhile) that the caller joins."""
    closing: list = []
    with engines.started("dask", {"workers": 1}, None, closing) as resolve:
        cl = resolve()["client"]
        assert cl.status == "running"
    assert len(closing) == 1
    closing[0].join(timeout=60)
    assert not closing[0].is_alive() and cl.status == "closed"
