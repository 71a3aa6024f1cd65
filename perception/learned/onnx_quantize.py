"""Quantise an exported change network to int8 (onnxruntime static QDQ): about twice the CPU speed, same decisions.

    python -m geodelta.perception.learned.onnx_quantize --model geodelta/data/weights/siamese_v3.onnx \
        --out geodelta/data/weights/siamese_v3_int8.onnx

Weights are int8 per output channel; activations uint8 with ranges calibrated on crops of the training
scenes only (perception/learned/train.py TRAIN_DOMAINS minus VAL_SPLIT), so the held-out tables of
`geodelta bench change` stay held out. The file keeps the source's `geodelta` metadata and adds the
source ONNX file's sha256 and the calibration crops. Needs the `onnx` package (the [train] extra); running
the result needs only onnxruntime.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from geodelta.perception.io.checksum import file_sha256
from geodelta.perception.learned.onnx_export import write_metadata

CROP = 256  # calibration crop edge (px): the activations' range, not their spatial extent, is what is measured
CROPS_PER_PAIR = 2


def calibration_inputs(data: Path, max_pairs_per_domain: int = 3) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
    """(crop name, {"a", "b"} network inputs (1, C, CROP, CROP)) from the training scenes of every training domain."""
    from rasterio.windows import Window

    from geodelta.perception.evaluation.datasets import labelled_pairs
    from geodelta.perception.io.reader import open_pair
    from geodelta.perception.learned import siamese as learned
    from geodelta.perception.learned.train import TRAIN_DOMAINS, VAL_SPLIT

    for domain in TRAIN_DOMAINS:
        train = [lp for lp in labelled_pairs(data, [domain]) if lp.name not in VAL_SPLIT.get(domain, set())]
        for lp in train[:max_pairs_per_domain]:
            with open_pair(lp.before, lp.after, bands=lp.bands) as pair:
                h, w = pair.grid.height, pair.grid.width
                size = min(CROP, h, w) // 8 * 8  # the networks take multiples of 8
                # crops on the diagonal: the top-left and the centre of the scene
                for k, (r, c) in enumerate([(0, 0), ((h - size) // 2, (w - size) // 2)][:CROPS_PER_PAIR]):
                    xa, xb = learned.prepare_window(pair, Window(c, r, size, size))
                    yield f"{domain}/{lp.name}#{k}", {"a": xa[None], "b": xb[None]}


def quantize(model: str | Path, out: str | Path, data: Path) -> dict[str, Any]:
    """Write `out`, the int8 QDQ version of `model`; returns the `geodelta` metadata stored in it."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    crops = list(calibration_inputs(data))
    if not crops:
        raise SystemExit(f"no training scenes under {data}: set GEODELTA_DATA to the shared data folder")

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(feeds for _, feeds in crops)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

    out = Path(out)
    pre = out.with_suffix(".pre.onnx")
    try:
        # shape inference and constant folding first, as onnxruntime's quantisation guide asks
        quant_pre_process(str(model), str(pre), skip_symbolic_shape=True)
        # U8 activations, S8 per-channel weights: onnxruntime's fast u8s8 kernels on x86 (AVX2 and newer).
        # reduce_range (7-bit weights): without VNNI, AVX2's u8s8 kernel (VPMADDUBSW) sums pairs of products in
        # int16 and can saturate (onnxruntime's quantisation guide); measured on a 2-core AMD EPYC (AVX2, no VNNI)
        # with onnxruntime 1.32, effnet_siamese_v1's full-range int8 file took another decision than float on
        # 2.6 % of a held-out LEVIR crop's pixels, the reduced-range one on 1.4 %.
        quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        reduce_range=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    finally:
        pre.unlink(missing_ok=True)
    m = onnx.load(str(model))
    info = json.loads({p.key: p.value for p in m.metadata_props}["geodelta"])
    info |= {"quantized": "int8 static QDQ, per-channel weights, uint8 activations (onnxruntime.quantization)",
             "float_model": Path(model).name, "float_model_sha256": file_sha256(model),
             "calibration": [name for name, _ in crops]}
    write_metadata(out, info)
    return info


def main(argv: list[str] | None = None) -> None:
    from geodelta.settings import Settings

    ap = argparse.ArgumentParser(prog="python -m geodelta.perception.learned.onnx_quantize", description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="float ONNX change model (from onnx_export)")
    ap.add_argument("--out", required=True, help="int8 ONNX file to write")
    args = ap.parse_args(argv)
    info = quantize(args.model, args.out, Settings().data)
    print(json.dumps({"out": args.out, "float_model_sha256": info["float_model_sha256"],
                      "calibration_crops": len(info["calibration"]), "sha256": file_sha256(args.out)}))


if __name__ == "__main__":  # pragma: no cover
    main()
