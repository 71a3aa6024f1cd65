"""The shipped int8 change models: derived from the shipped float ones, the same decisions on held-out real crops,
and each model's default precision (perception/learned/onnx_quantize.py, siamese.DEFAULT_PRECISION)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from rasterio.windows import Window

from geodelta.errors import ConfigError
from geodelta.perception.change import maskers as change
from geodelta.perception.io.reader import open_pair
from geodelta.perception.learned import onnx_infer
from geodelta.perception.learned import siamese as learned

MODELS = ["siamese_v3", "effnet_siamese_v1"]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _held_out(data_dir: Path) -> list[tuple[Path, Path, Path]]:
    """Held-out scenes (perception/learned/train.py VAL_SPLIT): calibration never saw them."""
    lv, whu = data_dir / "levir_crops", data_dir / "whu_tiles"
    return [(lv / "A" / "test_2_0000_0000.png", lv / "B" / "test_2_0000_0000.png", lv / "label" / "test_2_0000_0000.png"),
            (whu / "A" / "000213.png", whu / "B" / "000213.png", whu / "label" / "000213.png")]


@pytest.mark.parametrize("model", MODELS)
def test_int8_file_names_the_shipped_float_model_it_was_quantised_from(model: str):
    _, info, _ = onnx_infer.load_session(str(learned.shipped_model(model, "int8")))
    assert info["quantized"].startswith("int8")
    assert info["float_model"] == f"{model}.onnx"
    assert info["float_model_sha256"] == _sha(learned.shipped_model(model, "float"))
    # calibrated on training scenes only: no held-out scene among the crops
    from geodelta.perception.learned.train import VAL_SPLIT

    held = {f"{d}/{name}" for d, names in VAL_SPLIT.items() for name in names}
    assert info["calibration"] and not {c.split("#")[0] for c in info["calibration"]} & held


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("scene", [0, 1])
def test_int8_and_float_take_the_same_decisions_on_held_out_crops(data_dir: Path, model: str, scene: int):
    before, after, label = _held_out(data_dir)[scene]
    with open_pair(before, after) as pair:
        xa, xb = learned.prepare_window(pair, Window(0, 0, min(512, pair.grid.width), min(512, pair.grid.height)))
    head = 0 if model == "effnet_siamese_v1" else None  # the building head, as `buildings` runs it
    probs = {}
    for precision in ("float", "int8"):
        sess, info, _ = onnx_infer.load_session(str(learned.shipped_model(model, precision)))
        probs[precision] = onnx_infer.predict(sess, xa, xb, head=head, min_size=32)
    agree = float(((probs["float"] > 0.5) == (probs["int8"] > 0.5)).mean())
    assert agree >= 0.98, f"int8 and float disagree on {1 - agree:.2%} of the pixels"
    truth = np.asarray(Image.open(label).convert("L"))[: xa.shape[1], : xa.shape[2]] > 127

    def f1(p: np.ndarray) -> float:
        tp = float((p & truth).sum())
        return 2 * tp / max(float(p.sum() + truth.sum()), 1.0)

    f_float, f_int8 = f1(probs["float"] > 0.5), f1(probs["int8"] > 0.5)
    assert abs(f_int8 - f_float) < 0.02, f"F1 float {f_float:.3f} vs int8 {f_int8:.3f}"


def test_each_learned_masker_defaults_to_its_measured_precision_and_says_so(data_dir: Path):
    before, after, _ = _held_out(data_dir)[0]
    with open_pair(before, after) as pair:
        a, b, _ = pair.read(Window(0, 0, 64, 64))
    sample = (a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1))
    roles = {"red": 0, "green": 1, "blue": 2}
    # learned (siamese_v3): int8, no worse on any held-out domain; buildings (effnet): float, its int8 lost object F1
    for name, model, default_precision in (("learned", "siamese_v3", "int8"), ("buildings", "effnet_siamese_v1", "float")):
        default = change.get_masker(name, roles=roles).fit(*sample)
        assert default["precision"] == default_precision == learned.DEFAULT_PRECISION[model]
        assert default["weights_sha256"] == _sha(learned.shipped_model(model, default_precision))
        for precision in ("int8", "float"):
            forced = change.get_masker(name, roles=roles, precision=precision).fit(*sample)
            assert forced["precision"] == precision and forced["weights_sha256"] == _sha(learned.shipped_model(model, precision))
    with pytest.raises(ConfigError, match="precision"):
        change.get_masker("learned", precision="fp16")


def test_detect_cli_precision_flag(tmp_path: Path, data_dir: Path):
    """Through the installed script: --precision float runs the float model; a bad value is one clear line, exit 2."""
    gd = Path(sys.executable).with_name("geodelta")
    before, after, _ = _held_out(data_dir)[0]
    ok = subprocess.run([str(gd), "detect", str(before), str(after), "--method", "learned", "--precision", "float",
                         "--out", str(tmp_path / "f"), "--quiet"], capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr
    params = json.loads((tmp_path / "f" / "summary.json").read_text())
    assert '"precision": "float"' in json.dumps(params)
    bad = subprocess.run([str(gd), "detect", str(before), str(after), "--precision", "fp16", "--out", str(tmp_path / "b")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "'int8' or 'float'" in bad.stderr


def test_quantising_the_shipped_float_model_reproduces_the_shipped_int8_file(tmp_path: Path, data_dir: Path):
    """The shipped file is what the code makes: a change to the input preparation (siamese.prepare) moves the
    calibrated ranges, so it fails here until the int8 files are quantised again (onnx_quantize's command)."""
    pytest.importorskip("onnx", reason="quantising needs the onnx package (the [train] extra)")
    from geodelta.perception.learned.onnx_quantize import quantize

    out = tmp_path / "siamese_v3_int8.onnx"
    quantize(learned.shipped_model("siamese_v3", "float"), out, data_dir)
    assert _sha(out) == _sha(learned.shipped_model("siamese_v3", "int8"))
