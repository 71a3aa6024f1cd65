"""GeoDelta's learned change masker: a small Siamese U-Net over R, G, B (+ NIR), trained from scratch.

Inputs per date are 5 channels: red, green, blue, nir (0 when the pair has none) and a NIR-present
flag, each standardised per date and channel with robust statistics (median, 2-98 percentile span)
fitted on the scene-wide sample, so gain/offset differences between dates and sensors shrink.
One encoder with shared weights sees both dates; each scale is fused symmetrically
(|fa - fb| and fa + fb), so swapping the dates gives the same mask. Torch is imported only when the
network is built or trained (the `[train]` extra); `import geodelta.perception` stays torch-free.
Inference runs the exported ONNX file with onnxruntime (perception/learned/onnx_infer.py, base install); the torch
checkpoint is used only for training, export, a CUDA GPU, or when a `.pt` file is passed as `weights`.
"""

from __future__ import annotations

import functools
import importlib.util
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np

from geodelta.errors import ConfigError, InputError, MissingDependencyError
from geodelta.perception.change.maskers import register_masker
from geodelta.perception.io.checksum import file_sha256
from geodelta.perception.learned.shipped import DEFAULT_PRECISION, PRECISIONS, shipped_model  # noqa: F401 (re-exported)

CHANNELS = ("red", "green", "blue", "nir")
IN_CH = len(CHANNELS) + 1  # + the NIR-present flag
DEFAULT_CONFIG: dict[str, Any] = {"in_ch": IN_CH, "widths": [16, 32, 64, 96]}
MULTIPLE = 8  # the network downsamples 3 times: windows are padded to a multiple of 2**3 px
MIN_SIZE_EFFNET = 32  # effnet_siamese (stride-16 stages, static 'same' padding): smaller windows are padded to this
_CLIP = 6.0  # standardised values are clipped to +-6 spans (saturated pixels, clouds)
_TORCH_MISSING = "the learned model needs torch, from the [train] extra: pip install 'geodelta[train]'"


def default_weights() -> Path:
    """The shipped float model, geodelta/data/weights/siamese_v3.onnx (package data; onnxruntime, no torch): the
    export of the torch checkpoint, and the folder every shipped model lies in."""
    return Path(str(resources.files("geodelta.data") / "weights" / "siamese_v3.onnx"))


def default_checkpoint() -> Path:
    """The shipped torch checkpoint the ONNX file was exported from, geodelta/data/weights/siamese_v3.pt."""
    return Path(str(resources.files("geodelta.data") / "weights" / "siamese_v3.pt"))


def require_torch():
    """The torch module, or ConfigError telling the user which extra to install."""
    try:
        import torch
    except ImportError:
        raise MissingDependencyError(_TORCH_MISSING) from None
    return torch


# ---------------------------------------------------------------- input preparation (numpy)


def channel_indices(n_bands: int, roles: dict[str, int] | None) -> tuple[list[int], bool]:
    """Band indices of red, green, blue (and nir) in arrays of `n_bands` bands, and whether NIR exists.

    Without roles, 3 bands are taken as R, G, B and 4 bands as R, G, B, NIR (the 8-bit conventions of
    perception.bands.infer_roles); anything else needs the pair's roles.
    """
    if roles and all(r in roles for r in CHANNELS[:3]):
        idx = [int(roles[r]) for r in CHANNELS[:3]]
        has_nir = "nir" in roles
        idx += [int(roles["nir"])] if has_nir else []
    elif roles:
        raise InputError(f"the learned model needs red, green and blue bands; these bands' roles are {sorted(roles, key=lambda r: roles[r])}: "
                         "use --method water or irmad, or declare the bands (e.g. --bands red,green,blue,nir)")
    elif n_bands in (3, 4):
        idx, has_nir = list(range(n_bands)), n_bands == 4
    else:
        raise InputError(f"the learned model needs red, green and blue bands; {n_bands} bands without known roles "
                         "were given: name the bands (descriptions 'red', 'green', 'blue', 'nir') or pass roles=")
    if max(idx) >= n_bands:
        raise InputError(f"band roles {roles} point past the {n_bands} bands given")
    return idx, has_nir


