"""`auto`: pick, per input, the change masker that measured best on that kind of domain (held-out scenes).

The rules read what the input says about itself: the band roles (RGB, NIR, SWIR) and the pixel size
in metres (None without a georeference), and what the question is about (`focus`: "buildings" or "any").
Each rule names the held-out domains it rests on and their measured pixel F1 (geodelta/data/weights/MODEL_CARD.md, `geodelta bench change`); the choice and its
reason go into the fitted params (summary.json, the answer's justification).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from geodelta.perception.change.maskers import get_masker, masker_class, pass_engine_hints, register_masker
from geodelta.perception.change.water import water_index_bands


@dataclass(frozen=True)
class Facts:
    """What `auto` knows about an input: band roles and pixel size (m, None when not georeferenced)."""

    roles: dict[str, int]
    pixel_m: float | None
    focus: str = "any"  # contracts.Focus: what the change of interest is about

    @property
    def rgb(self) -> bool:
        return {"red", "green", "blue"} <= set(self.roles)

    @property
    def nir(self) -> bool:
        return "nir" in self.roles


@dataclass(frozen=True)
class Rule:
    domain: str  # the kind of input, in words
    applies: Callable[[Facts], bool]
    method: str
    evidence: str  # the measured held-out F1 the choice rests on
    options: dict[str, Any] = field(default_factory=dict)  # masker options, e.g. the learned model's weights file
    question: str = ""  # what the question must be about for the rule to apply, in words ("" any question)


# In order; the first rule that applies wins. Figures: held-out pixel F1 of the shipped models in their default
# precision, siamese_v3 int8 and effnet float (MODEL_CARD.md validation table;
# OMBRIA: micro F1 over the 70 pairs of its test split through `detect_stage`, see change_water.py).
RULES: tuple[Rule, ...] = (
    Rule("a water-sensitive composite without a red band (green + SWIR or NIR, e.g. OMBRIA B11/B8/B3 flood pairs)",
         lambda f: "red" not in f.roles and water_index_bands(f.roles) is not None, "water",
         "OMBRIA test split (70 flood pairs, bands declared): water 0.754, irmad 0.324; the learned model needs red"),
    # The learned models trained on 0.2-1.5 m aerial RGB; on R, G, B alone at 10 m and coarser they lose to the
    # training-free maskers (`geodelta bench resolution`), and at 5 m they still win: the cut is at 8 m.
    Rule("red, green and blue without near-infrared at 20 m or coarser (a Landsat true-colour export)",
         lambda f: f.rgb and not f.nir and f.pixel_m is not None and f.pixel_m >= 20, "irmad",
         "RGB only, Landsat Taizhou 30 m: irmad 0.801, cva 0.638, learned 0.387"),
    Rule("red, green and blue without near-infrared at 8-20 m (a Sentinel-2 true-colour export)",
         lambda f: f.rgb and not f.nir and f.pixel_m is not None and 8 <= f.pixel_m < 20, "cva",
         "RGB only, OSCD 9 cities never trained on, 10 m: cva 0.241, irmad 0.239, learned 0.192 "
         "(SZTAKI averaged to 5 m: learned 0.404, irmad 0.336, cva 0.297)"),
    # effnet_siamese_v1's building head (EFFNET_CARD.md) wins on the building-labelled sets, LEVIR / WHU pixel F1
    # and all three on objects, but loses on mixed land change (SZTAKI 0.195): so it is taken only when the
    # question is about buildings, and siamese_v3 stays for RGB land change in general.
    Rule("RGB without near-infrared (aerial photos, Google Earth crops, PNG/JPEG)",
         lambda f: f.rgb and not f.nir and f.focus == "buildings", "buildings",
         "LEVIR 0.798 / WHU 0.855 / Beijing 0.655 for buildings vs 0.707 / 0.725 / 0.694 for learned; "
         "object F1 LEVIR 0.806 / WHU 0.077 / Beijing 0.588 vs 0.489 / 0.011 / 0.174", question="buildings"),
    Rule("RGB without near-infrared (aerial photos, Google Earth crops, PNG/JPEG)",
         lambda f: f.rgb and not f.nir, "learned",
         "LEVIR 0.707 / WHU 0.725 / SZTAKI 0.486 for learned vs irmad 0.264 / 0.183 / 0.307"),
    Rule("multispectral with near-infrared at 20 m or coarser (Landsat)",
         lambda f: f.nir and f.pixel_m is not None and f.pixel_m >= 20, "irmad",
         "Landsat Taizhou: irmad 0.885, cva 0.721, learned 0.648"),
    Rule("multispectral with near-infrared at 5-20 m (Sentinel-2 10 m bands)",
         lambda f: f.nir and f.pixel_m is not None and 5 <= f.pixel_m < 20, "cva",
         "OSCD aguasclaras + rennes: cva 0.419, irmad 0.363, learned 0.215"),
    Rule("red, green, blue and near-infrared finer than 5 m or without georeference (NAIP, aerial CIR)",
         lambda f: f.rgb and f.nir, "learned",
         "no labelled change pairs of this kind: the nearest measured domains are the aerial RGB ones (learned wins)"),
)
FALLBACK = Rule("bands without known roles", lambda f: True, "irmad",
                "irmad needs no band roles (training-free, any sensor); the learned model and water need roles")


def choose_rule(roles: dict[str, int] | None, pixel_m: float | None, focus: str = "any") -> tuple[Rule, str]:
    """(the rule that applies, reason) for an input with these band roles and pixel size, and a question's focus."""
    facts = Facts(dict(roles or {}), pixel_m, focus)
    rule = next((r for r in RULES if r.applies(facts)), FALLBACK)
    size = f"{pixel_m:.2g} m pixels" if pixel_m else "no georeference"
    bands = ", ".join(sorted(facts.roles, key=lambda r: facts.roles[r])) or "no band roles"
    label = rule.method + (f" ({rule.options['model']})" if "model" in rule.options else "")
    asked = f", question about {rule.question}" if rule.question else ""
    return rule, f"{label}: input looks like {rule.domain} ({bands}; {size}{asked}); held-out F1 {rule.evidence}"


