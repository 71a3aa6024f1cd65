"""Which torch device runs a model: a device name (`auto|cpu|cuda`, the GEODELTA_DEVICE setting) resolved against the machine.

Shared by the learned change model, SAM and the local VLM, so one setting moves all three. torch is
imported only when a device is resolved.
"""

from __future__ import annotations

import sys
from pathlib import Path

from geodelta.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda")
# What a CUDA GPU needs to be visible on Linux: the NVIDIA driver's control device (or WSL2's GPU device).
_GPU_NODES = ("/dev/nvidiactl", "/proc/driver/nvidia/version", "/dev/dxg")


def no_gpu_driver() -> bool:
    """True where torch cannot see a CUDA GPU whatever it is asked: Linux without an NVIDIA driver or WSL2 GPU node.

    Lets 'auto' be 'cpu' without importing torch, which costs ~470 MB of RSS and about a second (measured: the
    4000 px NAIP detect peaked at 1,675 MB with torch imported for the probe, 1,208 MB without)."""
    return sys.platform.startswith("linux") and not any(Path(p).exists() for p in _GPU_NODES)


def resolve_device(device: str | None = "auto") -> str:
    """'auto' (or None) -> 'cuda' when torch sees a GPU, else 'cpu'; 'cuda' without a GPU and unknown names are a
    ConfigError. The GEODELTA_DEVICE setting is read once, by Settings, and passed down: never read here."""
    device = device or "auto"
    if device not in DEVICES:
        raise ConfigError(f"unknown device {device!r}: set GEODELTA_DEVICE to one of {', '.join(DEVICES)}")
    if device == "auto" and no_gpu_driver():
        return "cpu"
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("GEODELTA_DEVICE=cuda but torch sees no CUDA GPU: set GEODELTA_DEVICE=auto or cpu.")
    return device