def channel_stats(x: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-band centre (median) and scale ((p98 - p2) / 4, about one sigma for a normal) of x (C, N)."""
    centres, scales = [], []
    for band in np.asarray(x, np.float64):
        band = band[np.isfinite(band)]
        if band.size == 0:
            centres.append(0.0)
            scales.append(1.0)
            continue
        p2, p50, p98 = np.percentile(band, [2, 50, 98])
        span = (p98 - p2) / 4.0
        if not span > 1e-9 * max(1.0, abs(p50)):
            span = float(np.std(band)) or 1.0
        centres.append(float(p50))
        scales.append(float(span))
    return centres, scales


def prepare(x: np.ndarray, idx: list[int], has_nir: bool, centre: list[float], scale: list[float],
            valid: np.ndarray | None = None) -> np.ndarray:
    """float32 (IN_CH, h, w) network input from one date's bands x (B, h, w); 0 where not valid and
    where a band is NaN. Band by band into one buffer, no temporary the size of the window: 7 ms instead of
    55 ms for the whole-array expression on a 1088 px 4-band window."""
    x = np.asarray(x)
    out = np.empty((IN_CH,) + x.shape[1:], np.float32)
    for k, i in enumerate(idx):
        z = out[k]
        np.subtract(x[i], np.float32(centre[k]), out=z, casting="unsafe")
        np.multiply(z, np.float32(1.0 / scale[k]), out=z)
        np.copyto(z, np.float32(0.0), where=np.isnan(z))  # a missing value; +-inf is clipped to +-_CLIP
        np.clip(z, -_CLIP, _CLIP, out=z)
    out[len(idx): -1] = 0.0  # unused channels (no NIR)
    out[-1] = 1.0 if has_nir else 0.0
    if valid is not None:
        np.copyto(out[:-1], np.float32(0.0), where=~np.asarray(valid, bool)[None])
    return out


def prepare_window(pair: Any, window: Any) -> tuple[np.ndarray, np.ndarray]:
    """Both dates of one window of an aligned pair as network inputs, each standardised on its own valid pixels
    (what the tests and speed benchmarks feed the exported networks; the masker fits its stats scene-wide)."""
    a, b, valid = pair.read(window)
    idx, has_nir = channel_indices(a.shape[0], dict(pair.band_roles))
    ca, sa = channel_stats(a[idx][:, valid])
    cb, sb = channel_stats(b[idx][:, valid])
    return prepare(a, idx, has_nir, ca, sa, valid), prepare(b, idx, has_nir, cb, sb, valid)


# ---------------------------------------------------------------- the network (torch, built lazily)


@functools.cache
def _net_class():
    """SiameseUNet, defined on first use so that torch is imported only then."""
    torch = require_torch()
    nn = torch.nn
    F = torch.nn.functional

    Module: Any = nn.Module  # torch is imported lazily, so its classes are run-time values here

    def block(cin: int, cout: int) -> Any:
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                             nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

    class SiameseUNet(Module):
        """(a, b): float32 (N, in_ch, H, W) each, H and W multiples of 8 -> change logits (N, 1, H, W)."""

        def __init__(self, in_ch: int = IN_CH, widths: list[int] | tuple[int, ...] = (16, 32, 64, 96)):
            super().__init__()
            w = list(widths)
            self.enc = nn.ModuleList([block(ci, co) for ci, co in zip([in_ch] + w[:-1], w)])
            self.fuse = nn.ModuleList([nn.Sequential(nn.Conv2d(2 * c, c, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True))
                                       for c in w])
            self.dec = nn.ModuleList([block(w[i + 1] + w[i], w[i]) for i in range(len(w) - 1)])
            self.head = nn.Conv2d(w[0], 1, 1)

        def encode(self, x):
            feats = []
            for i, enc in enumerate(self.enc):
                x = enc(x if i == 0 else F.max_pool2d(x, 2))
                feats.append(x)
            return feats

        def forward(self, a, b):
            n = a.shape[0]
            feats = self.encode(torch.cat([a, b], 0))  # one pass over both dates: shared weights
            fused = [f(torch.cat([(x[:n] - x[n:]).abs(), x[:n] + x[n:]], 1)) for f, x in zip(self.fuse, feats)]
            y = fused[-1]
            for i in range(len(fused) - 2, -1, -1):
                y = F.interpolate(y, size=fused[i].shape[-2:], mode="bilinear", align_corners=False)
                y = self.dec[i](torch.cat([y, fused[i]], 1))
            return self.head(y)

    return SiameseUNet


def build_model(config: dict[str, Any] | None = None):
    """A freshly initialised network from a config dict: the SiameseUNet (keys of DEFAULT_CONFIG), or the
    architecture named by its `arch` key (`effnet_siamese`: perception/learned/effnet.py, built without
    fetching its ImageNet weights, since a checkpoint's state_dict replaces them)."""
    if (config or {}).get("arch") == "effnet_siamese":
        from geodelta.perception.learned import effnet

        return effnet.build_model(config, pretrained=False)
    cfg = DEFAULT_CONFIG | (config or {})
    return _net_class()(in_ch=int(cfg["in_ch"]), widths=list(cfg["widths"]))


def count_parameters(model) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def save_checkpoint(model, path: Path, config: dict[str, Any], meta: dict[str, Any]) -> str:
    """Write {config, meta, state_dict} with torch.save; returns the file's sha256."""
    torch = require_torch()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    torch.save({"format": "geodelta-siamese-v1", "config": dict(config), "meta": dict(meta), "state_dict": state}, path)
    return file_sha256(path)


@functools.lru_cache(maxsize=4)
def load_model(path: str | Path | None = None, device: str = "cpu"):
    """(model in eval mode on `device`, checkpoint meta, sha256) from a checkpoint, loaded once per process."""
    torch = require_torch()
    path = Path(path) if path else default_checkpoint()
    if not path.is_file():
        raise ConfigError(f"learned-model weights not found at {path}: run `geodelta train --out {path}` or reinstall geodelta")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != "geodelta-siamese-v1":
        raise ConfigError(f"{path} is not a GeoDelta Siamese checkpoint: train one with `geodelta train`")
    model = build_model(ckpt["config"])
    model.load_state_dict(ckpt["state_dict"])
    model.to(device).eval()
    return model, dict(ckpt.get("meta", {})), file_sha256(path)


def predict(model, xa: np.ndarray, xb: np.ndarray, head: int | None = None) -> np.ndarray:
    """Change probability float32 (h, w) from prepared inputs (IN_CH, h, w); pads to a multiple of 8.
    `head`: that change type's probability of a change-type model instead of any change."""
    torch = require_torch()
    h, w = xa.shape[1:]
    ph, pw = -h % MULTIPLE, -w % MULTIPLE
    if hasattr(model, "head_names"):  # effnet_siamese: its stride-16 stages need >= MIN_SIZE_EFFNET px
        ph, pw = max(ph, MIN_SIZE_EFFNET - h), max(pw, MIN_SIZE_EFFNET - w)
    pad = ((0, 0), (0, ph), (0, pw))
    mode: Literal["reflect", "edge"] = "reflect" if h > ph and w > pw else "edge"
    device = next(model.parameters()).device
    ta = torch.from_numpy(np.pad(xa, pad, mode=mode)[None]).to(device)
    tb = torch.from_numpy(np.pad(xb, pad, mode=mode)[None]).to(device)
    with torch.inference_mode():
        logits = model(ta, tb) if head is None else model.heads(ta, tb)[:, int(head):int(head) + 1]
        prob = torch.sigmoid(logits)[0, 0, :h, :w]
    return prob.float().cpu().numpy()


# ---------------------------------------------------------------- the masker


def _torch_installed() -> bool:
    """Whether torch could be imported, without importing it (the base install has none)."""
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        return False


@register_masker
class LearnedMasker:
    """The Siamese network as a change masker (threshold 0.5 on its sigmoid output).

    `roles` (role -> band index in the arrays fit/score get) says which bands are R, G, B, NIR; the
    pipeline passes `pair_roles(pair)`. `weights` overrides the shipped model: an `.onnx` file runs with
    onnxruntime (no torch), a `.pt` checkpoint with torch. `device` (`auto|cpu|cuda`, default the
    GEODELTA_DEVICE setting): the shipped model runs its torch checkpoint on a CUDA GPU when torch is
    installed and sees one, else the ONNX file on the CPU in `precision` (int8 or float; None: the model's
    measured default, DEFAULT_PRECISION).
    """

    name = "learned"

    model = "siamese_v3"  # the shipped model used when no `weights` are given
    min_component_mean = 0.0  # engine hint: drop mask components whose mean probability is below this (0: none)

    def __init__(self, roles: dict[str, int] | None = None, weights: str | Path | None = None, device: str | None = None,
                 change_type: str | None = None, precision: str | None = None):
        self.roles = dict(roles) if roles else None
        self.weights = str(weights) if weights else None
        self.device = device
        self.change_type = None if change_type in (None, "any") else str(change_type)
        self.precision = precision  # None: the shipped model's default (DEFAULT_PRECISION)
        shipped_model(self.model, self.precision)  # an unknown precision is a ConfigError now, not at the first window

    def _backend(self) -> tuple[str, str | None, str]:
        """("onnx" | "torch", weights path, device) for this masker's options."""
        if self.weights and Path(self.weights).suffix == ".pt":
            from geodelta.perception.learned.device import resolve_device

            require_torch()
            return "torch", self.weights, resolve_device(self.device)
        if self.weights is None and self.device != "cpu" and _torch_installed():
            from geodelta.perception.learned.device import resolve_device

            dev = resolve_device(self.device)
            checkpoint = default_weights().parent / f"{self.model}.pt"
            if dev == "cuda" and checkpoint.is_file():
                return "torch", str(checkpoint), dev
        return "onnx", self.weights or str(shipped_model(self.model, self.precision)), "cpu"

    def _model(self):
        """(backend, model or session, meta, sha256)."""
        kind, path, dev = self._backend()
        if kind == "torch":
            return (kind, *load_model(path, dev))
        from geodelta.perception.change.engines import window_threads
        from geodelta.perception.learned import onnx_infer

        sess, info, sha = onnx_infer.load_session(path, window_threads())
        min_size = MIN_SIZE_EFFNET if info.get("config", {}).get("arch") == "effnet_siamese" else 0
        return kind, sess, dict(info.get("meta", {})) | {"heads": info.get("heads"), "min_size": min_size,
                                                          "quantized": info.get("quantized")}, sha

    def _head(self, model, meta: dict) -> int | None:
        """Index of the requested change type among the model's heads (None: any change, the `prob` output)."""
        if self.change_type is None:
            return None
        heads = meta.get("heads") or list(getattr(model, "head_names", []) or [])
        if self.change_type not in heads:
            raise ConfigError(f"change type {self.change_type!r} is not one of this model's heads {heads or '(none)'}: "
                              "use change_type='any' or a change-type model (effnet_siamese)")
        return heads.index(self.change_type)

    # One window at a time, every CPU inside onnxruntime, by measurement on the 4000 px NAIP mosaic (AMD EPYC, AVX2,
    # 2 CPUs): score 19.3 s at 1.2 GB peak RSS, against 18.6 s at 2.2 GB for 2 windows x 1 thread (each run holds
    # ~0.7 GB of activations). An earlier Intel machine gained more from 2 windows (12.9 vs 19.5 s), but no
    # machine can give back the memory: a 20,000 px scene must stay under 2 GB.
    max_windows = 1

    @property
    def thread_safe(self) -> bool:
        """onnxruntime sessions may run from several threads at once (each window with engines.window_threads()
        threads); a torch model runs its own threads inside one call."""
        return self._backend()[0] == "onnx"

    def warm(self) -> None:
        """Load the model now (once per process): a Dask worker does it while the driver fits."""
        self._model()

    def fit(self, a: np.ndarray, b: np.ndarray) -> dict:
        a = np.asarray(a, np.float32)
        b = np.asarray(b, np.float32)
        if a.ndim != 2 or a.shape != b.shape:
            raise InputError(f"the two dates' samples must be (bands, pixels) arrays of one shape; got {a.shape} and {b.shape}")
        idx, has_nir = channel_indices(a.shape[0], self.roles)
        kind, model, meta, sha = self._model()
        head = self._head(model, meta)
        finite = np.isfinite(a).all(0) & np.isfinite(b).all(0)
        ca, sa = channel_stats(a[idx][:, finite])
        cb, sb = channel_stats(b[idx][:, finite])
        quantized = kind == "onnx" and bool(meta.get("quantized"))
        return {"method": self.name, "weights_sha256": sha, "model": meta.get("name", "siamese"), "runtime": kind,
                "precision": "int8" if quantized else "float",
                "threshold": 0.5, "min_component_mean": self.min_component_mean, "change_type": self.change_type or "any", "head": head, "channels": idx, "channel_roles": list(CHANNELS[: len(idx)]), "has_nir": has_nir,
                "centre_a": ca, "scale_a": sa, "centre_b": cb, "scale_b": sb}

    def score(self, a: np.ndarray, b: np.ndarray, valid: np.ndarray, params: dict) -> np.ndarray:
        a = np.asarray(a, np.float32)
        b = np.asarray(b, np.float32)
        if a.ndim != 3 or a.shape != b.shape:
            raise InputError(f"the two dates must be (bands, h, w) arrays of one shape; got {a.shape} and {b.shape}")
        valid = np.asarray(valid, bool) & np.isfinite(a).all(0) & np.isfinite(b).all(0)
        kind, model, meta, sha = self._model()
        if params.get("weights_sha256") not in (None, sha):
            raise ConfigError("the learned model's weights changed since fit(): fit again with the current weights")
        idx, has_nir = list(params["channels"]), bool(params["has_nir"])
        xa = prepare(a, idx, has_nir, params["centre_a"], params["scale_a"], valid)
        xb = prepare(b, idx, has_nir, params["centre_b"], params["scale_b"], valid)
        head = params.get("head")
        if kind == "torch":
            prob = predict(model, xa, xb, head=head)
        else:
            from geodelta.perception.learned import onnx_infer

            prob = onnx_infer.predict(model, xa, xb, multiple=MULTIPLE, head=head, min_size=int(meta.get("min_size", 0)))
        return np.where(valid, prob, np.float32(0.0)).astype(np.float32)


@register_masker
class BuildingMasker(LearnedMasker):
    """`--method buildings`: the pretrained change-type network's `building` head (effnet_siamese_v1).

    Its held-out scores beat siamese_v3 on the building-labelled RGB sets: pixel F1 on LEVIR 0.798 against
    0.706 and on WHU 0.855 against 0.723. Object F1 on LEVIR is 0.806 against 0.465 and on unseen Beijing
    0.588 against 0.167. It marks building change only, so it is worse on mixed land change (SZTAKI 0.195),
    which is why `auto` keeps siamese_v3 for RGB in general (geodelta/data/weights/EFFNET_CARD.md).
    """

    name = "buildings"
    model = "effnet_siamese_v1"
    # Mask components whose mean probability is below this are dropped (engines.change_window). Chosen on the
    # training scenes (LEVIR train crops: object F1 0.738 -> 0.791 at 0.8, its best; WHU train tiles 0.520 -> 0.634);
    # held out: LEVIR 0.824 -> 0.903, WHU 0.041 -> 0.080, Beijing 0.435 -> 0.588, pixel F1 up on all three
    # (EFFNET_CARD.md). Small false-positive blobs (vegetation, shadows) have lower mean probability than buildings.
    min_component_mean = 0.8

    def __init__(self, roles: dict[str, int] | None = None, weights: str | Path | None = None, device: str | None = None,
                 change_type: str | None = "building", precision: str | None = None):
        super().__init__(roles=roles, weights=weights, device=device, change_type=change_type, precision=precision)
