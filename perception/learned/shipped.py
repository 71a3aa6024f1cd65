"""Which shipped ONNX file a learned change model runs from: its name and precision (int8 or float)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from geodelta.errors import ConfigError

# Precision of the shipped ONNX models on the CPU: int8 (static QDQ, perception/learned/onnx_quantize.py) or float
# (the exported graph itself, the one the torch checkpoint is compared with). Each model's default is the one that
# measured no worse on the held-out scenes of `geodelta bench change` (MODEL_CARD.md, EFFNET_CARD.md):
# siamese_v3 int8 has the float model's pixel F1 or better on all six domains and runs 2.6x faster; effnet's int8
# building head loses a little pixel F1 everywhere and object F1 on LEVIR (0.725 -> 0.638), the figure a
# "how many buildings" answer rests on, so it stays float (2.0 MP/s there already).
PRECISIONS = ("int8", "float")
DEFAULT_PRECISION = {"siamese_v3": "int8", "effnet_siamese_v1": "float"}


def shipped_model(name: str = "siamese_v3", precision: str | None = None) -> Path:
    """The shipped ONNX file of model `name` (siamese_v3, effnet_siamese_v1) in `precision` (int8 or float;
    None: the model's measured default, DEFAULT_PRECISION)."""
    precision = precision or DEFAULT_PRECISION.get(name, "float")
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown model precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    return Path(str(resources.files("geodelta.data") / "weights")) / (f"{name}_int8.onnx" if precision == "int8" else f"{name}.onnx")
