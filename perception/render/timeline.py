"""timeline.png of a time series: changed area per interval (bars) beside the first-change map.

Pillow only. Bars: the interval's changed area (ha, or px without georeference) in light colour and
the part that changed there for the first time in dark. Map: first_change.tif decimated (nearest) to
at most `MAP_SIZE` px, one colour per interval, white = never, grey = nodata.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from PIL import Image, ImageDraw, ImageFont
from rasterio.enums import Resampling

MAP_SIZE = 480  # px, longest side of the map panel
# Interval colours (ColorBrewer "Set1", colour-blind friendlier first four), cycled after nine.
COLOURS = [(228, 26, 28), (55, 126, 184), (77, 175, 74), (152, 78, 163), (255, 127, 0), (166, 86, 40),
           (247, 129, 191), (153, 153, 153), (255, 255, 51)]
NEVER, NODATA = (255, 255, 255), (200, 200, 200)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def first_change_rgb(first_tif: Path, n_intervals: int, max_size: int = MAP_SIZE) -> np.ndarray:
    """uint8 (h, w, 3) colour map of first_change.tif, longest side <= max_size (decimated nearest read)."""
    with rasterio.open(first_tif) as src:
        scale = max(src.width, src.height) / max_size
        h, w = (src.height, src.width) if scale <= 1 else (max(1, round(src.height / scale)), max(1, round(src.width / scale)))
        v = src.read(1, out_shape=(h, w), resampling=Resampling.nearest)
    lut = np.array([NEVER] + [COLOURS[(k - 1) % len(COLOURS)] for k in range(1, 255)] + [NODATA], np.uint8)
    return lut[v]


def timeline_png(summary: dict[str, Any], first_tif: Path, out_path: Path) -> Path:
    """Draw the bar chart and the map side by side; returns `out_path`."""
    intervals = summary["intervals"]
    geo = all("changed_m2" in iv["change"] for iv in intervals)
    unit = "ha" if geo else "px"
    total = [iv["change"]["changed_m2"] / 1e4 if geo else iv["change"]["changed_px"] for iv in intervals]
    first = [iv.get("first_change_m2", 0) / 1e4 if geo else iv["first_change_px"] for iv in intervals]
    rgb = first_change_rgb(first_tif, len(intervals))
    mh, mw = rgb.shape[:2]
    chart_w, pad, top, foot = 420, 16, 40, 70
    height = max(mh, 300) + top + foot
    img = Image.new("RGB", (chart_w + mw + 3 * pad, height), "white")
    d = ImageDraw.Draw(img)
    f, fs = _font(15), _font(12)
    d.text((pad, 10), f"Changed area per interval ({unit})", fill="black", font=f)
    d.text((chart_w + 2 * pad, 10), "First change (interval)", fill="black", font=f)

    # bars
    x0, y0, y1 = pad + 40, top + 10, height - foot
    vmax = max(total + [1e-9])
    bw = (chart_w - 50) / max(1, len(intervals))
    d.line([(x0, y0), (x0, y1), (pad + chart_w, y1)], fill="black")
    for i, (iv, t, fc) in enumerate(zip(intervals, total, first)):
        colour = COLOURS[i % len(COLOURS)]
        light = tuple(int(c + (255 - c) * 0.6) for c in colour)
        bx0, bx1 = x0 + i * bw + 6, x0 + (i + 1) * bw - 6
        d.rectangle([bx0, y1 - (y1 - y0) * t / vmax, bx1, y1], fill=light, outline=colour)
        d.rectangle([bx0, y1 - (y1 - y0) * fc / vmax, bx1, y1], fill=colour)
        d.text((bx0, y1 - (y1 - y0) * t / vmax - 16), f"{t:,.1f}" if geo else f"{t:,.0f}", fill="black", font=fs)
        d.text((bx0, y1 + 6), f"{iv['start'][:7]}", fill="black", font=fs)
        d.text((bx0, y1 + 20), f"-> {iv['end'][:7]}", fill="black", font=fs)
    d.text((pad, height - 28), "light: changed in the interval; dark: first change there", fill="black", font=fs)

    # map + legend
    img.paste(Image.fromarray(rgb), (chart_w + 2 * pad, top))
    ly = top + mh + 8
    lx = chart_w + 2 * pad
    for i, _iv in enumerate(intervals):
        d.rectangle([lx, ly, lx + 10, ly + 10], fill=COLOURS[i % len(COLOURS)])
        d.text((lx + 14, ly - 2), f"{i + 1}", fill="black", font=fs)
        lx += 34
    d.rectangle([lx, ly, lx + 10, ly + 10], fill=NEVER, outline="black")
    d.text((lx + 14, ly - 2), "never", fill="black", font=fs)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    img.save(out_path)
    return out_path
