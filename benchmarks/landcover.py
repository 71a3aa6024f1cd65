"""Land-cover benchmark on real labels: OSCD urban change, CORINE arable -> urban, Taizhou farmland.

(a) OSCD (6 cities, Sentinel-2 L1C): classify date 2 (13 bands resampled onto the date-1 10 m B02
    grid) and report the share of labelled change pixels (cm.tif == 2) that read built_up, against
    the same share for no-change pixels, plus the date-1 classes of the change pixels.
(b) CORINE 250 m 2006 -> 2012: map CLC codes to the vocabulary, label the changed pixels, run
    region_transitions and check the arable -> urban transitions of corine_ch/SOURCE.md.
(c) Taizhou demo (Landsat 7): share of reference-change pixels that go from cropland /
    low_vegetation to built_up / bare_ground.
Run: `python benchmarks/landcover.py [--data DIR]` (or `geodelta bench landcover`).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rich.console import Console
from rich.table import Table
from scipy import ndimage

from geodelta.perception.landcover.rules import CLASSES, CODE, NODATA, class_shares, classify, fit
from geodelta.perception.landcover.transitions import clc_to_vocabulary, region_transitions

OSCD_CITIES = ("aguasclaras", "bercy", "bordeaux", "hongkong", "nantes", "rennes")
# ESA band order of a 13-band Sentinel-2 stack, and the roles our rules use.
S2_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
S2_ROLES = {"blue": 1, "green": 2, "red": 3, "nir": 7, "swir1": 11, "swir2": 12}
LANDSAT_ROLES = {"blue": 0, "green": 1, "red": 2, "nir": 3, "swir1": 4, "swir2": 5}
# CORINE grid codes 12 = 211 non-irrigated arable land, 2 = 112 discontinuous urban fabric.
CLC_ARABLE, CLC_DISCONTINUOUS_URBAN = 12, 2


NAIP_ROLES = {"red": 0, "green": 1, "blue": 2, "nir": 3}
# Ablation of the scene adaptation: "adaptive" = dark-object subtraction + bounded Otsu (the
# default); "literature" = dark-object subtraction + fixed literature thresholds; "raw" = no
# dark-object subtraction, fixed thresholds.
VARIANTS = ("adaptive", "literature", "raw")


def _classify(image: np.ndarray, roles: dict[str, int], variant: str = "adaptive", scale: float | None = None):
    if variant == "adaptive":
        return classify(image, roles, scale=scale)
    params = fit(image, roles, scale=scale)
    if variant in ("literature", "raw"):
        params["thresholds"] = {}
    if variant == "raw":
        params["dark"] = [0.0] * image.shape[0]
    return classify(image, roles, scale=scale, params=params)


def _default_data() -> Path:
    from geodelta.settings import Settings

    return Settings().data


def load_oscd(city_dir: Path, date: int) -> np.ndarray:
    """float32 (13, h, w) of one OSCD date, every band bilinearly resampled onto the date-1 B02 grid
    (OSCD bands of one date share bounds; hongkong date 2 is 2 px smaller over the same bounds)."""
    with rasterio.open(next((city_dir / "imgs_1").glob("*_B02.tif"))) as ref:
        h, w = ref.height, ref.width
    out = []
    for band in S2_BANDS:
        with rasterio.open(next((city_dir / f"imgs_{date}").glob(f"*_{band}.tif"))) as src:
            out.append(src.read(1, out_shape=(h, w), resampling=Resampling.bilinear).astype(np.float32))
    return np.stack(out)


def load_cm(city_dir: Path) -> np.ndarray:
    """OSCD label: 1 = no change, 2 = change (date-1 10 m grid); read from cm.png (> 127 = change,
    identical to cm.tif == 2 per SOURCE.md) to avoid cm.tif's NotGeoreferencedWarning."""
    from PIL import Image

    arr = np.asarray(Image.open(city_dir / "cm.png"))
    first = arr[..., 0] if arr.ndim == 3 else arr
    return np.where(first > 127, 2, 1).astype(np.uint8)


