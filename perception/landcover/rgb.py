"""RGB land cover from the learned chip classifier (EfficientNet-Lite0 features + softmax head, ONNX).

Used where the bands have no near-infrared (the colour rules' domain): each change region is classified
from a square chip around it at each date (a tile cut from the larger scene, at least MIN_CHIP px,
resized to the model's 224 px), so the region gets a from and a to class with a calibrated confidence
(the softmax of temperature-scaled logits; held-out ECE in the model card). Trained by
perception/learned/train_landcover.py on AID scene chips; runs with onnxruntime, no torch.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

MIN_CHIP = 64  # px: smaller regions are classified from this much context around them
BATCH = 16


def default_model() -> Path:
    return Path(str(resources.files("geodelta.data") / "weights" / "landcover_rgb_v2.onnx"))


def available() -> bool:
    return default_model().is_file()


@functools.lru_cache(maxsize=2)
def load(path: str | None = None) -> tuple[Any, dict[str, Any]]:
    """(onnxruntime session, metadata) of the classifier."""
    import onnxruntime as ort

    p = str(path or default_model())
    sess = ort.InferenceSession(p, providers=["CPUExecutionProvider"])
    return sess, json.loads(sess.get_modelmeta().custom_metadata_map["geodelta"])


def to_uint8(rgb: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """(3, h, w) raw values -> uint8 (h, w, 3), linearly stretched between per-band lo and hi (scene percentiles)."""
    x = (np.asarray(rgb, np.float32) - lo[:, None, None]) / np.maximum(hi - lo, 1e-6)[:, None, None]
    return np.moveaxis(np.clip(x * 255.0, 0, 255).astype(np.uint8), 0, -1)


def chip_box(bbox: tuple[int, int, int, int], width: int, height: int) -> tuple[int, int, int, int]:
    """A square (c0, r0, c1, r1) around a region's pixel bbox, at least MIN_CHIP px, inside the grid."""
    c0, r0, c1, r1 = bbox
    side = min(max(c1 - c0, r1 - r0, MIN_CHIP), width, height)
    cc, rc = (c0 + c1) // 2, (r0 + r1) // 2
    x0 = int(min(max(cc - side // 2, 0), width - side))
    y0 = int(min(max(rc - side // 2, 0), height - side))
    return x0, y0, x0 + side, y0 + side


def classify_chips(chips: list[np.ndarray], path: str | None = None) -> np.ndarray:
    """Class probabilities (N, 7) of uint8 (h, w, 3) RGB chips (any size; resized to the model's input)."""
    sess, info = load(path)
    size = int(info["size"])
    out = []
    for i in range(0, len(chips), BATCH):
        batch = np.stack([np.asarray(Image.fromarray(c).resize((size, size), Image.Resampling.BILINEAR)) for c in chips[i:i + BATCH]])
        out.append(sess.run(["probs"], {"rgb": np.moveaxis(batch, -1, 1).astype(np.float32)})[0])
    return np.concatenate(out) if out else np.zeros((0, len(info["classes"])), np.float32)


CAVEAT = ("Land cover of RGB regions from a learned scene classifier (EfficientNet-Lite0 on AID chips), one class per "
          "region and date from a chip around it; confidence is its calibrated probability.")


def region_classes(pair, regions: list, roles: dict[str, int], progress=None) -> tuple[list, dict[str, Any]]:
    """Each region's from / to class and confidence from chips around it at both dates (see module docstring)."""
    from rasterio.windows import Window

    from geodelta.perception.landcover import transitions

    sess, info = load()
    classes = info["classes"]
    rgb = [roles["red"], roles["green"], roles["blue"]]
    sa, sb = pair.sample()
    stretch = []
    for s in (sa, sb):
        s = s[rgb]
        if float(np.nanmax(s)) <= 255:
            stretch.append((np.zeros(3, np.float32), np.full(3, 255.0, np.float32)))
        else:
            stretch.append((np.percentile(s, 2, axis=1).astype(np.float32), np.percentile(s, 98, axis=1).astype(np.float32)))
    chips_a, chips_b = [], []
    g = pair.grid
    for i, r in enumerate(regions):
        c0, r0, c1, r1 = chip_box(r.bbox_px, g.width, g.height)
        a, b, _ = pair.read(Window(c0, r0, c1 - c0, r1 - r0))
        chips_a.append(to_uint8(a[rgb], *stretch[0]))
        chips_b.append(to_uint8(b[rgb], *stretch[1]))
        if progress:
            progress("land cover", i + 1, len(regions))
    pa, pb = classify_chips(chips_a), classify_chips(chips_b)
    out = []
    for r, p_from, p_to in zip(regions, pa, pb):
        f, t = classes[int(p_from.argmax())], classes[int(p_to.argmax())]
        conf = round(float(min(p_from.max(), p_to.max())), 3)
        out.append(r.model_copy(update={"from_class": f, "to_class": t, "how": transitions.how_of(f, t), "class_confidence": conf}))
    return out, {"rule_set": "rgb-learned", "classes_known": bool(out), "caveat": CAVEAT, "roles": roles,
                 "model": "landcover_rgb_v2", "transitions": transitions.transition_counts(out)}
