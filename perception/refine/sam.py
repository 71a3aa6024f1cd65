"""The SAM refiner (segment-anything): one image embedding per tile, one box + one point prompt per coarse
component. torch is imported only when a SamRefiner is built."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from geodelta.errors import ConfigError, MissingDependencyError
from geodelta.perception.learned.device import resolve_device
from geodelta.perception.refine.registry import register_refiner
from geodelta.perception.refine.scene import _check, rgb_uint8, window_stats

SAM_MODEL_TYPES = ("vit_b", "vit_l", "vit_h")



@functools.lru_cache(maxsize=2)
def load_sam(checkpoint: str, model_type: str, device: str, builder: Callable[[], Any] | None = None) -> Any:
    """A SamPredictor, loaded once per process per (checkpoint, type, device, builder).

    segment-anything's builders call torch.load without map_location, so the model is built with
    checkpoint=None and the state dict loaded on the CPU (weights_only) first (ARCHITECTURE s.10).
    `builder` (tests): a callable returning an untrained `Sam`, instead of sam_model_registry[model_type].
    """
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise ConfigError(f"SAM checkpoint {path} does not exist: set GEODELTA_SAM_CHECKPOINT to a segment-anything "
                          "checkpoint file (e.g. sam_vit_b_01ec64.pth), or unset it to use the superpixel refiner")
    try:
        import torch
        from segment_anything import SamPredictor, sam_model_registry
    except ImportError as e:
        raise MissingDependencyError(f"the SAM refiner needs torch and segment-anything ({e}): pip install 'geodelta[sam]', "
                          "or use refiner='superpixel'") from None
    if builder is None:
        if model_type not in SAM_MODEL_TYPES:
            raise ConfigError(f"unknown SAM model type {model_type!r}: set GEODELTA_SAM_MODEL_TYPE to one of "
                              f"{', '.join(SAM_MODEL_TYPES)}")
        builder = functools.partial(sam_model_registry[model_type], checkpoint=None)
    device = resolve_device(device)
    model = builder()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except Exception as e:  # torch raises RuntimeError/UnpicklingError/KeyError for wrong files
        raise ConfigError(f"{path} is not a {model_type} segment-anything checkpoint ({str(e)[:200]}): set "
                          "GEODELTA_SAM_MODEL_TYPE to the type it was trained as (vit_b|vit_l|vit_h)") from None
    model.to(device).eval()
    return SamPredictor(model)


@register_refiner
class SamRefiner:
    """segment-anything prompted per coarse component: its bounding box plus one positive point (the pixel
    farthest from its edge). One `set_image` per tile, prompts decoded in batches of `batch`.

    Guard: SAM's mask is kept only within `grow_px` pixels (a disk) of the coarse component, so a box
    prompt cannot grab the whole field or building block around a small change; where SAM's predicted
    IoU is under `min_score` or its guarded mask is empty, the coarse component is kept as it was.
    Components under `min_prompt_px` pixels are kept as they are (too small to prompt).
    """

    name = "sam"

    def __init__(self, checkpoint: str | Path, model_type: str = "vit_b", device: str = "auto",
                 grow_px: int = 8, min_score: float = 0.5, min_prompt_px: int = 4, batch: int = 32,
                 builder: Callable[[], Any] | None = None):
        self.checkpoint, self.model_type, self.device = str(checkpoint), model_type, device
        self.grow_px, self.min_score, self.min_prompt_px, self.batch = int(grow_px), float(min_score), int(min_prompt_px), int(batch)
        self.predictor = load_sam(self.checkpoint, model_type, device, builder)

    def prompts(self, coarse: np.ndarray) -> tuple[np.ndarray, list[tuple[slice, slice]], np.ndarray, np.ndarray]:
        """Components of `coarse` (4-connected): labels, bbox slices, XYXY pixel boxes (N, 4) and points (N, 2) x, y."""
        labels, n = ndimage.label(coarse)
        objs = ndimage.find_objects(labels)
        boxes, points = np.zeros((n, 4), np.float32), np.zeros((n, 2), np.float32)
        for k, (rs, cs) in enumerate(objs):
            comp = labels[rs, cs] == k + 1
            dist = ndimage.distance_transform_edt(np.pad(comp, 1))[1:-1, 1:-1]
            r, c = np.unravel_index(int(np.argmax(dist)), dist.shape)
            boxes[k] = (cs.start, rs.start, cs.stop, rs.stop)
            points[k] = (cs.start + c + 0.5, rs.start + r + 0.5)  # pixel centre, SAM's (x, y) input frame
        return labels, objs, boxes, points

    def _decode(self, boxes: np.ndarray, points: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        import torch

        p = self.predictor
        with torch.inference_mode():
            bt = p.transform.apply_boxes_torch(torch.as_tensor(boxes, device=p.device), size)
            pt = p.transform.apply_coords_torch(torch.as_tensor(points[:, None, :], device=p.device), size)
            lt = torch.ones(pt.shape[:2], dtype=torch.int, device=p.device)
            masks, iou, _ = p.predict_torch(pt, lt, boxes=bt, multimask_output=False)
        return masks[:, 0].cpu().numpy(), iou[:, 0].float().cpu().numpy()

    def refine_mask(self, a, b, coarse, valid, rgb=None, core=None, scene=None) -> np.ndarray:
        coarse, valid = _check(a, b, coarse, valid)
        out = np.zeros_like(coarse)
        if not coarse.any():
            return out
        labels, objs, boxes, points = self.prompts(coarse)
        h, w = coarse.shape
        todo = []
        for k, (rs, cs) in enumerate(objs):
            small = int((labels[rs, cs] == k + 1).sum()) < self.min_prompt_px
            outside = core is not None and (rs.stop <= core[0].start or rs.start >= core[0].stop
                                            or cs.stop <= core[1].start or cs.start >= core[1].stop)
            if small:
                out[rs, cs] |= labels[rs, cs] == k + 1
            elif not outside:
                todo.append(k)
        if not todo:
            return out & valid
        scene = scene or window_stats(a, b, valid, coarse)
        self.predictor.set_image(rgb_uint8(b, valid, rgb, scene.lo_b, scene.hi_b))  # one embedding per tile, HWC uint8
        disk = _disk(self.grow_px)
        g = self.grow_px
        for i in range(0, len(todo), self.batch):
            ks = todo[i:i + self.batch]
            masks, scores = self._decode(boxes[ks], points[ks], (h, w))
            for m, s, k in zip(masks, scores, ks):
                rs, cs = objs[k]
                r0, r1, c0, c1 = max(rs.start - g, 0), min(rs.stop + g, h), max(cs.start - g, 0), min(cs.stop + g, w)
                comp = labels[r0:r1, c0:c1] == k + 1
                guard = ndimage.binary_dilation(comp, structure=disk) if g > 0 else comp
                snapped = m[r0:r1, c0:c1] & guard
                out[r0:r1, c0:c1] |= snapped if (s >= self.min_score and snapped.any()) else comp
        return out & valid


def _disk(r: int) -> np.ndarray:
    y, x = np.ogrid[-r:r + 1, -r:r + 1]
    return x * x + y * y <= r * r
