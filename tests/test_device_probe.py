"""The learned model on the CPU does not import torch just to ask for a GPU (torch costs ~470 MB of RSS)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from geodelta.perception.learned.device import no_gpu_driver, resolve_device


def test_auto_is_cpu_without_importing_torch_where_no_gpu_driver_exists(data_dir: Path):
    if not no_gpu_driver():
        pytest.skip("this machine has an NVIDIA driver or a WSL2 GPU node: torch is the one to ask")
    assert resolve_device("auto") == "cpu"
    crops = data_dir / "levir_crops"
    code = (
        "import sys\n"
        "from rasterio.windows import Window\n"
        "from geodelta.perception.io.reader import open_pair\n"
        "from geodelta.perception.change.registry import get_masker\n"
        f"pair = open_pair({str(crops / 'A' / 'test_2_0000_0000.png')!r}, {str(crops / 'B' / 'test_2_0000_0000.png')!r})\n"
        "m = get_masker('learned', roles=dict(pair.band_roles))\n"
        "a, b, valid = pair.read(Window(0, 0, pair.grid.width, pair.grid.height))\n"
        "p = m.score(a, b, valid, m.fit(*pair.sample()))\n"
        "print(float(p.max()) > 0.5, 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "False"]  # it scored real change, and torch was never imported
