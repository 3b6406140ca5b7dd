"""Cloud-Adapter on a frozen DINOv2 (re-implemented from the paper and its official code).

- `ContextNet` (the paper's "spatial perception" ConvNet, PMAA-style in the released models): a
  depthwise-separable 1x1 projection, a 3x3 stem, then `depth` stride-2 stages; the context is the
  sum of every stage average-pooled to the last stage's size. It runs once per image.
- `ContextAttention` (the "adapting" module after each adapted block): the patch tokens query the
  context (resized to the token grid) with a multi-head cross-attention whose q/k/v/o maps are
  each low-rank (two bias-free linear maps through rank r). Its output is added to the tokens,
  scaled by the user's strength. The last low-rank factor of o starts at zero, so a fresh adapter
  leaves the frozen stream exactly as it was (the released code has no such zero start).
- Variants: "full" (context branch + adapting modules), "lora" (the same low-rank attention with
  keys/values from the tokens themselves: no context branch), "off" (the frozen backbone and the
  same head, no adapter code at all).
- `FPNHead` from adapters.dense stands in for the paper's Mask2Former decoder. With ``has_cat``
  (an option of the official backbone) the context also goes to the head, concatenated to every
  pyramid level: the head sees the tile at finer than the 14 px token grid. The official has_cat
  configurations concatenate one pooled context map, resized, to every level; here each level gets
  its own context stage, as the official code's multi-feature branch (``return_multi_feats``) does.

Module and parameter names follow the official checkpoints (``cnn.proj_1x1.conv_dw``,
``net.N.attn.to_q.loramlp.0``, ...) so `adapters.cloud_adapter.convert` maps them by rule.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from adapters.dense.backbone import FrozenDino, default_taps
from adapters.dense.head import FPNHead

N_CLASSES = 4
DEPTH_GROUPS = ("shallow", "middle", "deep")


@dataclass(frozen=True)
class CloudAdapterConfig:
    variant: str = "full"  # full | lora | off
    depth: int = 12  # backbone blocks
    adapted: tuple[int, ...] = tuple(range(12))  # blocks followed by an adapting module
    taps: tuple[int, ...] = (2, 5, 8, 11)  # blocks whose patch maps feed the head
    rank: int = 8
    heads: int = 4
    dim_head: int = 32
    context_dim: int = 32
    context_depth: int = 3
    head_width: int = 64
    n_classes: int = N_CLASSES
    image_size: int = 112
    has_cat: bool = False  # context stages concatenated to the head's pyramid (full variant only)
    backbone: dict = field(default_factory=lambda: {"kind": "dinov2_small"})

    @property
    def uses_adapter(self) -> bool:
        return self.variant in ("full", "lora")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "CloudAdapterConfig":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        for k in ("adapted", "taps"):
            if k in known:
                known[k] = tuple(known[k])
        return cls(**known)


def depth_group(block: int, depth: int) -> str:
    """shallow / middle / deep: the first, second and last third of the blocks."""
    return DEPTH_GROUPS[min(2, block * 3 // depth)]


class ConvBNAct(nn.Module):
    """Depthwise-separable conv: grouped k x k conv, BN + ReLU, 1x1 conv, BN; residual when the
    shape is kept (the official DepthwiseSeparableConv, bias-free as timm builds it)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1):
        super().__init__()
        self.conv_dw = nn.Conv2d(in_ch, in_ch, kernel, stride, padding=kernel // 2, groups=groups, bias=False)
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv_pw = nn.Conv2d(in_ch, out_ch, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.skip = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv_pw(F.relu(self.bn1(self.conv_dw(x)))))
        return x + y if self.skip else y


class ContextNet(nn.Module):
    def __init__(self, channels: int, depth: int, in_ch: int = 3):
        super().__init__()
        # official group_size settings: the 1x1 projection is depthwise, the 3x3 convs are dense
        self.proj_1x1 = ConvBNAct(in_ch, channels, 1, groups=in_ch)
        self.spp_dw = nn.ModuleList([ConvBNAct(channels, channels, 3)] +
                                    [ConvBNAct(channels, channels, 3, stride=2) for _ in range(depth)])

    def forward(self, pixels: torch.Tensor, levels: list | None = None) -> torch.Tensor:
        x = self.spp_dw[0](self.proj_1x1(pixels))
        outs = [x]
        for stage in self.spp_dw[1:]:
            outs.append(stage(outs[-1]))
        if levels is not None:
            levels.extend(outs)
        size = outs[-1].shape[-2:]
        return sum(F.adaptive_avg_pool2d(o, size) for o in outs)


class LowRank(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, rank: int):
        super().__init__()
        self.loramlp = nn.Sequential(nn.Linear(in_dim, rank, bias=False), nn.Linear(rank, out_dim, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.loramlp(x)


class LowRankCrossAttention(nn.Module):
    def __init__(self, dim: int, context_dim: int, heads: int, dim_head: int, rank: int):
        super().__init__()
        inner = heads * dim_head
        self.heads, self.scale = heads, dim_head ** -0.5
        self.to_q = LowRank(dim, inner, rank)
        self.to_k = LowRank(context_dim, inner, rank)
        self.to_v = LowRank(context_dim, inner, rank)
        self.to_out = LowRank(inner, dim, rank)
        nn.init.zeros_(self.to_out.loramlp[1].weight)  # identity at the start

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = self.to_q(x), self.to_k(context), self.to_v(context)
        q, k, v = (t.reshape(b, t.shape[1], self.heads, -1).transpose(1, 2) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        return self.to_out(out.transpose(1, 2).reshape(b, n, -1))


class AdaptingModule(nn.Module):
    def __init__(self, dim: int, context_dim: int, heads: int, dim_head: int, rank: int):
        super().__init__()
        self.attn = LowRankCrossAttention(dim, context_dim, heads, dim_head, rank)

    def forward(self, patches: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """The residual update (not yet added) for B x hw x C patch tokens."""
        return self.attn(patches, context)


class CloudAdapter(nn.Module):
    """The trainable part: the context branch (full variant only) and one adapting module per
    adapted block (``net`` is indexed in block order)."""

    def __init__(self, dim: int, config: CloudAdapterConfig):
        super().__init__()
        ctx = config.context_dim if config.variant == "full" else dim
        self.cnn = ContextNet(config.context_dim, config.context_depth) if config.variant == "full" else None
        self.net = nn.ModuleList(AdaptingModule(dim, ctx, config.heads, config.dim_head, config.rank)
                                 for _ in config.adapted)


class CloudAdapterNet(nn.Module):
    def __init__(self, backbone: FrozenDino, config: CloudAdapterConfig):
        super().__init__()
        if config.depth != backbone.depth:
            raise ValueError(f"config says {config.depth} blocks, the backbone has {backbone.depth}")
        self.backbone = backbone
        self.config = config
        self.adapter = CloudAdapter(backbone.dim, config) if config.uses_adapter else None
        extra = config.context_dim if self.concatenates_context else 0
        self.head = FPNHead(backbone.dim + extra, config.n_classes, config.head_width)

    @property
    def concatenates_context(self) -> bool:
        return self.config.has_cat and self.config.variant == "full"

    def head_context(self, levels: list[torch.Tensor]) -> list[torch.Tensor]:
        """Per pyramid level (strides patch/4, patch/2, patch, 2*patch), the finest context stage
        no coarser than the level, then the coarsest for whatever is left."""
        stages = levels[1:]  # after the stem, strides 2, 4, 8, ...
        picks = [min(i, len(stages) - 1) for i in range(4)]
        return [stages[i] for i in picks]

    def context(self, image: torch.Tensor, levels: list | None = None) -> torch.Tensor | None:
        if self.adapter is None or self.adapter.cnn is None:
            return None
        return self.adapter.cnn(self.backbone.normalise(image), levels)

    def forward(self, image: torch.Tensor, strength: float = 1.0, depths: dict | None = None,
                embedded: torch.Tensor | None = None, probes: dict | None = None) -> torch.Tensor:
        """Logits B x classes x H x W. `strength` scales every adapter residual; `depths` maps
        shallow/middle/deep to on/off (default all on)."""
        cfg = self.config
        grid = (image.shape[-2] // self.backbone.patch, image.shape[-1] // self.backbone.patch)
        hook, extra = None, None
        if self.concatenates_context and strength == 0:
            ctx = self.config.context_dim
            extra = [image.new_zeros(image.shape[0], ctx, 1, 1)] * 4
        if self.adapter is not None and strength != 0:
            levels: list | None = [] if probes is not None or self.concatenates_context else None
            ctx_map = self.context(image, levels)
            if probes is not None:
                probes["context"] = ctx_map
                probes["levels"] = levels
            if self.concatenates_context:
                extra = [strength * level for level in self.head_context(levels)]
            ctx_tokens = None
            if ctx_map is not None:
                ctx_tokens = F.interpolate(ctx_map, size=grid, mode="bilinear", align_corners=False).flatten(2).transpose(1, 2)
            slot = {block: i for i, block in enumerate(cfg.adapted)}
            on = {g: True for g in DEPTH_GROUPS} | dict(depths or {})

            def hook(index: int, tokens: torch.Tensor) -> torch.Tensor:
                if index not in slot or not on[depth_group(index, cfg.depth)]:
                    return tokens
                cls, patches = tokens[:, :1], tokens[:, 1:]
                context = patches if ctx_tokens is None else ctx_tokens
                update = self.adapter.net[slot[index]](patches, context)
                if probes is not None:
                    probes.setdefault("update_norm", {})[index] = float(update.norm(dim=-1).mean() / patches.norm(dim=-1).mean())
                return torch.cat([cls, patches + strength * update], 1)

        maps = self.backbone(image, cfg.taps, hook, embedded)
        return self.head(maps, image.shape[-2:], extra)

    def adapter_state_dict(self) -> dict:
        """Everything trained: adapter and head (the frozen backbone is not saved)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("backbone.")}

    def trainable(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if not n.startswith("backbone.")]


def build(backbone: FrozenDino, variant: str = "full", **overrides) -> CloudAdapterNet:
    depth = backbone.depth
    settings = dict(variant=variant, depth=depth, adapted=tuple(range(depth)), taps=default_taps(depth))
    return CloudAdapterNet(backbone, CloudAdapterConfig(**(settings | overrides)))
