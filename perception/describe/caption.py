"""Deterministic template captions from S2M quadruples (no model, no invented classes).

One sentence per quadruple, largest first, at most `MAX_SENTENCES`; the rest are summed into
one closing sentence. Places: compass sectors on georeferenced scenes (north is up); image
positions ("the top right of the image") on unreferenced ones, where north is unknown, which is
also how LEVIR-CC's human captions name places.
"""

from __future__ import annotations

from geodelta.contracts import BBoxArea, ChangeQuery, Quadruple, SectorArea

MAX_SENTENCES = 4
# Noun-phrase adjectives and "land" names per class, worded after LEVIR-CC's vocabulary where it has one.
_ADJ = {
    "water": "water",
    "tree": "tree-covered",
    "low_vegetation": "grass and low vegetation",
    "cropland": "farmland",
    "bare_ground": "bare-ground",
    "built_up": "built-up",
    "other": "other",
}
# The one wording of each class in sentences (LEVIR-CC caption words: 'trees', 'built-up'); answers use it too.
LAND_PHRASE = {
    "water": "water",
    "tree": "trees",
    "low_vegetation": "grass and low vegetation",
    "cropland": "farmland",
    "bare_ground": "bare ground",
    "built_up": "built-up land",
    "other": "other land",
}
# Sector -> image position for unreferenced scenes (row-major, top-left first).
_IMAGE_POS = {
    "north-west": "top left",
    "north": "top",
    "north-east": "top right",
    "west": "left",
    "centre": "middle",
    "east": "right",
    "south-west": "bottom left",
    "south": "bottom",
    "south-east": "bottom right",
}


def format_area(m2: float | None = None, px: int | None = None) -> str:
    """'850 m²' below 1 ha, '1.2 ha' below 100 ha, '3.45 km²' above; '12,345 px' without m²."""
    if m2 is None:
        return f"{int(px or 0):,} px"
    if m2 < 10_000:
        return f"{m2:,.0f} m²"
    if m2 < 1_000_000:
        return f"{m2 / 10_000:,.1f} ha"
    return f"{m2 / 1_000_000:,.2f} km²"


def _place(sector: str, georeferenced: bool) -> str:
    if georeferenced:
        return f"the {sector} of the scene"
    return f"the {_IMAGE_POS[sector]} of the image"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _sentence(q: Quadruple, georeferenced: bool) -> str:
    n, fc, tc = q.how_many, q.what.from_, q.what.to
    size = format_area(q.total_area_m2, q.total_area_px)
    size = f", {size} in total," if n > 1 else f" of {size}"
    where = _place(q.where.sector, georeferenced)
    verb = "were" if n > 1 else "was"
    if "unknown" in (fc, tc) or q.how == "changed" and fc == tc:
        cls = " (classes unknown)" if "unknown" in (fc, tc) else f" ({_ADJ[fc]}, class unchanged)"
        return f"{_plural(n, 'changed area')}{cls}{size} {verb} found in {where}."
    if q.how in ("appeared", "expanded"):
        verb = "appeared" if q.how == "appeared" else "expanded"
        return f"{_plural(n, f'new {_ADJ[tc]} area')}{size} {verb} on former {LAND_PHRASE[fc]} in {where}."
    if q.how in ("disappeared", "shrank"):
        verb = "disappeared" if q.how == "disappeared" else "shrank"
        return f"{_plural(n, f'{_ADJ[fc]} area')}{size} {verb} in {where}, now {LAND_PHRASE[tc]}."
    return f"{_plural(n, f'{_ADJ[fc]} area')}{size} turned into {LAND_PHRASE[tc]} in {where}."


def _scope(query: ChangeQuery, georeferenced: bool) -> str:
    """'in the north of the scene' / 'inside 119.90-119.95 E, 32.45-32.50 N' / 'in the scene'."""
    area = query.area
    if isinstance(area, SectorArea):
        return f"in {_place(area.sector, georeferenced)}"
    if isinstance(area, BBoxArea):
        w, s, e, n = area.bbox
        return f"inside the box {w:.4f} to {e:.4f} E, {s:.4f} to {n:.4f} N"
    return "in the scene" if georeferenced else "in the image"


def _no_change(query: ChangeQuery | None, georeferenced: bool) -> str:
    if query is None:
        return "No change was found."
    scope = _scope(query, georeferenced)
    fr = " or ".join(LAND_PHRASE[c] for c in query.from_classes)
    to = " or ".join(LAND_PHRASE[c] for c in query.to_classes)
    if query.min_area_m2 > 0:
        scope = f"larger than {format_area(query.min_area_m2)} {scope}"
    if fr and to:
        return f"No {fr} turned into {to} {scope}."
    if to:
        return f"No new {to} appeared {scope}."
    if fr:
        verb = "disappeared" if query.direction in ("disappear", "any") else "changed"
        return f"No {fr} {verb} {scope}."
    return f"No change was found {scope}."


def caption(quadruples: list[Quadruple], *, georeferenced: bool, query: ChangeQuery | None = None) -> str:
    """Deterministic English caption of the quadruples (largest first); 'No change was found.' when empty."""
    if not quadruples:
        return _no_change(query, georeferenced)
    key = lambda q: -(q.total_area_m2 if q.total_area_m2 is not None else q.total_area_px)  # noqa: E731
    quads = sorted(quadruples, key=key)
    head = quads if len(quads) <= MAX_SENTENCES else quads[: MAX_SENTENCES - 1]
    text = [_sentence(q, georeferenced) for q in head]
    rest = quads[len(head):]
    if rest:
        n = sum(q.how_many for q in rest)
        if georeferenced:
            size = format_area(m2=sum(q.total_area_m2 or 0.0 for q in rest))
        else:
            size = format_area(px=sum(q.total_area_px or 0 for q in rest))
        text.append(f"There are also {_plural(n, 'smaller change')} elsewhere, {size} in total.")
    return " ".join(text)
