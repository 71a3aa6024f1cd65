"""The labelled change pairs in GEODELTA_DATA (../shared/data), one loader per folder convention.

Used by `geodelta bench change`, the every-pair test and training. Labels are returned as
(truth, labelled): truth True = change; labelled False where a dataset leaves pixels unlabelled.
See each folder's SOURCE.md for the conventions decoded here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image


@dataclass(frozen=True)
class LabelledPair:
    domain: str
    name: str
    before: Path
    after: Path
    label: Path
    decode: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
    bands: str | None = None  # band roles to declare when the files carry none (OMBRIA: "swir1,nir,green")

    def rgb(self) -> tuple[np.ndarray, np.ndarray]:
        """Both dates' image files read whole as uint8 (3, h, w) R, G, B (the RGB benchmarks score pairs whole)."""
        a, b = (np.moveaxis(np.asarray(Image.open(p).convert("RGB")), -1, 0) for p in (self.before, self.after))
        return a, b

    def truth(self) -> tuple[np.ndarray, np.ndarray]:
        """(change bool (h, w), labelled bool (h, w)) on the BEFORE grid."""
        if self.label.suffix.lower() in (".tif", ".tiff"):
            with rasterio.open(self.label) as src:
                arr = src.read(1)
        else:
            arr = np.asarray(Image.open(self.label).convert("L"))
        return self.decode(arr)


def _binary_255(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # LEVIR / WHU / SZTAKI: 255 = change; SZTAKI has a stray 213, so binarise at > 127 (SOURCE.md).
    return arr > 127, np.ones(arr.shape, bool)


def _oscd(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # OSCD cm.tif: 1 = no change, 2 = change (not the 0/1 its README claims).
    return arr == 2, arr > 0


def _taizhou(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # Taizhou reference: 1 = change, 0 = no change, 255 = not labelled (87% of pixels).
    return arr == 1, arr != 255


def _nanjing(unchanged: Path) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    # Nanjing: change.bmp 255 = labelled change, unchanged.bmp 255 = labelled no change, the rest unlabelled.
    def decode(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        no = np.asarray(Image.open(unchanged).convert("L")) > 127
        return arr > 127, (arr > 127) | no
    return decode


DOMAINS = ("levir", "whu", "sztaki", "oscd", "landsat")
# Added with issue 14; not in the default DOMAINS so older tables and the training set stay as they were.
EXTRA_DOMAINS = ("ombria", "beijing", "nanjing")
OMBRIA_BANDS = "swir1,nir,green"  # B11, B8, B3 stacked into the PNG channels (ombria/SOURCE.md)


def labelled_pairs(data: Path, domains: tuple[str, ...] | list[str] | None = None, *, extra: bool = False) -> Iterator[LabelledPair]:
    """Every labelled pair of the requested domains, in a fixed order. `extra` adds LEVIR's train/val crops."""
    domains = tuple(domains or DOMAINS)
    if "levir" in domains:
        roots = [data / "levir_crops"] + ([data / "levir_crops" / "extra_trainval"] if extra else [])
        for root in roots:
            for lab in sorted((root / "label").glob("*.png")):
                yield LabelledPair("levir", lab.stem, root / "A" / lab.name, root / "B" / lab.name, lab, _binary_255)
    if "whu" in domains:
        root = data / "whu_tiles"
        for lab in sorted((root / "label").glob("*.png")):
            yield LabelledPair("whu", lab.stem, root / "A" / lab.name, root / "B" / lab.name, lab, _binary_255)
    if "sztaki" in domains:
        root = data / "sztaki"
        for d in sorted((p for p in (root / "Szada").iterdir() if p.is_dir()), key=lambda p: p.name) if (root / "Szada").is_dir() else []:
            yield LabelledPair("sztaki", f"Szada/{d.name}", d / "im1.png", d / "im2.png", d / "gt.png", _binary_255)
        if (root / "Archieve").is_dir():
            d = root / "Archieve"
            yield LabelledPair("sztaki", "Archieve", d / "im1.png", d / "im2.png", d / "gt.png", _binary_255)
    if "oscd" in domains:
        root = data / "oscd"
        for d in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
            yield LabelledPair("oscd", d.name, d / "imgs_1", d / "imgs_2", d / "cm.tif", _oscd)
    if "landsat" in domains:
        d = data / "demo"
        if d.is_dir():
            yield LabelledPair(
                "landsat", "taizhou",
                d / "taizhou_before_2000-03-17_landsat7_etm.tif", d / "taizhou_after_2003-02-06_landsat7_etm.tif",
                d / "taizhou_change_reference.tif", _taizhou,
            )
    if "nanjing" in domains:  # a second Landsat scene (Landsat 5 TM, 30 m), sparsely labelled
        d = data / "landsat_nanjing"
        if d.is_dir():
            yield LabelledPair("nanjing", "nanjing", d / "LT51200382000124BJC00_Nanjing.hdr",
                               d / "LT51200382002193BJC00_Nanjing.hdr", d / "change.bmp", _nanjing(d / "unchanged.bmp"))
    if "ombria" in domains:
        root = data / "ombria"
        for event in sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
            for lab in sorted((root / event / "mask").glob("*.png")):
                yield LabelledPair("ombria", f"{event}/{lab.stem}", root / event / "before" / lab.name,
                                   root / event / "after" / lab.name, lab, _binary_255, OMBRIA_BANDS)
    if "beijing" in domains:
        root = data / "beijing_vhr"
        for site in ("A", "B"):
            if (root / f"beijing_{site}_gt.jpg").is_file():
                yield LabelledPair("beijing", site, root / f"beijing_{site}_1.jpg", root / f"beijing_{site}_2.jpg",
                                   root / f"beijing_{site}_gt.jpg", _binary_255)
