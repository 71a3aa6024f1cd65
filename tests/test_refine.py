"""Region refinement: superpixel voting on real pairs, the refiner registry and settings, and the real
segment-anything prompt path through a tiny randomly initialised SAM built from the library's classes."""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import rasterio
from scipy import ndimage

from geodelta.contracts import DetectOptions
from geodelta.errors import ConfigError, InputError
from geodelta.perception.evaluation.metrics import boundary_f1, confusion, count_error, scores
from geodelta.perception.io.reader import open_pair
from geodelta.perception.pipeline.detect import detect_stage
from geodelta.perception.refine.registry import get_refiner, list_refiners, refiner_from_settings
from geodelta.perception.refine.stage import refine_stage
from geodelta.perception.refine.superpixel import SuperpixelRefiner
from geodelta.settings import Settings


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1)


def _truth(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("L")) > 127  # SZTAKI/LEVIR: 255 = change, binarise > 127


@pytest.fixture(scope="module")
def szada4(data_dir: Path, tmp_path_factory) -> dict:
    """SZTAKI Szada/4 (952x640 RGB, 1.5 m): irmad change.tif, then the superpixel refiner."""
    d = data_dir / "sztaki" / "Szada" / "4"
    out = tmp_path_factory.mktemp("szada4")
    pair = open_pair(d / "im1.png", d / "im2.png")
    det = detect_stage(pair, out, DetectOptions(method="irmad"))  # the refiner is measured on IR-MAD masks (README)
    tif, regions = refine_stage(pair, det.change_tif, det.prob_tif, out, get_refiner("superpixel"))
    return {"pair": pair, "det": det, "tif": tif, "regions": regions, "truth": _truth(d / "gt.png"), "out": out}


def test_registry_lists_both_and_refuses_unknown_names():
    assert {"sam", "superpixel"} <= set(list_refiners())
    with pytest.raises(InputError, match="unknown refiner 'snake'.*superpixel"):
        get_refiner("snake")
    with pytest.raises(InputError, match="vote"):
        get_refiner("superpixel", vote=0)


def test_settings_pick_superpixels_without_checkpoint_and_refuse_bad_sam(tmp_path: Path):
    assert refiner_from_settings(Settings(sam_checkpoint=None)).name == "superpixel"
    assert refiner_from_settings(Settings(sam_checkpoint=None), "superpixel").name == "superpixel"
    with pytest.raises(ConfigError, match="GEODELTA_SAM_CHECKPOINT"):
        refiner_from_settings(Settings(sam_checkpoint=None), "sam")
    with pytest.raises(ConfigError, match="does not exist"):
        refiner_from_settings(Settings(sam_checkpoint=tmp_path / "missing.pth"))


def test_importing_perception_refine_does_not_import_torch():
    import subprocess

    code = "import sys, geodelta.perception, geodelta.perception.refine.sam; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


def test_superpixel_refined_raster_and_regions(szada4):
    det, tif = szada4["det"], szada4["tif"]
    refined, coarse = _read(tif), _read(det.change_tif)
    assert tif.name == "change_refined.tif" and refined.shape == coarse.shape == (640, 952) and refined.dtype == np.uint8
    assert set(np.unique(refined)) <= {0, 1, 255}
    assert np.array_equal(refined == 255, coarse == 255)  # nodata is never refined into data
    assert szada4["regions"] and all(r.refined_by == "superpixel" for r in szada4["regions"])
    assert sum(r.area_px for r in szada4["regions"]) <= int((refined == 1).sum())


def test_superpixel_refinement_is_deterministic(szada4, tmp_path: Path):
    det = szada4["det"]
    tif, regions = refine_stage(szada4["pair"], det.change_tif, det.prob_tif, tmp_path, get_refiner("superpixel"))
    assert np.array_equal(_read(tif), _read(szada4["tif"]))
    assert regions == szada4["regions"]  # Region equality compares every field, the polygon as JSON


def test_superpixel_refinement_improves_szada4_against_its_label(szada4):
    # Measured on Szada/4 with irmad: pixel F1 0.481 -> 0.521, boundary F1 (2 px) 0.129 -> 0.158,
    # region-count error 40.9 -> 11.5 (benchmarks/refine.py has every domain).
    truth = szada4["truth"]
    coarse, refined = _read(szada4["det"].change_tif) == 1, _read(szada4["tif"]) == 1
    assert scores(confusion(refined, truth))["f1"] >= 0.50
    assert boundary_f1(refined, truth)["f1"] >= boundary_f1(coarse, truth)["f1"] + 0.02
    assert count_error(refined, truth) < count_error(coarse, truth) / 2


