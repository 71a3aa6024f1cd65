"""From / to classes of the regions of a building-change mask.

A model trained on building-change labels (effnet_siamese_v1's building head, the `buildings` masker that `auto`
takes for questions about buildings) marks building changes only: a region of its mask has built-up land on one
side by construction. The land-cover classifier is a weaker witness. On the LEVIR crop test_2_0000_0000
(woodland cleared for 18 new houses), the AID chip classifier called 7 of the 16 mask regions
"built_up -> other" or "other -> other", so a question about new buildings dropped them. This module keeps
the classifier's classes where they agree with a building change. It gives the region built_up at the
later date otherwise. A region counts as demolished only where the classifier says so with confidence.
"""

from __future__ import annotations

from typing import Any

from geodelta.contracts import Region
from geodelta.perception.landcover.transitions import how_of

BUILT = "built_up"
# class_confidence is the lower of the two dates' calibrated probabilities (LANDCOVER_CARD.md: ECE 0.04 on held-out
# chips, 0.07 on tiles). Below 0.6 one of the two dates is a near coin toss, too weak to overturn the building
# labels' usual direction (LEVIR-CD and WHU mark mostly new construction).
DEMOLISHED_MIN_CONFIDENCE = 0.6

CAVEAT = ("The change mask comes from a building-change model, so every region is a building change. A region counts "
          f"as demolished only where land cover says built-up -> not built-up with confidence >= {DEMOLISHED_MIN_CONFIDENCE}; "
          "all others count as new buildings.")


def is_building_mask(params: dict[str, Any] | None) -> bool:
    """True when the masker's fitted params say its mask is building change (the learned model's building head)."""
    return params is not None and params.get("change_type") == "building"


def building_change_classes(regions: list[Region]) -> tuple[list[Region], dict[str, Any]]:
    """Regions with built_up on their building side, and {"new": n, "demolished": m} (see module docstring)."""
    out, new, gone = [], 0, 0
    for r in regions:
        conf = r.class_confidence or 0.0
        if r.from_class == BUILT and r.to_class != BUILT and conf >= DEMOLISHED_MIN_CONFIDENCE:
            out.append(r.model_copy(update={"how": how_of(r.from_class, r.to_class)}))
            gone += 1
            continue
        before = r.from_class if r.from_class != BUILT else "unknown"  # built-up before and after: the classifier missed the change
        out.append(r.model_copy(update={"from_class": before, "to_class": BUILT, "how": "appeared"}))
        new += 1
    return out, {"new": new, "demolished": gone, "min_confidence_demolished": DEMOLISHED_MIN_CONFIDENCE}
