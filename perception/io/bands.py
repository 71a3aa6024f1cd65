"""Band metadata heuristics: canonical roles, Sentinel-2 names, acquisition dates, pair band matching.

Pure functions over names and tags (no file access) so every rule is testable on its own.
"""

from __future__ import annotations

import re
from datetime import date

ROLES = ("blue", "green", "red", "nir", "swir1", "swir2")

# Sentinel-2 MSI bands in ESA order (13-band L1C stack).
S2_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
# B02 blue 490 nm, B03 green 560, B04 red 665, B08 nir 842, B11 swir 1610, B12 swir 2190 (ESA S2 MSI user guide).
S2_ROLES = {"B02": "blue", "B03": "green", "B04": "red", "B08": "nir", "B11": "swir1", "B12": "swir2"}
S2_FILE = re.compile(r"_(B(?:0[1-9]|1[0-2]|8A))\.(?:tif|tiff|jp2)$", re.IGNORECASE)

# Words in a band description that name a role. "red edge" and "infrared" are not red.
_ROLE_PATTERNS = (
    ("nir", re.compile(r"\bnir\b|\bnear[-_ ]?infra[-_ ]?red\b", re.I)),
    ("swir1", re.compile(r"\bswir[-_ ]?1\b", re.I)),
    ("swir2", re.compile(r"\bswir[-_ ]?2\b", re.I)),
    ("red", re.compile(r"\bred\b(?![-_ ]?edge)", re.I)),
    ("green", re.compile(r"\bgreen\b", re.I)),
    ("blue", re.compile(r"\bblue\b", re.I)),
)
_SWIR_ANY = re.compile(r"\bswir\b", re.I)


def generic_names(n: int) -> list[str]:
    """'b1'..'bn': the names of bands that carry no description."""
    return [f"b{i}" for i in range(1, n + 1)]


def is_generic(names: list[str]) -> bool:
    return names == generic_names(len(names))


def role_of_description(text: str) -> str | None:
    """The canonical role a band description names ('B4 NIR 0.77-0.90um' -> 'nir'), else None."""
    for role, pattern in _ROLE_PATTERNS:
        if pattern.search(text):
            return role
    if _SWIR_ANY.search(text):
        return "swir1"
    return None


def infer_roles(names: list[str], colorinterp: list[str], dtype: str, described: bool, kind: str) -> dict[str, int]:
    """Role -> 0-based band index, from (in order) S2 names, band descriptions, colour interpretation,
    then the 8-bit conventions: 3 bands -> R,G,B; 4-band TIFF without descriptions -> R,G,B,NIR (the NAIP
    convention; a documented guess, overridden by any description). A role claimed twice is dropped."""
    roles: dict[str, int] = {}
    if names and all(n in S2_BANDS for n in names):
        return {S2_ROLES[n]: i for i, n in enumerate(names) if n in S2_ROLES}
    if described:
        found = [role_of_description(n) for n in names]
        for role in ROLES:
            hits = [i for i, r in enumerate(found) if r == role]
            if len(hits) == 1:
                roles[role] = hits[0]
        if roles:
            return roles
    ci = {c: i for i, c in enumerate(colorinterp)}
    if all(c in ci for c in ("red", "green", "blue")):
        roles = {"blue": ci["blue"], "green": ci["green"], "red": ci["red"]}
        if dtype == "uint8" and not described and colorinterp[:3] == ["red", "green", "blue"] and len(names) == 4 \
                and kind in ("geotiff", "envi"):
            roles["nir"] = 3  # GDAL tags a 4-band 8-bit TIFF as RGB + undefined: the NAIP R,G,B,NIR guess below
        return roles
    if dtype == "uint8" and not described:
        if len(names) == 3:
            return {"red": 0, "green": 1, "blue": 2}
        if len(names) == 4 and kind in ("geotiff", "envi"):
            return {"red": 0, "green": 1, "blue": 2, "nir": 3}
    return roles


_DASHED = re.compile(r"(?<!\d)((?:19|20)\d{2})-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])(?!\d)")
_COMPACT = re.compile(r"(?<!\d)((?:19|20)\d{2})(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])(?!\d)")
_TAG_DATETIME = re.compile(r"^\s*((?:19|20)\d{2})[:\-/](\d{2})[:\-/](\d{2})")


def _iso(y: str, m: str, d: str) -> str | None:
    try:
        return date(int(y), int(m), int(d)).isoformat()
    except ValueError:
        return None


def date_from_name(name: str) -> str | None:
    """ISO date from a file name holding YYYY-MM-DD or YYYYMMDD (first match), else None."""
    for pattern in (_DASHED, _COMPACT):
        for m in pattern.finditer(name):
            iso = _iso(*m.groups())
            if iso:
                return iso
    return None