def test_tiled_refinement_matches_the_whole_scene_in_quality(szada4, tmp_path: Path):
    # Tiles share the scene's stretch and superpixel size (SceneStats), but SLIC seeds its grid from each
    # window's origin, so superpixels (and a few boundary pixels) differ; the quality must not.
    det, truth = szada4["det"], szada4["truth"]
    tif, _ = refine_stage(szada4["pair"], det.change_tif, det.prob_tif, tmp_path, get_refiner("superpixel"), tile=256)
    tiled, whole = _read(tif) == 1, _read(szada4["tif"]) == 1
    coarse = _read(det.change_tif) == 1

    def f1(m: np.ndarray) -> float:
        return scores(confusion(m, truth))["f1"]

    # Measured pixel F1 over tile sizes 128..1024: 0.519..0.521.
    assert abs(f1(tiled) - f1(whole)) < 0.02
    assert boundary_f1(tiled, truth)["f1"] > boundary_f1(coarse, truth)["f1"]
    assert count_error(tiled, truth) < count_error(coarse, truth) / 2


def test_superpixel_refine_mask_respects_valid_and_empty():
    rng = np.random.default_rng(0)
    a, b = rng.random((3, 40, 50), dtype=np.float32), rng.random((3, 40, 50), dtype=np.float32)
    valid = np.ones((40, 50), bool)
    valid[:, :10] = False
    ref = SuperpixelRefiner(size_px=16)
    assert not ref.refine_mask(a, b, np.zeros((40, 50), bool), valid).any()
    out = ref.refine_mask(a, b, np.ones((40, 50), bool), valid)
    assert out.dtype == bool and out.shape == (40, 50) and not out[:, :10].any() and out[:, 10:].all()
    with pytest.raises(InputError):
        ref.refine_mask(a, b[:2], np.ones((40, 50), bool), valid)


def test_boundary_f1_and_count_error():
    m = np.zeros((64, 64), bool)
    m[10:30, 10:30] = True
    assert boundary_f1(m, m)["f1"] == 1.0
    assert boundary_f1(np.roll(m, 1, axis=1), m)["f1"] == 1.0  # within the 2 px tolerance
    assert boundary_f1(np.roll(m, 6, axis=1), m)["f1"] < 0.6
    two = m.copy()
    two[40:50, 40:50] = True
    assert count_error(two, m) == 1.0 and count_error(m, m) == 0.0


# ---------------------------------------------------------------- SAM: tiny random model, real prompt path


