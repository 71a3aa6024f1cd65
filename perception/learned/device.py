"""Which torch device runs a model: a device name (`auto|cpu|cuda`, the GEODELTA_DEVICE setting) resolved against the machine.

Shared by the learned change model, SAM and the local VLM, so one setting moves all three. torch is
imported only when a device is resolved.
"""

from __future__ import annotations

from geodelta.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device: str | None = "auto") -> str:
    """'auto' (or None) -> 'cuda' when torch sees a GPU, else 'cpu'; 'cuda' without a GPU and unknown names are a
    ConfigError. The GEODELTA_DEVICE setting is read once, by Settings, and passed down: never read here."""
    device = device or "auto"
    if device not in DEVICES:
        raise ConfigError(f"unknown device {device!r}: set GEODELTA_DEVICE to one of {', '.join(DEVICES)}")
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("GEODELTA_DEVICE=cuda but torch sees no CUDA GPU: set GEODELTA_DEVICE=auto or cpu.")
    return device