def date_from_tags(tags: dict[str, str], name: str) -> str | None:
    """Acquisition date: ACQUISITION_DATE-like tags, then the file name, then TIFFTAG_DATETIME.

    TIFFTAG_DATETIME comes last because it is usually when the file was written, not acquired."""
    for key in ("ACQUISITION_DATE", "DATE_ACQUIRED", "ACQUISITIONDATE", "acquisition time", "SENSING_TIME"):
        for k, v in tags.items():
            if k.lower() == key.lower() and v:
                iso = date_from_name(str(v)) or (_iso(*m.groups()) if (m := _TAG_DATETIME.match(str(v))) else None)
                if iso:
                    return iso
    if iso := date_from_name(name):
        return iso
    if (dt := tags.get("TIFFTAG_DATETIME")) and (m := _TAG_DATETIME.match(dt)):
        return _iso(*m.groups())
    return None


def date_from_dates_txt(text: str, folder_name: str) -> str | None:
    """OSCD `dates.txt` ('date_1: YYYYMMDD' / 'date_2: YYYYMMDD'): the date of imgs_1 or imgs_2."""
    m = re.search(r"(\d)$", folder_name.removesuffix("_rect"))
    if not m:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == f"date_{m.group(1)}":
            return date_from_name(value.strip())
    return None


def match_bands(
    before_names: list[str],
    before_roles: dict[str, int],
    after_names: list[str],
    after_roles: dict[str, int],
) -> tuple[list[str], list[int], list[int], dict[str, int]] | None:
    """Pair the bands of two images: (names, before indices, after indices, roles on the result) or None.

    Rules in order: identical name lists -> by position; both Sentinel-2 -> common S2 bands in ESA order;
    same count without a contradicting role -> by position; else common roles in ROLES order."""
    n_b, n_a = len(before_names), len(after_names)
    if before_names == after_names:
        idx = list(range(n_b))
        return list(before_names), idx, idx, dict(before_roles)
    if all(n in S2_BANDS for n in before_names) and all(n in S2_BANDS for n in after_names):
        common = [n for n in S2_BANDS if n in before_names and n in after_names]
        if common:
            roles = {S2_ROLES[n]: i for i, n in enumerate(common) if n in S2_ROLES}
            return common, [before_names.index(n) for n in common], [after_names.index(n) for n in common], roles
    shared = [r for r in ROLES if r in before_roles and r in after_roles]
    conflict = any(before_roles[r] != after_roles[r] for r in shared)
    if n_b == n_a and not conflict:
        idx = list(range(n_b))
        roles = dict(before_roles)
        taken = set(roles.values())
        roles.update({r: i for r, i in after_roles.items() if r not in roles and i not in taken})
        names = before_names if not is_generic(before_names) or is_generic(after_names) else after_names
        return list(names), idx, idx, roles
    if shared:
        return (
            list(shared),
            [before_roles[r] for r in shared],
            [after_roles[r] for r in shared],
            {r: i for i, r in enumerate(shared)},
        )
    return None


# ---------------------------------------------------------------- declared band roles (--bands)

# Words a user may write for a role in `--bands` (lower case); "-" / "skip" marks a band with no role.
ROLE_ALIASES = {"r": "red", "g": "green", "b": "blue", "n": "nir", "nearinfrared": "nir", "swir": "swir1",
                "swir16": "swir1", "swir22": "swir2", "-": None, "skip": None, "none": None, "other": None}


def parse_band_roles(spec: str | list[str] | tuple[str, ...] | None) -> list[str | None] | None:
    """`'swir1,nir,green'` (or a list) -> one role per band, in file order; None where a band has none.

    Raises ValueError with a message naming the known roles (the callers turn it into InputError)."""
    if spec is None:
        return None
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    roles: list[str | None] = []
    for raw in items:
        word = str(raw).strip().lower().replace(" ", "").replace("_", "")
        role = ROLE_ALIASES.get(word, word) if word in ROLE_ALIASES else word
        if role is not None and role not in ROLES:
            raise ValueError(f"unknown band role {raw!r} in bands {spec!r}: use one of {', '.join(ROLES)} (or '-' for "
                             "a band without a role), one per band in file order, e.g. --bands swir1,nir,green")
        roles.append(role)
    named = [r for r in roles if r]
    if not named:
        raise ValueError(f"bands {spec!r} names no role: give one per band, e.g. --bands red,green,blue,nir")
    if len(set(named)) != len(named):
        raise ValueError(f"bands {spec!r} names a role twice: each role belongs to one band")
    return roles


def roles_from_declaration(declared: list[str | None]) -> dict[str, int]:
    """Role -> band index from a parsed declaration."""
    return {r: i for i, r in enumerate(declared) if r}