def _tiny_sam(img_size: int = 256, dim: int = 32):
    """A randomly initialised Sam laid out like segment_anything.build_sam._build_sam, shrunk for CPU tests."""
    import torch
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    torch.manual_seed(0)
    return Sam(
        image_encoder=ImageEncoderViT(
            depth=1, embed_dim=dim, img_size=img_size, mlp_ratio=2, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=2, patch_size=16, qkv_bias=True, use_rel_pos=True, global_attn_indexes=(0,), window_size=4,
            out_chans=32,
        ),
        prompt_encoder=PromptEncoder(embed_dim=32, image_embedding_size=(img_size // 16, img_size // 16),
                                     input_image_size=(img_size, img_size), mask_in_chans=4),
        mask_decoder=MaskDecoder(num_multimask_outputs=3, transformer=TwoWayTransformer(depth=1, embedding_dim=32, mlp_dim=64, num_heads=2),
                                 transformer_dim=32, iou_head_depth=2, iou_head_hidden_dim=32),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    ).eval()


@pytest.fixture(scope="module")
def tiny_sam(tmp_path_factory) -> Path:
    torch = pytest.importorskip("torch", reason="the SAM refiner needs the [sam] extra (torch)")
    pytest.importorskip("segment_anything", reason="the SAM refiner needs the [sam] extra (segment-anything)")
    path = tmp_path_factory.mktemp("sam") / "tiny_sam.pth"
    torch.save(_tiny_sam().state_dict(), path)
    return path


@pytest.fixture(scope="module")
def levir_det(data_dir: Path, tmp_path_factory) -> dict:
    root = data_dir / "levir_crops"
    name = "test_77_0512_0256.png"
    out = tmp_path_factory.mktemp("levir77")
    pair = open_pair(root / "A" / name, root / "B" / name)
    return {"pair": pair, "det": detect_stage(pair, out)}


def test_sam_snaps_regions_within_the_guard(tiny_sam: Path, levir_det: dict, tmp_path: Path):
    ref = get_refiner("sam", checkpoint=tiny_sam, device="cpu", builder=_tiny_sam, min_score=float("-inf"), grow_px=6)
    det = levir_det["det"]
    tif, regions = refine_stage(levir_det["pair"], det.change_tif, det.prob_tif, tmp_path, ref)
    coarse, refined = _read(det.change_tif) == 1, _read(tif)
    assert refined.shape == coarse.shape == (256, 256) and refined.dtype == np.uint8
    assert regions and all(r.refined_by == "sam" for r in regions)
    guard = ndimage.distance_transform_edt(~coarse) <= 6  # the 6 px Euclidean disk the refiner grows by
    assert not ((refined == 1) & ~guard).any()
    assert not np.array_equal(refined == 1, coarse)  # SAM's masks were used, not the coarse fallback


def test_sam_low_score_keeps_the_coarse_mask(tiny_sam: Path, levir_det: dict, tmp_path: Path):
    ref = get_refiner("sam", checkpoint=tiny_sam, device="cpu", builder=_tiny_sam, min_score=2.0)  # IoU is <= 1
    det = levir_det["det"]
    tif, _ = refine_stage(levir_det["pair"], det.change_tif, det.prob_tif, tmp_path, ref)
    assert np.array_equal(_read(tif) == 1, _read(det.change_tif) == 1)


def test_sam_prompts_are_a_box_and_an_inner_point(tiny_sam: Path):
    ref = get_refiner("sam", checkpoint=tiny_sam, device="cpu", builder=_tiny_sam)
    m = np.zeros((30, 40), bool)
    m[5:15, 20:36] = True
    _, _, boxes, points = ref.prompts(m)
    assert boxes.tolist() == [[20, 5, 36, 15]]  # XYXY pixels, exclusive max
    x, y = points[0]
    assert m[int(y), int(x)] and 24 <= x <= 32 and 8 <= y <= 12


def test_sam_checkpoint_for_another_model_is_a_config_error(tiny_sam: Path, tmp_path: Path):
    import torch

    other = tmp_path / "other.pth"
    torch.save(_tiny_sam(dim=16).state_dict(), other)
    with pytest.raises(ConfigError, match="GEODELTA_SAM_MODEL_TYPE"):
        get_refiner("sam", checkpoint=other, device="cpu", builder=_tiny_sam)


# ---------------------------------------------------------------- the tool


def test_refine_regions_tool_replaces_regions_and_keeps_land_cover(data_dir: Path, tmp_path: Path):
    from geodelta.tools import detect, landcover, refine, scene
    from geodelta.tools.context import ToolContext

    ctx = ToolContext.create(Settings(out=tmp_path / "out", sam_checkpoint=None))
    d = data_dir / "sztaki" / "Szada" / "1"
    ctx.allow(d)
    sid = scene.make(ctx).invoke({"before": str(d / "im1.png"), "after": str(d / "im2.png")})["scene_id"]
    aid = detect.make(ctx).invoke({"scene_id": sid})["analysis_id"]
    landcover.make(ctx).invoke({"analysis_id": aid})
    before = ctx.workspace.analysis(aid)
    res = refine.make(ctx).invoke({"analysis_id": aid})
    an = ctx.workspace.analysis(aid)
    assert res["refined_by"] == "superpixel" and res["n_regions_before"] == len(before.regions)
    assert res["n_regions"] == len(an.regions) > 0 and Path(res["change_tif"]).name == "change_refined.tif"
    assert all(r.refined_by == "superpixel" for r in an.regions)
    assert res["classes_known"] and any(r.from_class != "unknown" for r in an.regions)
    assert an.stats["refined"]["refined_by"] == "superpixel"
    again = refine.make(ctx).invoke({"analysis_id": aid})  # refines the masker's change.tif again: idempotent
    assert again["n_regions"] == res["n_regions"] and again["n_regions_before"] == res["n_regions"]
    with pytest.raises(ConfigError, match="GEODELTA_SAM_CHECKPOINT"):
        refine.make(ctx).invoke({"analysis_id": aid, "refiner": "sam"})


def test_refine_keeps_the_minimum_size_the_detection_used(demo_pair, tmp_path: Path):
    """Bug: refine_regions re-polygonised with settings.min_area_m2 (0) and brought back regions detect dropped."""
    from geodelta.tools import detect, refine, scene
    from geodelta.tools.context import ToolContext

    ctx = ToolContext.create(Settings(out=tmp_path / "out", sam_checkpoint=None, min_area_m2=0.0))
    ctx.allow(*demo_pair)
    sid = scene.make(ctx).invoke({"before": str(demo_pair[0]), "after": str(demo_pair[1])})["scene_id"]
    min_m2 = 20 * 900.0  # 20 Landsat pixels of 30 m x 30 m
    aid = detect.make(ctx).invoke({"scene_id": sid, "min_area_m2": min_m2})["analysis_id"]
    assert all(r.area_m2 >= min_m2 for r in ctx.workspace.analysis(aid).regions)
    res = refine.make(ctx).invoke({"analysis_id": aid})
    refined = ctx.workspace.analysis(aid).regions
    assert res["n_regions"] == len(refined) > 0
    assert all(r.area_m2 >= min_m2 for r in refined), min(r.area_m2 for r in refined)
