"""FGSA on a real frozen backbone: DINOv2-S/14 (transformers ``Dinov2Model``, 12 blocks, width 384).

DINOv2's token stream is a sequence (class token + 16 x 16 patch tokens at 224 px), not a token
map, so `DinoFGSANet` is `FGSANet` with its own forward: the class token rides along unchanged by
the adapter, and the injectors, FGSAttn and the extractors act on the patch tokens only.

Injection sites and the frozen prefix: the adapter interacts with the LAST blocks only
(``groups``, default ((8, 9), (10, 11))). Blocks 0..7 (``DinoBackbone.start`` = 8) run before any
adapter code and are the same for every variant, so `DinoBackbone.embed` returns the token stream
after them: the frozen part an edit never needs to recompute, and what training caches on disk
(see training/fgsa/train_dino.py). Every group output goes through DINOv2's own final LayerNorm
(as DINOv2's ``get_intermediate_layers(norm=True)``) before it feeds the pyramid.
"""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from adapters.fgsa.modeling import FGSAConfig, FGSANet, FGSAttn, reference_points

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DINO_GROUPS = ((8, 9), (10, 11))
DINO_SIZE = 224


def _call(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = layer(x)
    return out[0] if isinstance(out, (tuple, list)) else out


class DinoBackbone(nn.Module):
    """A frozen ``Dinov2Model`` through FGSANet's backbone interface: `embed` (the frozen prefix),
    `layers`, `dim`, `patch`, `image_size`, `mean`/`std`, plus `norm` (the final LayerNorm)."""

    def __init__(self, model: nn.Module, start: int = DINO_GROUPS[0][0], image_size: int = DINO_SIZE):
        super().__init__()
        self.model = model
        config = model.config
        self.layers = model.encoder.layer
        self.dim = config.hidden_size
        self.patch = config.patch_size
        self.image_size = image_size
        self.start = start
        self.mean, self.std = IMAGENET_MEAN, IMAGENET_STD

    def embed(self, pixels: torch.Tensor) -> torch.Tensor:
        """Normalised pixels -> the token stream (B x 1+hw x C) after blocks 0..start-1."""
        x = self.model.embeddings(pixels)
        for layer in self.layers[:self.start]:
            x = _call(layer, x)
        return x

    def norm(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.layernorm(x)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.embed(pixels)
        for layer in self.layers[self.start:]:
            x = _call(layer, x)
        return self.norm(x)


def dino_fgsa_config(variant: str = "fgsa", groups=DINO_GROUPS, **overrides) -> FGSAConfig:
    """Adapter sizes for DINOv2-S at 224 px."""
    settings = dict(variant=variant, groups=groups, planes=16, heads=4, points=4, inner=64, head_width=32,
                    fgsa_conv_levels=(1, 2), fgsa_tokens=True)
    return FGSAConfig(**(settings | overrides))


class DinoFGSANet(FGSANet):
    """FGSANet around `DinoBackbone`: the class token passes the adapter untouched."""

    def __init__(self, backbone: DinoBackbone, config: FGSAConfig):
        first = min(i for g in config.groups for i in g)
        if first != backbone.start:
            raise ValueError(f"the first adapter group starts at block {first} but the frozen prefix ends at {backbone.start}")
        super().__init__(backbone, config)

    def _patch_map(self, x: torch.Tensor, gh: int, gw: int) -> torch.Tensor:
        """Normalised patch tokens of a stream as B x C x h x w."""
        patches = self.backbone.norm(x)[:, 1:]
        return patches.transpose(1, 2).reshape(x.shape[0], -1, gh, gw)

    def forward(self, image: torch.Tensor, gains: Mapping[str, torch.Tensor] | None = None, probes: dict | None = None,
                embedded: torch.Tensor | None = None) -> torch.Tensor:
        """As FGSANet.forward; `embedded` is the frozen prefix's output (`DinoBackbone.embed`)."""
        pixels = self.normalise(image)
        x = self.backbone.embed(pixels) if embedded is None else embedded.to(pixels.dtype)
        b, n, dim = x.shape
        gh, gw = image.shape[-2] // self.backbone.patch, image.shape[-1] // self.backbone.patch
        if n != 1 + gh * gw:
            raise ValueError(f"{n} tokens do not match a {gh}x{gw} patch grid plus the class token")
        layers = self.backbone.layers
        size = image.shape[-1]
        if not self.config.uses_adapter:
            outs = []
            for group in self.config.groups:
                for i in group:
                    x = _call(layers[i], x)
                outs.append(self._patch_map(x, gh, gw))
            return self.head(self._pyramid_from_tokens(outs, size), image.shape[-2:])

        c1, c2, c3, c4 = self.branch(pixels, gains, probes)
        shapes = [tuple(t.shape[-2:]) for t in (c2, c3, c4)]
        c = torch.cat([(t.flatten(2).transpose(1, 2) + self.branch.level_embed[i]) for i, t in enumerate((c2, c3, c4))], 1)
        x_ref = reference_points([(gh, gw)], x.device)
        c_ref = reference_points(shapes, x.device)
        cls, patches = x[:, :1], x[:, 1:]
        x = torch.cat([cls, self.first_injector(patches, x_ref, c, shapes)], 1)
        outs = []
        for g, group in enumerate(self.config.groups):
            for i in group:
                x = _call(layers[i], x)
            cls, patches = x[:, :1], x[:, 1:]
            xm = patches.transpose(1, 2).reshape(b, dim, gh, gw)
            if probes is not None:
                probes[f"x{g + 1}"] = xm
            if isinstance(self.token_attn[g], FGSAttn):
                xm = self.token_attn[g](xm, None if gains is None else gains.get(f"x{g + 1}"))
            patches = xm.flatten(2).transpose(1, 2)
            x = torch.cat([cls, patches], 1)
            outs.append(self._patch_map(x, gh, gw))
            c = self.extractors[g](c, c_ref, patches, (gh, gw), shapes)
            if g < len(self.injectors):
                x = torch.cat([cls, self.injectors[g](patches, x_ref, c, shapes)], 1)
        n2, n3 = shapes[0][0] * shapes[0][1], shapes[1][0] * shapes[1][1]
        maps = [c[:, :n2], c[:, n2:n2 + n3], c[:, n2 + n3:]]
        maps = [m.transpose(1, 2).reshape(b, dim, *s) for m, s in zip(maps, shapes)]
        c1 = c1 + F.interpolate(maps[0], size=c1.shape[-2:], mode="bilinear", align_corners=False)
        pyramid = [c1] + maps
        vit = self._pyramid_from_tokens(outs, size)
        # at 224 px both pyramids are 56/28/14/7; other sizes round differently in the conv branch
        vit = [v if v.shape[-2:] == p.shape[-2:] else F.interpolate(v, size=p.shape[-2:], mode="bilinear", align_corners=False)
               for p, v in zip(pyramid, vit)]
        pyramid = [norm(p + v) for norm, p, v in zip(self.norms, pyramid, vit)]
        return self.head(pyramid, image.shape[-2:])


def frozen_stream(backbone: DinoBackbone, pixels: torch.Tensor) -> list[torch.Tensor]:
    """The frozen model's own token stream after every block from `start` on (identity reference)."""
    x = backbone.embed(pixels)
    outs = []
    for layer in backbone.layers[backbone.start:]:
        x = _call(layer, x)
        outs.append(x)
    return outs


def tiny_dinov2(seed: int = 0, layers: int = 3, image_size: int = 28) -> DinoBackbone:
    """A tiny random Dinov2Model (width 16, patch 14) for tests: the real class, tiny sizes."""
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(seed)
    config = Dinov2Config(hidden_size=16, num_hidden_layers=layers, num_attention_heads=2, intermediate_size=32,
                          patch_size=14, image_size=image_size, layerscale_value=1.0)
    model = Dinov2Model(config).eval().requires_grad_(False)
    return DinoBackbone(model, start=1, image_size=image_size)
