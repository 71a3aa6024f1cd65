"""Grounding what a model writes: a model caption is kept only when every number in it comes from the
quadruples (`caption_from_quadruples`); spectral vs model region classes are reconciled with both reported
(`reconcile_classes`). No LangChain here (perception never imports it): a "model" is anything with
`complete(text)` or a chat model's `invoke(text)`; with none, the template caption is the caption.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from geodelta.contracts import VOCABULARY, ChangeQuery, Quadruple
from geodelta.errors import ModelError
from geodelta.perception.describe.caption import caption, format_area
from geodelta.prompts import load_prompt

# --- grounding: captions -----------------------------------------------------------------------

_NUM = re.compile(r"\d[\d,]*(?:\.\d+)?")  # a number as prose writes it: 1,234.5
_PROSE = re.compile(r"[A-Za-z0-9\s.,;:'()²%/\-]")
# Words that ground a caption on a class (LEVIR-CC and CCExpert wordings included).
_CLASS_WORDS = {
    "water": ("water", "river", "lake", "pond", "reservoir", "sea", "flood"),
    "tree": ("tree", "forest", "wood", "orchard"),
    "low_vegetation": ("grass", "vegetation", "shrub", "meadow", "park"),
    "cropland": ("farm", "crop", "field", "agricultur", "arable"),
    "bare_ground": ("bare", "soil", "sand", "construction", "cleared"),
    "built_up": ("built", "building", "house", "road", "urban", "street", "paved", "construct"),
    "other": ("other", "change"),
}


def numbers_in(text: str) -> list[str]:
    """The numbers written in `text`, thousands separators removed ('12,345 px' -> '12345')."""
    return [n.replace(",", "") for n in _NUM.findall(text)]  # the one number reader (answers use it too)


def _fact_lines(quads: Sequence[Quadruple], georeferenced: bool) -> list[str]:
    out = []
    for q in quads:
        area = format_area(q.total_area_m2 if georeferenced else None, q.total_area_px)
        out.append(f"- where: {q.where.sector}; what: {q.what.from_} -> {q.what.to}; how: {q.how}; "
                   f"how many regions: {q.how_many}; total area: {area}")
    return out


def caption_problem(text: str, quads: Sequence[Quadruple], allowed_text: str) -> str | None:
    """Why a model caption cannot be used (None when it can): a number not in `allowed_text`, not prose,
    or no word that names a changed class or a sector of the quadruples."""
    if not text.strip() or len(text) > 800:
        return "empty or longer than 800 characters"
    if sum(bool(_PROSE.match(c)) for c in text) < 0.95 * len(text) or len(re.findall(r"[A-Za-z]{2,}", text)) < 3:
        return "not plain prose"
    extra = sorted(set(numbers_in(text)) - set(numbers_in(allowed_text)))
    if extra:
        return f"numbers not in the quadruples: {', '.join(extra)}"
    low = text.lower()
    words = {w for q in quads for c in (q.what.from_, q.what.to) for w in _CLASS_WORDS.get(c, ())}
    words |= {q.where.sector for q in quads} | {"north", "south", "east", "west", "centre", "center", "top", "bottom", "left", "right", "middle"}
    if not any(w in low for w in words):
        return "it names no changed class and no place of the quadruples"
    return None


def _ask(model: Any, text: str) -> str:
    """Reply text from a `LocalVLM`-like `complete(text)` or a chat model's `invoke(text)`."""
    if hasattr(model, "complete"):
        return str(model.complete(text))
    reply = model.invoke(text)
    content = getattr(reply, "content", reply)
    if isinstance(content, list):
        content = "".join(c if isinstance(c, str) else str(c.get("text", "")) for c in content if isinstance(c, (str, dict)))
    return str(content)


def caption_from_quadruples(model: Any, quadruples: Sequence[Quadruple | dict[str, Any]], *, georeferenced: bool = True,
                            query: ChangeQuery | None = None, notes: list[str] | None = None) -> str:
    """A model-written change caption (CCExpert style) grounded on the S2M quadruples, else the template.

    The model sees the quadruples and the template caption; its caption is kept only when every
    number in it appears in them and it names a changed class or place (`caption_problem`);
    otherwise the template caption is returned and the reason goes to `notes`.
    """
    quads = [q if isinstance(q, Quadruple) else Quadruple.model_validate(q) for q in quadruples]
    template = caption(quads, georeferenced=georeferenced, query=query)
    if not quads:
        return template
    facts = "\n".join(_fact_lines(quads, georeferenced))
    try:
        text = _ask(model, load_prompt("caption", quadruples=facts, template=template))
    except ModelError as exc:
        if notes is not None:
            notes.append(f"the model caption failed ({exc}); the template caption is used")
        return template
    text = re.sub(r"^```\w*|```$", "", text.strip()).strip().strip('"').strip()
    problem = caption_problem(text, quads, facts + "\n" + template)
    if problem is not None:
        if notes is not None:
            notes.append(f"the model caption {text[:120]!r} was not used ({problem}); the template caption is used")
        return template
    return text


# --- grounding: region classes -----------------------------------------------------------------


def reconcile_classes(spectral: Sequence[tuple[str, str]], model: Sequence[tuple[str, str]],
                      region_ids: Sequence[int] | None = None) -> tuple[list[tuple[str, str]], list[str]]:
    """The classes used per region and one note per disagreement (the answer reports both).

    The spectral classes are used (numbers come from tools; the model is a second opinion,
    ViLaCD-R1 / ReasonCD style) except where the spectral side is 'unknown' and the model named
    a vocabulary class; each note says both readings and which was used.
    """
    if len(spectral) != len(model):
        raise ValueError(f"{len(spectral)} spectral class pairs but {len(model)} model pairs")
    ids = list(region_ids) if region_ids is not None else list(range(len(spectral)))
    used: list[tuple[str, str]] = []
    notes: list[str] = []
    for rid, s, m in zip(ids, spectral, model, strict=True):
        pick = tuple(mv if sv == "unknown" and mv in VOCABULARY else sv for sv, mv in zip(s, m))
        used.append((pick[0], pick[1]))
        if tuple(s) != tuple(m) and "unknown" not in m:
            source = "spectral" if pick == tuple(s) else ("model" if pick == tuple(m) else "spectral where known, model elsewhere")
            notes.append(f"region {rid}: spectral classes {s[0]} -> {s[1]}, the vision model says {m[0]} -> {m[1]}; "
                         f"used the {source} classes {pick[0]} -> {pick[1]}")
    return used, notes

