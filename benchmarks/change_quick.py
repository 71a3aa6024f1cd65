"""F1 of the training-free change maskers per labelled domain (prints a table).

Each pair: fit on a strided sample of valid pixels, score the whole image, `score >= 0.5`, then
`clean_mask(radius)`; confusions are summed over a domain's pairs (micro F1) and the domain means
are averaged. Usage: python benchmarks/change_quick.py [--radius 1] [--opt irmad:threshold=chi2 ...]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import rasterio
import rasterio.errors
from PIL import Image
from rasterio.warp import Resampling, reproject

from geodelta.perception.change.maskers import clean_mask, get_masker, sample_valid
from geodelta.perception.evaluation.metrics import confusion, merge, scores
from geodelta.settings import Settings


def _png(path: Path) -> np.ndarray:
    """(B, h, w) float32 from an RGB/L PNG."""
    arr = np.asarray(Image.open(path))
    arr = arr[None] if arr.ndim == 2 else arr[..., :3].transpose(2, 0, 1)
    return arr.astype(np.float32)


def _label(path: Path) -> np.ndarray:
    arr = np.asarray(Image.open(path))
    return (arr[..., 0] if arr.ndim == 3 else arr) > 127


def levir(data: Path):
    root = data / "levir_crops"
    for name in sorted(p.name for p in (root / "A").glob("*.png")):
        a, b = _png(root / "A" / name), _png(root / "B" / name)
        yield name, a, b, np.ones(a.shape[1:], bool), _label(root / "label" / name), None


def whu(data: Path):
    root = data / "whu_tiles"
    for name in sorted(p.name for p in (root / "A").glob("*.png")):
        a, b = _png(root / "A" / name), _png(root / "B" / name)
        yield name, a, b, np.ones(a.shape[1:], bool), _label(root / "label" / name), None


def szada(data: Path):
    root = data / "sztaki" / "Szada"
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        a, b = _png(d / "im1.png"), _png(d / "im2.png")
        yield d.name, a, b, np.ones(a.shape[1:], bool), _label(d / "gt.png"), None


OSCD_10M = ("B02", "B03", "B04", "B08")
OSCD_ALL = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")


def _oscd_stack(folder: Path, bands, ref) -> np.ndarray:
    """Bands of one date resampled (bilinear) onto the reference 10 m grid `ref` (a dataset)."""
    out = np.empty((len(bands), ref.height, ref.width), np.float32)
    for i, band in enumerate(bands):
        (path,) = folder.glob(f"*_{band}.tif")
        with rasterio.open(path) as src:
            if src.transform == ref.transform and src.shape == ref.shape:
                out[i] = src.read(1)
            else:
                reproject(src.read(1).astype(np.float32), out[i], src_transform=src.transform, src_crs=src.crs,
                          dst_transform=ref.transform, dst_crs=ref.crs, resampling=Resampling.bilinear)
    return out


def oscd(data: Path, bands=OSCD_10M):
    for city in sorted(p for p in (data / "oscd").iterdir() if p.is_dir()):
        (ref_path,) = (city / "imgs_1").glob("*_B02.tif")
        with rasterio.open(ref_path) as ref:
            a = _oscd_stack(city / "imgs_1", bands, ref)
            b = _oscd_stack(city / "imgs_2", bands, ref)
        with warnings.catch_warnings(), rasterio.open(city / "cm.tif") as src:  # cm.tif has no georeference
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            cm = src.read(1)
        valid = np.ones(a.shape[1:], bool) & (b > 0).any(0)
        yield city.name, a, b, valid, cm == 2, None


def oscd13(data: Path):
    yield from oscd(data, OSCD_ALL)


def taizhou(data: Path):
    d = data / "demo"
    with rasterio.open(d / "taizhou_before_2000-03-17_landsat7_etm.tif") as s:
        a = s.read().astype(np.float32)
    with rasterio.open(d / "taizhou_after_2003-02-06_landsat7_etm.tif") as s:
        b = s.read().astype(np.float32)
    with rasterio.open(d / "taizhou_change_reference.tif") as s:
        ref = s.read(1)
    yield "taizhou", a, b, np.ones(a.shape[1:], bool), ref == 1, ref != 255


DOMAINS = {"levir": levir, "whu": whu, "szada": szada, "oscd": oscd, "taizhou": taizhou}


def run_pair(method: str, options: dict, a, b, valid, radius: int, max_pixels: int = 200_000) -> np.ndarray:
    masker = get_masker(method, **options)
    params = masker.fit(*sample_valid(a, b, valid, max_pixels))
    return clean_mask(masker.score(a, b, valid, params) >= 0.5, valid, radius=radius)


def _parse(specs: list[str]) -> list[tuple[str, str, dict]]:
    """'irmad:threshold=chi2,smooth=1' -> (label, method, options)."""
    out = []
    for spec in specs:
        method, _, rest = spec.partition(":")
        opts = {}
        for kv in filter(None, rest.split(",")):
            k, v = kv.split("=")
            try:
                opts[k] = int(v) if v.isdigit() else float(v)
            except ValueError:
                opts[k] = v
        out.append((spec, method, opts))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--radius", type=int, default=1)
    ap.add_argument("--opt", nargs="*", default=["irmad", "cva"], help="method[:k=v,...] to compare")
    ap.add_argument("--domains", nargs="*", default=list(DOMAINS))
    ap.add_argument("--oscd13", action="store_true", help="OSCD with all 13 bands resampled to 10 m")
    args = ap.parse_args(argv)
    if args.oscd13:
        DOMAINS["oscd"] = oscd13
    data = Settings().data
    runs = _parse(args.opt)
    table = {label: {} for label, _, _ in runs}
    per_pair = []
    for dom in args.domains:
        confs = {label: [] for label, _, _ in runs}
        for name, a, b, valid, truth, labelled in DOMAINS[dom](data):
            for label, method, opts in runs:
                t0 = time.perf_counter()
                mask = run_pair(method, opts, a, b, valid, args.radius)
                c = confusion(mask, truth, valid if labelled is None else valid & labelled)
                confs[label].append(c)
                per_pair.append((dom, name, label, scores(c)["f1"], time.perf_counter() - t0))
        for label in confs:
            table[label][dom] = scores(merge(confs[label]))["f1"]
    print(f"radius={args.radius}  micro F1 per domain (sum of confusions over the domain's pairs)")
    print("| method | " + " | ".join(args.domains) + " | mean |")
    print("| --- |" + " --- |" * (len(args.domains) + 1))
    for label, row in table.items():
        vals = [row[d] for d in args.domains]
        print(f"| {label} | " + " | ".join(f"{v:.3f}" for v in vals) + f" | {np.mean(vals):.3f} |")
    if "-v" in sys.argv:
        for row in per_pair:
            print(*row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