def oscd_city(city_dir: Path, variant: str = "adaptive") -> dict:
    """Measured shares for one city: built_up share of change / no-change pixels at date 2, and the
    date-1 class distribution of the change pixels."""
    cm = load_cm(city_dir)
    c2, _ = _classify(load_oscd(city_dir, 2), S2_ROLES, variant, scale=10000.0)
    c1, _ = _classify(load_oscd(city_dir, 1), S2_ROLES, variant, scale=10000.0)
    change, still = cm == 2, cm == 1
    built = c2 == CODE["built_up"]
    return {
        "city": city_dir.name,
        "n_change": int(change.sum()),
        "built_change": float(built[change].mean()),
        "built_still": float(built[still].mean()),
        "to_change": class_shares(c2, change),
        "from_change": class_shares(c1, change),
    }


def corine_check(corine_dir: Path) -> dict:
    """Change regions between CLC 2006 and 2012 (250 m, same grid) and their transitions."""
    with rasterio.open(corine_dir / "ls250_06.tif") as a, rasterio.open(corine_dir / "ls250_12.tif") as b:
        g06, g12 = a.read(1), b.read(1)
    v06, v12 = clc_to_vocabulary(g06), clc_to_vocabulary(g12)
    valid = (v06 != NODATA) & (v12 != NODATA)
    # regions from the CLC codes themselves (a change inside one of our classes, e.g. 311 -> 313,
    # is still a real CLC change), 8-connected.
    changed = valid & (g06 != g12)
    labels, n = ndimage.label(changed, structure=np.ones((3, 3), int))
    trans = region_transitions(labels, v06, v12)
    expected = changed & (g06 == CLC_ARABLE) & (g12 == CLC_DISCONTINUOUS_URBAN)
    got = np.zeros_like(changed)
    for rid, (f, t, _how, _c) in trans.items():
        if f == "cropland" and t == "built_up":
            got |= labels == rid
    pixel_pairs: dict[tuple[int, int], int] = {}
    for x, y in zip(g06[changed].tolist(), g12[changed].tolist()):
        pixel_pairs[(x, y)] = pixel_pairs.get((x, y), 0) + 1
    return {
        "n_changed_px": int(changed.sum()),
        "n_regions": int(n),
        "transitions": trans,
        "labels": labels,
        "arable_urban_px_expected": int(expected.sum()),
        "cropland_built_px_found": int(got.sum()),
        "exact": bool(np.array_equal(expected, got)),
        "clc_pairs": pixel_pairs,
    }


def taizhou_check(demo_dir: Path, variant: str = "adaptive") -> dict:
    """Share of reference-change pixels whose before class is cropland/low_vegetation and after class
    built_up/bare_ground (the demo's 'farmland built over'), and the same for unchanged pixels."""
    with rasterio.open(demo_dir / "taizhou_before_2000-03-17_landsat7_etm.tif") as s:
        a = s.read().astype(np.float32)
    with rasterio.open(demo_dir / "taizhou_after_2003-02-06_landsat7_etm.tif") as s:
        b = s.read().astype(np.float32)
    with rasterio.open(demo_dir / "taizhou_change_reference.tif") as s:
        ref = s.read(1)
    ca, _ = _classify(a, LANDSAT_ROLES, variant)
    cb, _ = _classify(b, LANDSAT_ROLES, variant)
    farm = np.isin(ca, [CODE["cropland"], CODE["low_vegetation"]])
    built = np.isin(cb, [CODE["built_up"], CODE["bare_ground"]])
    story = farm & built
    return {
        "share_change": float(story[ref == 1].mean()),
        "share_unchanged": float(story[ref == 0].mean()),
        "before_change": class_shares(ca, ref == 1),
        "after_change": class_shares(cb, ref == 1),
        "before_all": class_shares(ca),
        "after_all": class_shares(cb),
    }


def naip_water(naip_dir: Path, variant: str = "adaptive") -> dict[str, float]:
    """Share of pixels classified water per NAIP year (same place; no labels: the spread across
    years shows how much radiometry, not the ponds, drives the answer)."""
    out = {}
    for f in sorted(naip_dir.glob("m_*.tif")):
        with rasterio.open(f) as src:
            img = src.read().astype(np.float32)
        cls, _ = _classify(img, NAIP_ROLES, variant)
        out[f.stem.rsplit("_", 1)[-1][:4]] = float((cls == CODE["water"]).mean())
    return out


