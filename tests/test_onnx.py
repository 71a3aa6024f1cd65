"""The learned change model runs from its shipped ONNX file with onnxruntime: no torch at inference.

Real crops from GEODELTA_DATA go through the same input preparation as `geodelta detect`; where torch is
installed the ONNX output is compared with the torch checkpoint it was exported from.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rasterio.windows import Window

from geodelta.perception.change import maskers as change
from geodelta.perception.io.reader import open_pair
from geodelta.perception.learned import onnx_infer
from geodelta.perception.learned import siamese as learned
from geodelta.perception.pipeline.detect import pair_roles

try:
    import torch
except ImportError:
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="comparing with the torch checkpoint needs the [train] extra")


def _prepared(before: Path, after: Path, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    with open_pair(before, after) as pair:
        return learned.prepare_window(pair, Window(0, 0, min(w, pair.grid.width), min(h, pair.grid.height)))


def _crops(data_dir: Path) -> list[tuple[Path, Path, int, int]]:
    lv, whu, oscd = data_dir / "levir_crops", data_dir / "whu_tiles", data_dir / "oscd" / "rennes"
    return [(lv / "A" / "test_2_0000_0000.png", lv / "B" / "test_2_0000_0000.png", 256, 256),  # RGB, 0.5 m
            (whu / "A" / "000213.png", whu / "B" / "000213.png", 300, 420),  # RGB aerial, size not a multiple of 8
            (oscd / "imgs_1", oscd / "imgs_2", 339, 400)]  # Sentinel-2 with NIR


def test_shipped_onnx_has_metadata_from_the_shipped_checkpoint():
    sess, info, sha = onnx_infer.load_session(str(learned.default_weights()))
    assert info["format"] == "geodelta-change-onnx-v1" and len(sha) == 64
    assert info["source_checkpoint"] == learned.default_checkpoint().name
    assert [i.name for i in sess.get_inputs()] == ["a", "b"] and sess.get_outputs()[0].name == "prob"


@needs_torch
@pytest.mark.parametrize("i", [0, 1, 2])
def test_onnx_and_torch_agree_on_real_crops(data_dir: Path, i: int):
    before, after, h, w = _crops(data_dir)[i]
    xa, xb = _prepared(before, after, h, w)
    from geodelta.perception.learned.onnx_export import verify

    diff = verify(learned.default_checkpoint(), learned.default_weights(), xa, xb)
    assert diff < 1e-4, f"max |onnx - torch| = {diff}"


def test_subtiled_batched_inference_matches_whole_window_away_from_seams(data_dir: Path):
    lv = data_dir / "whu_tiles"
    xa, xb = _prepared(lv / "A" / "000213.png", lv / "B" / "000213.png", 512, 512)
    sess, _, _ = onnx_infer.load_session(str(learned.default_weights()))
    whole = onnx_infer.predict(sess, xa, xb)
    tiled = onnx_infer.predict(sess, xa, xb, tile=256, halo=64, batch=3)
    assert whole.shape == tiled.shape == (512, 512)
    assert np.mean((whole >= 0.5) != (tiled >= 0.5)) < 1e-3  # 64 px halo: decisions (almost) never move
    assert np.abs(whole - tiled).mean() < 1e-3


def test_an_onnx_file_that_is_not_a_model_is_a_clear_error(tmp_path: Path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    masker = change.get_masker("learned", weights=bad)
    with pytest.raises(Exception, match="not a loadable ONNX model"):
        masker.fit(np.ones((3, 10), np.float32), np.ones((3, 10), np.float32))


@pytest.mark.parametrize("method", ["learned", "buildings"])
def test_detect_learned_runs_without_importing_torch(data_dir: Path, tmp_path: Path, method: str):
    # The base install has no torch; here a subprocess blocks `import torch` and runs the detect path.
    lv = data_dir / "levir_crops"
    code = f"""
import sys, json
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch blocked")
sys.meta_path.insert(0, Block())
from geodelta.contracts import DetectOptions
from geodelta.perception.pipeline.detect import run_detect
s = run_detect({str(lv / 'A' / 'test_2_0000_0000.png')!r}, {str(lv / 'B' / 'test_2_0000_0000.png')!r}, {str(tmp_path / 'o')!r}, DetectOptions(method={method!r}))
p = s["method"]["params"]
print(json.dumps({{"runtime": p["runtime"], "model": p["model"], "type": p.get("change_type"), "changed": s["change"]["changed_px"], "torch": "torch" in sys.modules}}))
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["runtime"] == "onnx" and not out["torch"] and out["changed"] > 0
    if method == "buildings":  # the pretrained change-type model's building head
        assert out["model"] == "effnet_siamese_v1" and out["type"] == "building"


def test_release_memory_keeps_the_session_and_its_answers(data_dir: Path):
    """After the change stage hands the arena back, the same session still gives the same probabilities."""
    lv = data_dir / "levir_crops"
    xa, xb = _prepared(lv / "A" / "test_2_0000_0000.png", lv / "B" / "test_2_0000_0000.png", 256, 256)
    sess, _, _ = onnx_infer.load_session(str(learned.default_weights()))
    before = onnx_infer.predict(sess, xa, xb)
    assert onnx_infer.release_memory() >= 1
    assert np.array_equal(onnx_infer.predict(sess, xa, xb), before)


def test_buildings_masker_scores_windows_smaller_than_its_stride(data_dir: Path):
    """effnet_siamese has stride-16 stages: windows under 32 px (scene edges, small crops) are padded, not refused."""
    from geodelta.perception.learned.siamese import BuildingMasker

    lv = data_dir / "levir_crops"
    with open_pair(lv / "A" / "test_2_0000_0000.png", lv / "B" / "test_2_0000_0000.png") as pair:
        a, b, valid = pair.read(Window(0, 0, 64, 64))
        roles = pair_roles(pair)
    m = BuildingMasker(roles=roles)
    params = m.fit(a.reshape(3, -1), b.reshape(3, -1))
    full = m.score(a, b, valid, params)
    for h, w in [(1, 1), (8, 8), (20, 36)]:
        got = m.score(a[:, :h, :w], b[:, :h, :w], valid[:h, :w], params)
        assert got.shape == (h, w) and np.isfinite(got).all() and ((got >= 0) & (got <= 1)).all()
    assert full.shape == (64, 64)
    assert onnx_infer.release_memory() >= 1  # its tiny probe run works on this network too
