"""Where and how big, from question text: scene sectors, lon/lat boxes and minimum region sizes.

Used by `geodelta.agent.intent`. Each reader returns what it found plus the text with the matched
span blanked out, so numbers of a box are never read as an area and vice versa.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any

from geodelta.agent import intent_lexicon as L

# m² per unit. acre: international acre = 4046.8564224 m² (NIST SP 811).
_UNIT_M2 = {"km2": 1e6, "ha": 1e4, "m2": 1.0, "acre": 4046.8564224}
_NUM = r"-?\d+(?:\.\d+)?"


@dataclass(frozen=True)
class AreaReading:
    """The area part of a question: a ChangeQuery area dict, a caveat, or why it cannot exist."""

    area: dict[str, Any] | None = None
    note: str | None = None
    impossible: str | None = None

    def describe(self) -> str:
        a = self.area or {"kind": "scene"}
        if a["kind"] == "sector":
            return f"in the {a['sector']} of the scene"
        if a["kind"] == "bbox":
            return f"inside the lon/lat box {list(a['bbox'])}"
        return "anywhere in the scene"


def _blank(text: str, span: tuple[int, int]) -> str:
    return text[: span[0]] + " " * (span[1] - span[0]) + text[span[1]:]


def _bbox(text: str) -> tuple[tuple[float, ...] | None, str]:
    """A lon/lat box: labelled (west .. south .. east .. north ..), lon/lat ranges, 'bbox a,b,c,d' or [a,b,c,d]."""
    sides = ("west", "south", "east", "north")
    labelled = {k: m for k in sides if (m := re.search(rf"\b{k}\s*[:=]?\s*({_NUM})", text))}
    if len(labelled) == len(sides):
        for m in labelled.values():
            text = _blank(text, m.span())
        return tuple(float(labelled[k].group(1)) for k in sides), text
    rng = r"\s*(?:from|between|of)?\s*(" + _NUM + r")\s*°?\s*(?:and|to|-|–|,)\s*(" + _NUM + r")"
    lon = re.search(r"\blon(?:gitude)?s?" + rng, text)
    lat = re.search(r"\blat(?:itude)?s?" + rng, text)
    if lon and lat:
        w, e = sorted(float(v) for v in lon.groups())
        s, n = sorted(float(v) for v in lat.groups())
        return (w, s, e, n), _blank(_blank(text, lon.span()), lat.span())
    sep = r"[\s,;]+"
    m = re.search(rf"\b(?:bbox|bounding\s+box|box|rectangle|extent)\b\D{{0,12}}?({_NUM}){sep}({_NUM}){sep}({_NUM}){sep}({_NUM})", text)
    m = m or re.search(rf"[\[(]\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*[\])]", text)
    if m:
        return tuple(float(v) for v in m.groups()), _blank(text, m.span())
    return None, text


def _sector(words: list[str]) -> tuple[str | None, str | None]:
    """First sector named in the words (north up); a 16-point compass name maps to its diagonal, with a note."""
    found: list[str] = []
    note = None
    for i, w in enumerate(words):
        prev = words[i - 1] if i else None
        nxt = words[i + 1] if i + 1 < len(words) else None
        nxt2 = words[i + 2] if i + 2 < len(words) else None
        if w in L.COMPOUND_SECTORS:
            found.append(L.COMPOUND_SECTORS[w])
        elif w in L.VERTICAL and prev not in L.VERTICAL and prev not in L.HORIZONTAL:
            v = L.VERTICAL[w]
            if nxt in L.VERTICAL and nxt2 in L.HORIZONTAL:  # north-north-west
                found.append(f"{L.VERTICAL[nxt]}-{L.HORIZONTAL[nxt2]}")
                note = f"'{w}-{nxt}-{nxt2}' is not one of the nine sectors; using {found[-1]}"
            elif nxt in L.HORIZONTAL:
                found.append(f"{v}-{L.HORIZONTAL[nxt]}")
            elif nxt in L.COMPOUND_SECTORS:  # north-northwest
                found.append(L.COMPOUND_SECTORS[nxt])
                note = f"'{w}-{nxt}' is not one of the nine sectors; using {found[-1]}"
            elif w not in L.WEAK_SECTOR_WORDS or nxt is None or nxt in L.PART_WORDS:
                found.append(v)
        elif w in L.HORIZONTAL and prev not in L.VERTICAL:
            if w not in L.WEAK_SECTOR_WORDS or nxt in L.PART_WORDS or prev in ("the", "far", "to", "on") or (
                    nxt is None and prev is None):  # "no grass left" is not the west
                found.append(L.HORIZONTAL[w])
        elif w in L.CENTRE and prev not in L.CENTRE_OF_A_PLACE and nxt not in L.CENTRE_OF_A_THING:  # "distribution centre"
            found.append("centre")
    if len(set(found)) > 1:
        note = f"several areas named ({', '.join(dict.fromkeys(found))}); using the first, {found[0]}"
    return (found[0] if found else None), note


_SECTOR_WORDS = sorted(w for w in set(L.COMPOUND_SECTORS) | set(L.VERTICAL) | set(L.HORIZONTAL) if len(w) >= 7)
# Short compass typos ("sout-west", "nort"): one letter dropped, doubled or swapped in north / south only
# (east / west are too close to ordinary words: "vast", "best").
_SHORT_TYPOS = {t: w for w in ("north", "south") for t in
                {w[:i] + w[i + 1:] for i in range(1, 5)} | {w[:i] + w[i + 1] + w[i] + w[i + 2:] for i in range(1, 4)}}


def read_area(text: str) -> tuple[AreaReading, str]:
    """Area of interest from lower-cased text; `impossible` is set for areas that cannot be in the scene."""
    words = re.findall(r"[a-z]+", text)
    if L.OFF_WORLD & set(words):
        place = sorted(L.OFF_WORLD & set(words))[0].capitalize()
        return AreaReading(impossible=f"{place} is not in the images I compare. Which part of the scene do you mean: "
                           "one of its nine sectors (north-west ... south-east), or a lon/lat box (west, south, east, north)?"), text
    box, rest = _bbox(text)
    if box is not None:
        w, s, e, n = box
        if not (-180 <= w < e <= 180 and -90 <= s < n <= 90):
            return AreaReading(impossible=f"The box {list(box)} is not a lon/lat box (west < east within ±180, south < north "
                               "within ±90). Give it as west, south, east, north in degrees."), rest
        return AreaReading({"kind": "bbox", "bbox": [w, s, e, n]}), rest
    words = [difflib.get_close_matches(w, _SECTOR_WORDS, 1, 0.84)[0] if len(w) >= 7 and w not in _SECTOR_WORDS
             and difflib.get_close_matches(w, _SECTOR_WORDS, 1, 0.84) else _SHORT_TYPOS.get(w, w) for w in re.findall(r"[a-z]+", rest)]
    sector, note = _sector(words)
    if sector is None:
        return AreaReading(), rest
    return AreaReading({"kind": "sector", "sector": sector}, note), rest


_SIZE = re.compile(
    r"(?P<ign>\b(?:ignor\w*|exclud\w*|skip\w*|drop\w*|without|leave out|leaving out)\b[a-z\s]{0,25}?)?"
    r"(?P<cmp>\b(?:bigger|larger|greater|more|wider|smaller|less|tinier)\s+than|\bover|\babove|\bunder|\bbelow|"
    r"\bexceeding|\bat\s+least|\bat\s+most|\bup\s+to|\bmin(?:imum)?(?:\s+of)?|\bmax(?:imum)?(?:\s+of)?|>=|<=|>|<)?\s*"
    r"(?P<num>\d+(?:[.,]\d+)*|\bhalf\s+an?|\ban?|\bone)\s*"
    r"(?P<unit>km2|sq\.?\s?km|square\s+kilomet(?:er|re)s?|hectares?|ha|m2|sq\.?\s?m|sqm|square\s+met(?:er|re)s?|acres?)\b"
)


def _number(s: str) -> float:
    s = s.strip()
    if s.startswith("half"):
        return 0.5
    if s in ("a", "an", "one"):
        return 1.0
    if re.fullmatch(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?", s):  # 10,000 thousands separators
        return float(s.replace(",", ""))
    return float(s.replace(",", "."))


def _unit(u: str) -> str:
    u = u.replace(" ", "").replace(".", "")
    if u.startswith(("km", "sqkm", "squarekilo")):
        return "km2"
    if u.startswith(("ha", "hectare")):
        return "ha"
    if u.startswith("acre"):
        return "acre"
    return "m2"


def read_min_area(text: str) -> tuple[tuple[float, str] | None, str]:
    """Minimum region size in m² ("bigger than 2 ha", "at least 500 m2", "ignore anything under 3 acres")."""
    text = text.replace("km²", "km2").replace("m²", "m2")
    for m in _SIZE.finditer(text):
        cmp = (m.group("cmp") or "").split()
        below = bool(cmp) and cmp[0] in ("smaller", "less", "tinier", "under", "below", "at", "up", "max", "maximum", "<", "<=")
        below = below and cmp[:2] != ["at", "least"]
        value = _number(m.group("num")) * _UNIT_M2[_unit(m.group("unit"))]
        rest = _blank(text, m.span())
        if below and not m.group("ign"):
            return None, rest  # an upper size limit: not a ChangeQuery field; the text is dropped
        return (value, f"{m.group(0).strip()} -> {value:g} m²"), rest
    return None, text