def ablation(data: Path, cities: list[str]) -> Table:
    """Scene adaptation on / off, measured on all three real sets."""
    t = Table(title="Scene adaptation ablation (%): OSCD mean over cities, Taizhou story, NAIP water share per year")
    for col in ("variant", "OSCD built | change", "OSCD built | no change", "Taizhou story | change",
                "Taizhou story | unchanged", "NAIP water 2009/2012/2016/2020"):
        t.add_column(col, justify="right")
    for v in VARIANTS:
        res = [oscd_city(data / "oscd" / c, v) for c in cities]
        d = taizhou_check(data / "demo", v)
        w = naip_water(data / "naip", v)
        t.add_row(v, _pct(np.mean([r["built_change"] for r in res])), _pct(np.mean([r["built_still"] for r in res])),
                  _pct(d["share_change"]), _pct(d["share_unchanged"]), "/".join(_pct(x) for x in w.values()))
    return t


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _class_table(title: str, rows: list[tuple[str, dict[str, float]]]) -> Table:
    t = Table(title=title)
    t.add_column("")
    for c in CLASSES:
        t.add_column(c, justify="right")
    for name, shares in rows:
        t.add_row(name, *[_pct(shares[c]) for c in CLASSES])
    return t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=None, help="real-data folder (default: GEODELTA_DATA)")
    ap.add_argument("--cities", nargs="*", default=list(OSCD_CITIES))
    ap.add_argument("--ablation", action="store_true", help="also compare scene adaptation on/off (3x longer)")
    args = ap.parse_args(argv)
    data = args.data or _default_data()
    con = Console(width=None if sys.stdout.isatty() else 140)

    t0 = time.perf_counter()
    res = [oscd_city(data / "oscd" / c) for c in args.cities]
    t = Table(title="(a) OSCD date 2: share of pixels classified built_up (%)")
    for col in ("city", "change px", "built_up | change", "built_up | no change", "ratio"):
        t.add_column(col, justify="right")
    for r in res:
        t.add_row(r["city"], str(r["n_change"]), _pct(r["built_change"]), _pct(r["built_still"]),
                  f"{r['built_change'] / max(r['built_still'], 1e-9):.2f}")
    con.print(t)
    con.print(_class_table("OSCD change pixels: date-1 classes (%)", [(r["city"], r["from_change"]) for r in res]))
    con.print(_class_table("OSCD change pixels: date-2 classes (%)", [(r["city"], r["to_change"]) for r in res]))
    con.print("hongkong date 2 is on a different grid (538 x 693): its bands were resampled onto the date-1 B02 grid.")

    c = corine_check(data / "corine_ch")
    t = Table(title="(b) CORINE 250 m 2006 -> 2012: change regions and transitions")
    for col in ("region", "pixels", "CLC 2006 -> 2012", "from", "to", "how"):
        t.add_column(col)
    lab = c["labels"]
    with rasterio.open(data / "corine_ch" / "ls250_06.tif") as a, rasterio.open(data / "corine_ch" / "ls250_12.tif") as b:
        g06, g12 = a.read(1), b.read(1)
    for rid, (f, to, how, _conf) in sorted(c["transitions"].items()):
        m = lab == rid
        pairs = sorted({(int(x), int(y)) for x, y in zip(g06[m], g12[m])})
        t.add_row(str(rid), str(int(m.sum())), ", ".join(f"{x}->{y}" for x, y in pairs), f, to, how)
    con.print(t)
    con.print(f"changed pixels {c['n_changed_px']} in {c['n_regions']} regions; arable(211) -> discontinuous "
              f"urban(112) pixels expected {c['arable_urban_px_expected']}, cropland -> built_up pixels found "
              f"{c['cropland_built_px_found']}: exact = {c['exact']}")

    d = taizhou_check(data / "demo")
    t = Table(title="(c) Taizhou demo: cropland/low_vegetation -> built_up/bare_ground (%)")
    t.add_column("reference change px", justify="right")
    t.add_column("reference unchanged px", justify="right")
    t.add_row(_pct(d["share_change"]), _pct(d["share_unchanged"]))
    con.print(t)
    con.print(_class_table("Taizhou classes (%)", [
        ("before | change", d["before_change"]), ("after | change", d["after_change"]),
        ("before | all", d["before_all"]), ("after | all", d["after_all"])]))
    if args.ablation:
        con.print(ablation(data, args.cities))
    con.print(f"[dim]total {time.perf_counter() - t0:.1f} s[/dim]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
