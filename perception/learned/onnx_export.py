"""Export a trained GeoDelta change checkpoint (.pt, torch) to the ONNX file inference runs (no torch there).

    python -m geodelta.perception.learned.onnx_export --weights geodelta/data/weights/siamese_v3.pt \
        --out geodelta/data/weights/siamese_v3.onnx

The graph takes `a`, `b` float32 (N, C, H, W) with dynamic N, H, W (multiples of 8) and returns `prob`,
the sigmoid of the network's logits (for a change-type network, perception/learned/effnet.py, also
`heads` (N, K, H, W), one probability per change type, `prob` being their maximum). The checkpoint's config and meta and its sha256 go into the ONNX
metadata entry `geodelta`. Needs the [train] extra (torch) and the `onnx` package for the exporter;
`verify` compares onnxruntime with torch on given inputs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from geodelta.perception.learned import siamese as learned

OPSET = 17  # onnxruntime >= 1.14 runs opset 17; bilinear Resize and everything else here exist in it


def export_onnx(weights: str | Path, out: str | Path) -> dict[str, Any]:
    """Write `out` (.onnx) from checkpoint `weights`; returns the metadata stored in the file."""
    torch = learned.require_torch()
    import onnx  # noqa: F401 (fail before exporting when the onnx package is missing; write_metadata uses it)

    model, meta, sha = learned.load_model(weights, "cpu")

    Module: Any = torch.nn.Module  # torch is imported lazily, so its classes are run-time values here

    class WithSigmoid(Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, a, b):
            return torch.sigmoid(self.net(a, b))

    class WithHeads(Module):  # a change-type network: `prob` (any change, the max) and `heads` (one per type)
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, a, b):
            heads = torch.sigmoid(self.net.heads(a, b))
            return heads.amax(1, keepdim=True), heads

    ckpt = torch.load(weights, map_location="cpu", weights_only=True)
    typed = hasattr(model, "heads")
    wrapped = (WithHeads(model) if typed else WithSigmoid(model)).eval()
    outputs = ["prob", "heads"] if typed else ["prob"]
    in_ch = int(ckpt["config"].get("in_ch", learned.IN_CH))
    dummy = (torch.zeros(1, in_ch, 64, 64), torch.zeros(1, in_ch, 64, 64))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    dyn = {0: "n", 2: "h", 3: "w"}
    # dynamo=False: the TorchScript exporter, which needs no onnxscript and handles this plain CNN.
    torch.onnx.export(wrapped, dummy, str(out), input_names=["a", "b"], output_names=outputs, opset_version=OPSET,
                      dynamic_axes={"a": dyn, "b": dyn} | {o: dyn for o in outputs}, do_constant_folding=True, dynamo=False)
    info = {"format": "geodelta-change-onnx-v1", "config": dict(ckpt["config"]), "meta": meta,
            "source_checkpoint": Path(weights).name, "source_sha256": sha, "multiple": learned.MULTIPLE}
    if typed:
        info["heads"] = list(model.head_names)
    write_metadata(out, info)
    return info


def write_metadata(path: str | Path, info: dict[str, Any]) -> None:
    """Replace the ONNX file's metadata with the one `geodelta` entry onnx_infer.load_session reads."""
    import onnx

    m = onnx.load(str(path))
    del m.metadata_props[:]
    entry = m.metadata_props.add()
    entry.key, entry.value = "geodelta", json.dumps(info, sort_keys=True)
    m.producer_name = "geodelta"
    onnx.save(m, str(path))


def verify(weights: str | Path, onnx_path: str | Path, xa: np.ndarray, xb: np.ndarray) -> float:
    """Max |onnxruntime - torch| of the change probability on prepared inputs (C, h, w)."""
    from geodelta.perception.learned import onnx_infer

    model, _, _ = learned.load_model(weights, "cpu")
    p_torch = learned.predict(model, xa, xb)
    sess, _, _ = onnx_infer.load_session(str(onnx_path))
    p_onnx = onnx_infer.predict(sess, xa, xb)
    return float(np.abs(p_torch - p_onnx).max())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m geodelta.perception.learned.onnx_export", description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default=None, help="checkpoint .pt (default: the shipped siamese_v3.pt)")
    ap.add_argument("--out", required=True, help="ONNX file to write")
    args = ap.parse_args(argv)
    weights = args.weights or learned.default_checkpoint()
    info = export_onnx(weights, args.out)
    print(json.dumps({"out": args.out, "source_sha256": info["source_sha256"]}))


if __name__ == "__main__":  # pragma: no cover
    main()
