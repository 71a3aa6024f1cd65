"""Region refinement (ViLaCD-R1's second stage): coarse change regions -> precise boundaries.

A refiner snaps a tile's coarse change mask to image structure. Two ship, in one registry:
`superpixel` (training-free: SLIC superpixels of the stacked before+after bands, each kept when
most of it is coarse change) and `sam` (segment-anything: one image embedding per tile, one box +
one point prompt per coarse component). Without a SAM checkpoint the superpixel refiner runs, and
every refined Region's `refined_by` says which refiner drew it. torch is imported only when SAM
is asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from geodelta.errors import ConfigError, InputError
from geodelta.registry import resolve

if TYPE_CHECKING:
    from geodelta.perception.refine.scene import SceneStats


@runtime_checkable
class Refiner(Protocol):
    """refine_mask on one window; tiles are independent (no fit)."""

    name: str

    def refine_mask(self, a: np.ndarray, b: np.ndarray, coarse: np.ndarray, valid: np.ndarray,
                    rgb: tuple[int, int, int] | None = None, core: tuple[slice, slice] | None = None,
                    scene: SceneStats | None = None) -> np.ndarray:
        """a, b: float32 (B, h, w) before/after bands; coarse, valid: bool (h, w); rgb: band indices of
        red, green, blue (None: grey from band 0); core: the (rows, cols) slices whose result is kept (the
        rest is halo; None = all); scene: scene-wide stats (None: from this window). Returns the refined
        bool (h, w) mask, False where not valid."""
        ...


# Lazy "module:Class" entries: listing names (tool schemas, CLI help) imports no refiner, and SAM's torch
# stays unimported until SAM is asked for.
REFINERS: dict[str, type | str] = {
    "superpixel": "geodelta.perception.refine.superpixel:SuperpixelRefiner",
    "sam": "geodelta.perception.refine.sam:SamRefiner",
}


def register_refiner(cls: type[Any]) -> type[Any]:
    """Class decorator: add a refiner class to `REFINERS` under its `name`."""
    REFINERS[cls.name] = cls
    return cls


def list_refiners() -> list[str]:
    return sorted(REFINERS)


def get_refiner(name: str, **options: Any) -> Refiner:
    """A refiner instance by registry name; unknown names raise InputError listing the choices."""
    try:
        cls = resolve(REFINERS, name)
    except KeyError:
        raise InputError(f"unknown refiner {name!r}: choose one of {', '.join(list_refiners())} (or 'auto')") from None
    return cls(**options)


def refiner_from_settings(settings: Any, name: str = "auto") -> Refiner:
    """`auto`: SAM when settings.sam_checkpoint is set, else superpixels. `sam` without a checkpoint or
    with a missing file is a ConfigError that says how to fix it."""
    ckpt = settings.sam_checkpoint
    if name == "auto":
        name = "sam" if ckpt else "superpixel"
    if name != "sam":
        return get_refiner(name)
    if not ckpt:
        raise ConfigError("the SAM refiner needs a checkpoint: set GEODELTA_SAM_CHECKPOINT to a segment-anything .pth "
                          "file (and GEODELTA_SAM_MODEL_TYPE to vit_b|vit_l|vit_h), or use refiner='superpixel'")
    return get_refiner("sam", checkpoint=ckpt, model_type=settings.sam_model_type, device=settings.device)
