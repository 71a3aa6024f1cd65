"""Which torch device runs a model: GEODELTA_DEVICE (`auto|cpu|cuda`) resolved against the machine.

Shared by the learned change model, SAM and the local VLM, so one setting moves all three. torch is
imported only when a device is resolved.
"""

from __future__ import annotations

from geodelta.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device: str | None = None) -> str:
    """'auto' (or None: the GEODELTA_DEVICE setting) -> 'cuda' when torch sees a GPU, else 'cpu';
    'cuda' without a GPU and unknown names are a ConfigError."""
    if device is None:
        from geodelta.settings import Settings

        device = Settings().device
    if device not in DEVICES:
        raise ConfigError(f"unknown device {device!r}: set GEODELTA_DEVICE to one of {', '.join(DEVICES)}")
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("GEODELTA_DEVICE=cuda but torch sees no CUDA GPU: set GEODELTA_DEVICE=auto or cpu.")
    return device
