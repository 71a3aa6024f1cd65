"""STAC Items in: a local STAC Item JSON whose assets point at local GeoTIFF / COG files is one date.

The item is read with the standard library (no pystac at run time): bands are picked by their
`eo:bands` common names (STAC EO extension; STAC 1.1 `bands` with `eo:common_name` too), the date
comes from the item's `datetime` (or `start_datetime`), and asset hrefs are resolved relative to the
item file. Only local files are read: GeoDelta runs offline, so a remote href is an actionable error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from geodelta.errors import InputError
from geodelta.perception.io.bands import ROLES, S2_BANDS, date_from_name

__all__ = ["COMMON_NAME_ROLES", "StacBand", "StacItem", "is_stac_path", "open_stac_item", "read_item"]

# STAC EO extension common names -> GeoDelta band roles (https://github.com/stac-extensions/eo#common-band-names).
# nir08 (Sentinel-2 B8A, 865 nm) stands in for nir only when an item has no band named nir.
COMMON_NAME_ROLES: dict[str, str] = {
    "blue": "blue", "green": "green", "red": "red", "nir": "nir", "nir08": "nir",
    "swir16": "swir1", "swir22": "swir2",
}
_SKIP_ROLES = {"thumbnail", "overview", "metadata"}  # asset roles that never hold analysis pixels
_RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".vrt", ".img")


@dataclass(frozen=True)
class StacBand:
    """One picked band: the local file, its 1-based band index there, the band name and GeoDelta role."""

    file: Path
    index: int
    name: str
    role: str


@dataclass(frozen=True)
class StacItem:
    """What a STAC Item says about one date, resolved to local files (no pixels read)."""

    path: Path
    id: str
    date: str | None  # ISO date from datetime / start_datetime
    bands: list[StacBand]  # in ROLES order

    @property
    def files(self) -> list[Path]:
        """The distinct asset files the picked bands live in, in band order."""
        return list(dict.fromkeys(b.file for b in self.bands))


def is_stac_path(path: Path) -> bool:
    """A `.json` file is taken for a STAC Item (rasters never end in .json)."""
    return path.suffix.lower() == ".json" and path.is_file()


def _asset_bands(asset: dict) -> list[dict]:
    """The band objects of an asset: `eo:bands` (EO extension 1.x) or STAC 1.1 `bands`."""
    bands = asset.get("eo:bands")
    if bands is None:
        bands = [{"name": b.get("name"), "common_name": b.get("eo:common_name")} for b in asset.get("bands") or []]
    return [b for b in bands if isinstance(b, dict)]


def _local_file(href: str, item_path: Path, key: str) -> Path:
    parsed = urlparse(href)
    if parsed.scheme not in ("", "file") and len(parsed.scheme) > 1:  # one letter: a Windows drive, not a scheme
        raise InputError(f"asset {key!r} of STAC item {item_path} is remote ({href}): GeoDelta reads local files "
                         "only; download the asset and point its href at the local file")
    raw = Path(unquote(parsed.path) if parsed.scheme == "file" else href).expanduser()
    path = raw if raw.is_absolute() else (item_path.parent / raw)
    if not path.is_file():
        raise InputError(f"asset {key!r} of STAC item {item_path} points at {path}, which does not exist: "
                         "fix the href (relative hrefs are read from the item's folder)")
    return path.resolve()


def _date(props: dict) -> str | None:
    for key in ("datetime", "start_datetime"):
        value = props.get(key)
        if isinstance(value, str) and (iso := date_from_name(value[:10])):
            return iso
    return None


def _asset_rank(asset: dict) -> int:
    roles = set(asset.get("roles") or [])
    return 0 if "data" in roles else (2 if "visual" in roles else 1)


def read_item(path: str | Path) -> StacItem:
    """Parse a local STAC Item and pick one band per role by `eo:bands` common name.

    Assets with the `data` role win over unlabelled ones, which win over `visual` ones (a true-colour
    preview must not replace the analytic bands); thumbnails and overviews are skipped. Raises
    InputError for invalid JSON, a non-Item, remote or missing assets, or no usable band."""
    p = Path(path).expanduser().resolve()
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"cannot read {p} as a STAC Item JSON ({e}): pass a valid STAC Item or a raster file") from e
    if not isinstance(doc, dict) or doc.get("type") != "Feature" or not isinstance(doc.get("assets"), dict):
        kind = doc.get("type") if isinstance(doc, dict) else type(doc).__name__
        raise InputError(f"{p} is JSON but not a STAC Item (type {kind!r}; an Item is a Feature with assets): "
                         "pass one STAC Item per date, not a Collection or Catalog")
    picked: dict[str, StacBand] = {}
    assets = sorted(doc["assets"].items(), key=lambda kv: _asset_rank(kv[1]) if isinstance(kv[1], dict) else 9)
    for key, asset in assets:
        if not isinstance(asset, dict) or _SKIP_ROLES & set(asset.get("roles") or []) or not asset.get("href"):
            continue
        bands = _asset_bands(asset)
        wanted = [(i, b) for i, b in enumerate(bands, 1) if str(b.get("common_name") or "").lower() in COMMON_NAME_ROLES]
        if not wanted:
            continue
        href = str(asset["href"])
        if not href.lower().split("?")[0].endswith(_RASTER_SUFFIXES) and "tiff" not in str(asset.get("type", "")):
            continue
        file = _local_file(href, p, key)
        for index, band in wanted:
            common = str(band["common_name"]).lower()
            role = COMMON_NAME_ROLES[common]
            if role in picked and not (common == "nir" and picked[role].name.lower() in ("nir08", "b8a")):
                continue  # first asset wins; a true `nir` replaces a `nir08` stand-in
            name = str(band.get("name") or common)
            picked[role] = StacBand(file=file, index=index, name=name, role=role)
    if not picked:
        raise InputError(f"STAC item {p} has no local raster asset with eo:bands common names "
                         f"({', '.join(sorted(set(COMMON_NAME_ROLES)))}): add eo:bands to its assets")
    ordered = [picked[r] for r in ROLES if r in picked]
    return StacItem(path=p, id=str(doc.get("id") or p.stem), date=_date(doc.get("properties") or {}), bands=ordered)


def open_stac_item(path: str | Path):
    """One date from a STAC Item: an `ImageSource` (kind 'stac') over the picked bands' files.

    The grid is the finest asset's grid (e.g. the 10 m bands of Sentinel-2; coarser bands are warped
    onto it on read). Band names are Sentinel-2 names when every picked band has one, else the roles."""
    from geodelta.perception.io.checksum import file_sha256
    from geodelta.perception.io.rasters import grid_of, has_valid_pixel, open_raster, probe_blocks
    from geodelta.perception.io.reader import ImageSource

    item = read_item(path)
    info = {}
    for f in item.files:
        with open_raster(f) as src:
            probe_blocks(src, f)
            info[f] = (grid_of(src), src.nodata, src.dtypes[0], src.count)
            if not has_valid_pixel(src):
                raise InputError(f"{f} (asset of STAC item {item.path}) holds no valid pixel: pass an item with data")
    for b in item.bands:
        if b.index > info[b.file][3]:
            raise InputError(f"STAC item {item.path} lists band {b.index} ({b.name}) of {b.file}, which has only "
                             f"{info[b.file][3]} band(s): fix the asset's eo:bands")
    # finest pixel first; ties keep band order (blue's file for Sentinel-2)
    grid_file = min(item.files, key=lambda f: abs(info[f][0].transform.a) if info[f][0].crs else 0.0)
    grid, nodata, dtype, _ = info[grid_file]
    s2 = all(b.name.upper() in S2_BANDS for b in item.bands)
    names = [b.name.upper() if s2 else b.role for b in item.bands]
    paths = [item.path, *item.files]
    return ImageSource(
        paths=paths, kind="stac", grid=grid, band_names=names,
        band_roles={b.role: i for i, b in enumerate(item.bands)}, nodata=nodata, date=item.date, dtype=dtype,
        sha256=[file_sha256(q) for q in paths], band_files=[(b.file, b.index) for b in item.bands],
    )