def choose(roles: dict[str, int] | None, pixel_m: float | None, focus: str = "any") -> tuple[str, str]:
    """(method name, reason) for an input with these band roles and pixel size, and a question's focus."""
    rule, reason = choose_rule(roles, pixel_m, focus)
    return rule.method, reason


@register_masker
class AutoMasker:
    """Delegates to the masker `choose` picks; fit() params carry `chosen` and `reason`.

    `scene` is {"pixel_m": float | None, "focus": "any" | "buildings"} from the pipeline; `weights` / `device`
    go to the learned model."""

    name = "auto"

    def __init__(self, roles: dict[str, int] | None = None, scene: dict[str, Any] | None = None, **learned_opts: Any):
        self.roles = dict(roles or {})
        scene = scene or {}
        rule, self.reason = choose_rule(self.roles, scene.get("pixel_m"), scene.get("focus", "any"))
        self.chosen = rule.method
        params = inspect.signature(masker_class(self.chosen)).parameters
        rule_opts = {k: v for k, v in rule.options.items() if k != "model"}
        if learned_opts.get("weights"):  # the user's model replaces the rule's (and its change-type heads)
            rule_opts.pop("change_type", None)
        elif "model" in rule.options and "weights" in params:
            from geodelta.perception.learned.siamese import shipped_model

            rule_opts["weights"] = str(shipped_model(rule.options["model"], learned_opts.get("precision")))
        opts = rule_opts | {k: v for k, v in learned_opts.items() if k in params and v is not None}
        if "roles" in params:
            opts["roles"] = self.roles
        self.inner = get_masker(self.chosen, **opts)
        pass_engine_hints(self, self.inner)  # the local engine's pool runs the inner masker

    def fit(self, a: np.ndarray, b: np.ndarray) -> dict:
        params = self.inner.fit(a, b)
        return {**params, "method": self.name, "chosen": self.chosen, "reason": self.reason}

    def score(self, a: np.ndarray, b: np.ndarray, valid: np.ndarray, params: dict) -> np.ndarray:
        return self.inner.score(a, b, valid, params)

    def warm(self) -> None:
        """Load what the chosen masker loads once per process (engines.started runs it on Dask workers)."""
        warm = getattr(self.inner, "warm", None)
        if warm is not None:
            warm()
