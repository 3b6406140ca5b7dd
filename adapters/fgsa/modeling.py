"""FGSA: frequency-guided spatial adaptation of a frozen ViT for camouflaged-object detection.

After "Frequency-Guided Spatial Adaptation for Camouflaged Object Detection" (2024). The frozen
model is a plain ViT whose blocks work on B x h x w x C token maps (the bundled TinyViT below, or
SAM's image encoder through `SamBackbone` below). The adapter follows the paper's ViT-Adapter
framework:

- a conv branch on the raw image gives maps at 1/4, 1/8, 1/16 and 1/32; FGSAttn sits on the
  higher-resolution ones, where texture frequencies survive;
- an injector (cross-attention, output gated by a zero-initialised per-channel scale) writes the
  conv maps into the frozen token stream before the frozen blocks run;
- after each group of frozen blocks, FGSAttn on the token map (zero-gated), then an extractor
  writes the tokens back into the conv maps and an injector writes the maps into the tokens;
- a light segmentation head on the resulting 4-level pyramid.

Every gate starts at zero, so an untrained adapter leaves the frozen token stream exactly as the
frozen model computes it. The cross-attention is a small pure-torch multi-scale deformable
attention (bilinear sampling with learned offsets), standing in for the CUDA op of the paper.
"""
from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

# --- frequency rings ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _ring_labels_cpu(height: int, width: int, interval: int) -> torch.Tensor:
    cy, cx = height // 2, width // 2
    radius = min(cy, cx)
    yy = torch.arange(height, dtype=torch.float64).sub(cy).view(-1, 1)
    xx = torch.arange(width, dtype=torch.float64).sub(cx).view(1, -1)
    r = torch.sqrt(yy * yy + xx * xx).floor().clamp(max=radius)
    return torch.ceil(r / interval).long()


def ring_labels(height: int, width: int, interval: int = 1, device: torch.device | str | None = None) -> torch.Tensor:
    """Ring index of every bin of a *centred* (fftshifted) spectrum: floor of the distance to the
    centre, clamped at the inscribed radius R (corners join the outermost ring), then grouped by
    `interval`. Ring 0 is the DC bin; there are ceil(R / interval) + 1 rings."""
    labels = _ring_labels_cpu(int(height), int(width), int(interval))
    return labels.to(device) if device is not None else labels


def ring_count(height: int, width: int, interval: int = 1) -> int:
    return math.ceil(min(height // 2, width // 2) / interval) + 1


def band_of_rings(n_rings: int, n_bands: int) -> list[list[int]]:
    """Rings grouped into user-facing bands: band 0 is DC alone, the rest split the radius
    (normalised to Nyquist) into equal parts, so a band means the same frequencies at every site."""
    bands: list[list[int]] = [[0]] + [[] for _ in range(n_bands - 1)]
    radius = max(n_rings - 1, 1)
    for ring in range(1, n_rings):
        index = 1 + min(int((ring - 1) / radius * (n_bands - 1)), n_bands - 2)
        bands[index].append(ring)
    return bands


def ring_gains_from_bands(band_scales: Sequence[float], n_rings: int) -> torch.Tensor:
    """Per-ring user gain from per-band scales (0 suppresses, 1 keeps the learned gain, >1 boosts)."""
    gains = torch.ones(n_rings)
    for scale, rings in zip(band_scales, band_of_rings(n_rings, len(band_scales))):
        gains[rings] = float(scale)
    return gains


ATTENTION_MODES = ("minmax", "scaled", "centred", "filter")


class FGSAttn(nn.Module):
    """Frequency-guided spatial attention.

    Per channel group: pool the channels (mean, optionally + max) into one map, take its centred
    FFT, average the amplitude over each ring, turn the ring means into ring gains (Linear +
    LeakyReLU across rings), rescale the amplitude ring by ring (times an optional per-ring user
    gain) and invert the FFT with the original phase into a spatial attention map. Output:
    ``x + gamma * (x * attention)`` with ``gamma`` (per channel) starting at zero, so an untrained
    FGSAttn is the identity.

    `mode` sets how the inverse FFT becomes the attention:
    - ``centred`` (default): mean removed, divided by the pooled map's standard deviation. Not
      renormalised after a user edit, so a suppressed ring's share of the attention is really gone;
    - ``scaled``: as ``centred`` but the mean (DC ring) kept;
    - ``minmax``: min-max normalised to [0, 1] (an edit is stretched back to the full range);
    - ``filter``: the ring gains are applied to every channel's own spectrum and the filtered
      features (divided by the pooled map's spread) are added instead of ``x * attention``.
    `ring_init="ones"` starts every ring gain at 1 (all rings learn from the first step); "linear"
    keeps nn.Linear's default init, which leaves about half the rings on the LeakyReLU's flat side.
    """

    def __init__(self, dim: int, size: int, groups: int = 1, interval: int = 1, pool_types: Sequence[str] = ("avg",), init_gate: float = 0.0,
                 mode: str = "centred", ring_init: str = "ones"):
        super().__init__()
        if dim % groups:
            raise ValueError(f"dim {dim} is not divisible by groups {groups}")
        if mode not in ATTENTION_MODES:
            raise ValueError(f"mode must be one of {ATTENTION_MODES}")
        self.dim, self.size, self.groups, self.interval, self.mode = dim, size, groups, interval, mode
        self.pool_types = tuple(pool_types)
        self.n_rings = ring_count(size, size, interval)
        self.gamma = nn.Parameter(torch.full((dim,), float(init_gate)))
        # one unshared ring-gain layer per group, as the paper; stored as a batched weight
        self.ring_weight = nn.Parameter(torch.empty(groups, self.n_rings, self.n_rings))
        self.ring_bias = nn.Parameter(torch.zeros(groups, self.n_rings))
        for g in range(groups):
            layer = nn.Linear(self.n_rings, self.n_rings)
            self.ring_weight.data[g].copy_(layer.weight.data)
            self.ring_bias.data[g].copy_(layer.bias.data)
        if ring_init == "ones":
            # every ring starts at gain 1 (the attention is the pooled map itself): no ring starts
            # on the flat side of the LeakyReLU, where it would barely learn
            nn.init.zeros_(self.ring_weight)
            nn.init.ones_(self.ring_bias)
        elif ring_init != "linear":
            raise ValueError("ring_init must be 'linear' or 'ones'")

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """B x G x H x W channel-pooled maps."""
        b, c, h, w = x.shape
        xg = x.view(b, self.groups, c // self.groups, h, w)
        out = 0
        for kind in self.pool_types:
            out = out + (xg.mean(2) if kind == "avg" else xg.amax(2))
        return out

    def analyse(self, x: torch.Tensor, user_gain: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Every intermediate of the attention (for the spectrum panel and the tests)."""
        b, c, h, w = x.shape
        labels = ring_labels(h, w, self.interval, x.device)
        n_rings = int(labels.max()) + 1
        if n_rings != self.n_rings:
            raise ValueError(f"FGSAttn was built for {self.n_rings} rings ({self.size}^2 maps) but got a {h}x{w} map ({n_rings} rings)")
        pooled = self.pooled(x)
        # 'ortho' keeps ring means comparable across map sizes
        # FFTs in at least float32 (half-precision FFTs are limited to powers of two on CUDA)
        pooled_fft = pooled if pooled.dtype in (torch.float32, torch.float64) else pooled.float()
        spectrum = torch.fft.fftshift(torch.fft.fft2(pooled_fft, norm="ortho"), dim=(-2, -1))
        amplitude, phase = spectrum.abs(), spectrum.angle()
        flat_labels = labels.flatten()
        members = F.one_hot(flat_labels, n_rings).to(amplitude.dtype)  # HW x rings
        ring_mean = amplitude.flatten(-2) @ (members / members.sum(0, keepdim=True))  # B x G x rings
        learned = F.leaky_relu(torch.einsum("bgr,gsr->bgs", ring_mean, self.ring_weight) + self.ring_bias)
        gains = learned if user_gain is None else learned * user_gain.to(learned).view(*([1] * (learned.dim() - user_gain.dim())), *user_gain.shape)
        scaled = amplitude * gains[..., flat_labels].view(b, self.groups, h, w)
        filtered = torch.fft.ifft2(torch.fft.ifftshift(torch.polar(scaled, phase), dim=(-2, -1)), norm="ortho").real
        if self.mode == "minmax":
            low = filtered.amin(dim=(-2, -1), keepdim=True)
            high = filtered.amax(dim=(-2, -1), keepdim=True)
            attention = (filtered - low) / (high - low).clamp_min(1e-6)
        else:
            # scaled by the *input's* spread, never by the filtered map's own: suppressing a ring
            # removes its share of the attention instead of being renormalised away
            if self.mode == "centred":  # like min-max, no global offset (the DC ring is inert)
                filtered = filtered - filtered.mean(dim=(-2, -1), keepdim=True)
            attention = filtered / pooled_fft.std(dim=(-2, -1), keepdim=True).clamp_min(1e-6)
        return dict(pooled=pooled, amplitude=amplitude, labels=labels, ring_mean=ring_mean, learned_gain=learned, gain=gains,
                    ring_gain_map=gains[..., flat_labels].view(b, self.groups, h, w), attention=attention.to(x.dtype))

    def forward(self, x: torch.Tensor, user_gain: torch.Tensor | None = None) -> torch.Tensor:
        b, c, h, w = x.shape
        info = self.analyse(x, user_gain)
        xg = x.view(b, self.groups, c // self.groups, h, w)
        if self.mode == "filter":
            # the same ring gains applied to every channel's own spectrum (their channel mean is
            # exactly the filtered pooled map shown as the attention)
            spectrum = torch.fft.fft2(xg if xg.dtype in (torch.float32, torch.float64) else xg.float(), norm="ortho")
            gain_map = torch.fft.ifftshift(info["ring_gain_map"], dim=(-2, -1)).unsqueeze(2)
            scale = info["pooled"].to(spectrum.real.dtype).std(dim=(-2, -1), keepdim=True).clamp_min(1e-6).unsqueeze(2)
            weighted = (torch.fft.ifft2(spectrum * gain_map, norm="ortho").real / scale).to(x.dtype)
        else:
            weighted = xg * info["attention"].unsqueeze(2)
        return x + self.gamma.view(1, c, 1, 1) * weighted.view(b, c, h, w)


# --- multi-scale deformable cross-attention (pure torch) ----------------------------------------


class DeformableCrossAttention(nn.Module):
    """Each query reads `points` bilinear samples per head and level around its reference point;
    offsets and weights come from the query (both start at a fixed pattern / uniform)."""

    def __init__(self, dim: int, levels: int, heads: int = 2, points: int = 2, inner: int = 32):
        super().__init__()
        if inner % heads:
            raise ValueError("inner must be divisible by heads")
        self.heads, self.levels, self.points, self.inner = heads, levels, points, inner
        self.value_proj = nn.Linear(dim, inner)
        self.offsets = nn.Linear(dim, heads * levels * points * 2)
        self.weights = nn.Linear(dim, heads * levels * points)
        self.out_proj = nn.Linear(inner, dim)
        nn.init.zeros_(self.offsets.weight)
        nn.init.zeros_(self.weights.weight)
        nn.init.zeros_(self.weights.bias)
        angles = torch.arange(heads, dtype=torch.float32) * (2 * math.pi / heads)
        start = torch.stack([angles.cos(), angles.sin()], -1)
        start = start / start.abs().max(-1, keepdim=True).values
        grid = start.view(heads, 1, 1, 2).repeat(1, levels, points, 1)
        grid = grid * torch.arange(1, points + 1, dtype=torch.float32).view(1, 1, -1, 1)
        with torch.no_grad():
            self.offsets.bias.copy_(grid.flatten())

    def forward(self, query: torch.Tensor, reference: torch.Tensor, value: torch.Tensor, shapes: Sequence[tuple[int, int]]) -> torch.Tensor:
        """query B x Nq x D; reference Nq x 2 (x, y in [0, 1]); value B x Nv x D (levels concatenated)."""
        b, nq, _ = query.shape
        h, lv, p, dh = self.heads, self.levels, self.points, self.inner // self.heads
        v = self.value_proj(value)
        offsets = self.offsets(query).view(b, nq, h, lv, p, 2)
        weights = self.weights(query).view(b, nq, h, lv * p).softmax(-1).view(b, nq, h, lv, p)
        out = query.new_zeros(b * h, dh, nq, p)
        start = 0
        sampled = []
        for level, (hl, wl) in enumerate(shapes):
            v_level = v[:, start:start + hl * wl].view(b, hl, wl, h, dh).permute(0, 3, 4, 1, 2).reshape(b * h, dh, hl, wl)
            start += hl * wl
            norm = torch.tensor([wl, hl], dtype=query.dtype, device=query.device)
            loc = reference.view(1, nq, 1, 1, 2) + offsets[:, :, :, level] / norm  # B x Nq x h x p x 2
            grid = (2 * loc - 1).permute(0, 2, 1, 3, 4).reshape(b * h, nq, p, 2)
            sampled.append(F.grid_sample(v_level, grid, mode="bilinear", padding_mode="zeros", align_corners=False))
        stacked = torch.stack(sampled, -1)  # (B h) x dh x Nq x p x L
        w = weights.permute(0, 2, 1, 4, 3).reshape(b * h, 1, nq, p, lv)
        out = (stacked * w).sum((-1, -2)).view(b, h * dh, nq).transpose(1, 2)
        return self.out_proj(out)


def reference_points(shapes: Sequence[tuple[int, int]], device=None) -> torch.Tensor:
    """Pixel centres of every level, normalised to [0, 1], as (x, y); levels concatenated."""
    refs = []
    for hl, wl in shapes:
        y, x = torch.meshgrid(
            (torch.arange(hl, dtype=torch.float32, device=device) + 0.5) / hl,
            (torch.arange(wl, dtype=torch.float32, device=device) + 0.5) / wl,
            indexing="ij",
        )
        refs.append(torch.stack([x.flatten(), y.flatten()], -1))
    return torch.cat(refs, 0)


class Injector(nn.Module):
    """Conv-branch maps -> frozen token stream, gated by a per-channel scale starting at zero."""

    def __init__(self, dim: int, levels: int, heads: int, points: int, inner: int):
        super().__init__()
        self.query_norm, self.feat_norm = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = DeformableCrossAttention(dim, levels, heads, points, inner)
        self.gamma = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor, ref: torch.Tensor, c: torch.Tensor, shapes) -> torch.Tensor:
        return x + self.gamma * self.attn(self.query_norm(x), ref, self.feat_norm(c), shapes)


class ConvFFN(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
        self.dw = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)

    def forward(self, c: torch.Tensor, shapes) -> torch.Tensor:
        hidden = self.fc1(c)
        parts, start = [], 0
        for hl, wl in shapes:
            part = hidden[:, start:start + hl * wl]
            start += hl * wl
            b, n, d = part.shape
            parts.append(self.dw(part.transpose(1, 2).reshape(b, d, hl, wl)).flatten(2).transpose(1, 2))
        return self.fc2(F.gelu(torch.cat(parts, 1)))


class Extractor(nn.Module):
    """Token stream -> conv-branch maps (the conv maps are the adapter's own state)."""

    def __init__(self, dim: int, heads: int, points: int, inner: int, ffn_ratio: float):
        super().__init__()
        self.query_norm, self.feat_norm = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = DeformableCrossAttention(dim, 1, heads, points, inner)
        self.ffn_norm = nn.LayerNorm(dim)
        self.ffn = ConvFFN(dim, max(4, int(dim * ffn_ratio)))

    def forward(self, c: torch.Tensor, ref: torch.Tensor, x: torch.Tensor, x_shape, shapes) -> torch.Tensor:
        c = c + self.attn(self.query_norm(c), ref, self.feat_norm(x), [x_shape])
        return c + self.ffn(self.ffn_norm(c), shapes)


def _conv_bn(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ConvBranch(nn.Module):
    """Spatial prior from the raw image: c1..c4 at 1/4..1/32, FGSAttn on the chosen levels."""

    def __init__(self, planes: int, dim: int, image_size: int, fgsa_levels: Sequence[int], groups: int, pool_types, mode: str = "centred", ring_init: str = "ones"):
        super().__init__()
        widths = [planes, 2 * planes, 4 * planes, 4 * planes]
        self.stem = nn.Sequential(_conv_bn(3, planes, 2), _conv_bn(planes, planes, 1), nn.MaxPool2d(3, 2, 1))
        self.downs = nn.ModuleList([_conv_bn(widths[i], widths[i + 1], 2) for i in range(3)])
        self.attn = nn.ModuleDict({
            f"c{level}": FGSAttn(widths[level - 1], image_size // (2 ** (level + 1)), groups=groups, pool_types=pool_types, mode=mode, ring_init=ring_init)
            for level in fgsa_levels
        })
        self.proj = nn.ModuleList([nn.Conv2d(w, dim, 1) for w in widths])
        self.level_embed = nn.Parameter(torch.randn(3, dim) * 0.02)

    def forward(self, image: torch.Tensor, gains: Mapping[str, torch.Tensor] | None = None, probes: dict | None = None):
        # FGSAttn runs inside the chain, so an edited c1 also changes c2..c4, as in the paper
        feats = [self.stem(image)]
        for level in range(1, 5):
            name = f"c{level}"
            if name in self.attn:
                if probes is not None:
                    probes[name] = feats[-1]
                feats[-1] = self.attn[name](feats[-1], None if gains is None else gains.get(name))
            if level < 4:
                feats.append(self.downs[level - 1](feats[-1]))
        return [proj(f) for proj, f in zip(self.proj, feats)]


# --- segmentation head ---------------------------------------------------------------------------


class SegHead(nn.Module):
    """Light FPN-style head: 1x1 per level, sum at 1/4, one 3x3, one logit map, upsampled."""

    def __init__(self, dim: int, width: int = 24, levels: int = 4):
        super().__init__()
        self.lateral = nn.ModuleList([nn.Conv2d(dim, width, 1) for _ in range(levels)])
        self.fuse = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.GroupNorm(4, width), nn.ReLU(inplace=True))
        self.out = nn.Conv2d(width, 1, 1)

    def forward(self, pyramid: Sequence[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        top = pyramid[0].shape[-2:]
        fused = sum(F.interpolate(lat(p), size=top, mode="bilinear", align_corners=False) if p.shape[-2:] != top else lat(p)
                    for lat, p in zip(self.lateral, pyramid))
        return F.interpolate(self.out(self.fuse(fused)), size=size, mode="bilinear", align_corners=False)


# --- the bundled frozen model: a tiny plain ViT ----------------------------------------------------


class Block(nn.Module):
    """Pre-norm transformer block on B x h x w x C token maps (same layout as SAM's layers)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, int(dim * mlp_ratio)), nn.GELU(), nn.Linear(int(dim * mlp_ratio), dim))
        self.heads = heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        tokens = x.reshape(b, h * w, c)
        q, k, v = self.qkv(self.norm1(tokens)).view(b, h * w, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attn = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, h * w, c)
        tokens = tokens + self.proj(attn)
        tokens = tokens + self.mlp(self.norm2(tokens))
        return tokens.view(b, h, w, c)


@dataclass
class TinyViTConfig:
    image_size: int = 64
    patch: int = 8
    dim: int = 96
    depth: int = 4
    heads: int = 4
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.25, 0.25, 0.25)


class TinyViT(nn.Module):
    """The bundled frozen model's interface, shared with the SAM wrapper: `embed`, `layers`,
    `dim`, `patch`, `image_size`, `mean`/`std`."""

    def __init__(self, config: TinyViTConfig):
        super().__init__()
        self.config = config
        self.dim, self.patch, self.image_size = config.dim, config.patch, config.image_size
        self.mean, self.std = config.mean, config.std
        self.patch_embed = nn.Conv2d(3, config.dim, config.patch, config.patch)
        grid = config.image_size // config.patch
        self.pos_embed = nn.Parameter(torch.randn(1, grid, grid, config.dim) * 0.02)
        self.layers = nn.ModuleList([Block(config.dim, config.heads) for _ in range(config.depth)])

    def embed(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.patch_embed(pixels).permute(0, 2, 3, 1) + self.pos_embed

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.embed(pixels)
        for layer in self.layers:
            x = layer(x)
        return x


# --- the whole model ---------------------------------------------------------------------------

VARIANTS = ("head", "full", "conv", "fgsa")


@dataclass
class FGSAConfig:
    """`variant`: head = frozen backbone + head; full = everything trained; conv = conv branch and
    interactions without FGSAttn; fgsa = the full adapter."""

    variant: str = "fgsa"
    groups: tuple[tuple[int, ...], ...] = ((0, 1), (2, 3))  # frozen blocks run between interactions
    planes: int = 12
    fgsa_conv_levels: tuple[int, ...] = (1, 2)  # FGSAttn on c1 (1/4) and c2 (1/8)
    fgsa_tokens: bool = True  # FGSAttn on the token map after each group
    fgsa_groups: int = 1
    pool_types: tuple[str, ...] = ("avg",)
    fgsa_mode: str = "centred"  # how the filtered map acts on the features (FGSAttn's `mode`)
    ring_init: str = "ones"  # FGSAttn's ring-gain layer at the start: default Linear init or all gains 1
    heads: int = 2
    points: int = 2
    inner: int = 32
    ffn_ratio: float = 0.25
    head_width: int = 24

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}")
        self.groups = tuple(tuple(g) for g in self.groups)
        self.fgsa_conv_levels = tuple(self.fgsa_conv_levels)
        self.pool_types = tuple(self.pool_types)

    @property
    def uses_adapter(self) -> bool:
        return self.variant in ("conv", "fgsa")

    def to_dict(self) -> dict:
        return asdict(self)


class FGSANet(nn.Module):
    """Frozen backbone + (optional) FGSA adapter + head. `trainable_parameters()` is what the
    optimiser gets; the backbone's `requires_grad` is off unless the variant is `full`."""

    def __init__(self, backbone: nn.Module, config: FGSAConfig):
        super().__init__()
        self.backbone, self.config = backbone, config
        dim, size = backbone.dim, backbone.image_size
        self.token_grid = size // backbone.patch
        if config.uses_adapter:
            fgsa = config.variant == "fgsa"
            self.branch = ConvBranch(config.planes, dim, size, config.fgsa_conv_levels if fgsa else (), config.fgsa_groups, config.pool_types, config.fgsa_mode, config.ring_init)
            self.first_injector = Injector(dim, 3, config.heads, config.points, config.inner)
            self.token_attn = nn.ModuleList([
                FGSAttn(dim, self.token_grid, groups=config.fgsa_groups, pool_types=config.pool_types, mode=config.fgsa_mode, ring_init=config.ring_init) if fgsa and config.fgsa_tokens else nn.Identity()
                for _ in config.groups
            ])
            self.extractors = nn.ModuleList([Extractor(dim, config.heads, config.points, config.inner, config.ffn_ratio) for _ in config.groups])
            self.injectors = nn.ModuleList([Injector(dim, 3, config.heads, config.points, config.inner) for _ in config.groups[:-1]])
            self.norms = nn.ModuleList([nn.GroupNorm(1, dim) for _ in range(4)])
        self.head = SegHead(dim, config.head_width)
        for p in self.backbone.parameters():
            p.requires_grad_(config.variant == "full")

    # the backbone stays in eval mode (no dropout / batch statistics of its own ever change)
    def train(self, mode: bool = True):
        super().train(mode)
        if self.config.variant != "full":
            self.backbone.eval()
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def adapter_state_dict(self) -> dict[str, torch.Tensor]:
        """Everything that is not the frozen backbone (the backbone too for `full`)."""
        return {k: v for k, v in self.state_dict().items() if self.config.variant == "full" or not k.startswith("backbone.")}

    def site_names(self) -> list[str]:
        if self.config.variant != "fgsa":
            return []
        names = [f"c{level}" for level in self.config.fgsa_conv_levels]
        if self.config.fgsa_tokens:
            names += [f"x{i + 1}" for i in range(len(self.config.groups))]
        return names

    def site(self, name: str) -> FGSAttn:
        if name.startswith("c"):
            return self.branch.attn[name]
        return self.token_attn[int(name[1:]) - 1]

    def normalise(self, image: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.backbone.mean, device=image.device, dtype=image.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.backbone.std, device=image.device, dtype=image.dtype).view(1, 3, 1, 1)
        return (image - mean) / std

    def forward(self, image: torch.Tensor, gains: Mapping[str, torch.Tensor] | None = None, probes: dict | None = None,
                embedded: torch.Tensor | None = None) -> torch.Tensor:
        """`image`: B x 3 x S x S in [0, 1]. `gains`: per-site per-ring user gains. `probes`, when a
        dict, receives the input of each FGSAttn site and the frozen token stream. `embedded`: the
        frozen patch embedding of this image when the caller has it cached."""
        pixels = self.normalise(image)
        x = self.backbone.embed(pixels) if embedded is None else embedded
        b, gh, gw, dim = x.shape
        layers = self.backbone.layers
        if not self.config.uses_adapter:
            outs = []
            for group in self.config.groups:
                for i in group:
                    x = layers[i](x)
                outs.append(x.permute(0, 3, 1, 2))
            return self.head(self._pyramid_from_tokens(outs, image.shape[-1]), image.shape[-2:])

        c1, c2, c3, c4 = self.branch(pixels, gains, probes)
        shapes = [tuple(t.shape[-2:]) for t in (c2, c3, c4)]
        c = torch.cat([(t.flatten(2).transpose(1, 2) + self.branch.level_embed[i]) for i, t in enumerate((c2, c3, c4))], 1)
        x_ref = reference_points([(gh, gw)], x.device)
        c_ref = reference_points(shapes, x.device)
        x = self.first_injector(x.reshape(b, gh * gw, dim), x_ref, c, shapes).view(b, gh, gw, dim)
        outs = []
        for g, group in enumerate(self.config.groups):
            for i in group:
                x = layers[i](x)
            if probes is not None:
                probes[f"x{g + 1}"] = x.permute(0, 3, 1, 2)
            xm = self.token_attn[g](x.permute(0, 3, 1, 2), None if gains is None else gains.get(f"x{g + 1}")) \
                if isinstance(self.token_attn[g], FGSAttn) else x.permute(0, 3, 1, 2)
            x = xm.permute(0, 2, 3, 1)
            outs.append(xm)
            tokens = x.reshape(b, gh * gw, dim)
            c = self.extractors[g](c, c_ref, tokens, (gh, gw), shapes)
            if g < len(self.injectors):
                x = self.injectors[g](tokens, x_ref, c, shapes).view(b, gh, gw, dim)
        n2, n3 = shapes[0][0] * shapes[0][1], shapes[1][0] * shapes[1][1]
        maps = [c[:, :n2], c[:, n2:n2 + n3], c[:, n2 + n3:]]
        maps = [m.transpose(1, 2).reshape(b, dim, *s) for m, s in zip(maps, shapes)]
        c1 = c1 + F.interpolate(maps[0], size=c1.shape[-2:], mode="bilinear", align_corners=False)
        pyramid = [c1] + maps
        vit = self._pyramid_from_tokens(outs, image.shape[-1])
        pyramid = [norm(p + v) for norm, p, v in zip(self.norms, pyramid, vit)]
        return self.head(pyramid, image.shape[-2:])

    @staticmethod
    def _pyramid_from_tokens(outs: list[torch.Tensor], size: int) -> list[torch.Tensor]:
        """Group outputs resampled to 1/4 .. 1/32 (earlier groups feed the finer levels)."""
        pyramid = []
        for level in range(4):
            source = outs[min(level * len(outs) // 4, len(outs) - 1)]
            target = size // (4 * 2 ** level)
            pyramid.append(source if source.shape[-1] == target else F.interpolate(source, size=(target, target), mode="bilinear", align_corners=False))
        return pyramid


def frozen_tokens(backbone: nn.Module, image_normalised: torch.Tensor) -> list[torch.Tensor]:
    """The frozen model's own token stream after every block (reference for the identity test)."""
    x = backbone.embed(image_normalised)
    outs = []
    for layer in backbone.layers:
        x = layer(x)
        outs.append(x)
    return outs


# --- losses ------------------------------------------------------------------------------------


def structure_loss(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """BCE + soft IoU, the usual COD objective."""
    bce = F.binary_cross_entropy_with_logits(logits, mask)
    prob = logits.sigmoid()
    inter = (prob * mask).sum((-1, -2))
    union = (prob + mask).sum((-1, -2)) - inter
    return bce + (1 - (inter + 1) / (union + 1)).mean()


# --- the hub frozen model: SAM's ViT image encoder --------------------------------------------
# The paper froze a Uni-Perceiver ViT-L; SAM's encoder (transformers, `facebook/sam-vit-base`) is a
# plain ViT of the same family (B x H x W x C token maps, global attention every few blocks), so the
# adapter drives its patch embedding and blocks directly.

SAM_ID = "facebook/sam-vit-base"
# SamProcessor's normalisation, for pixels in [0, 1]
SAM_MEAN = (0.485, 0.456, 0.406)
SAM_STD = (0.229, 0.224, 0.225)


class SamBackbone(nn.Module):
    """SAM's vision encoder seen through the interface FGSANet expects."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder
        config = encoder.config
        self.layers = encoder.layers
        self.dim = config.hidden_size
        self.patch = config.patch_size if isinstance(config.patch_size, int) else config.patch_size[0]
        self.image_size = config.image_size if isinstance(config.image_size, int) else config.image_size[0]
        self.mean, self.std = SAM_MEAN, SAM_STD

    def embed(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.encoder.patch_embed(pixels)
        return x + self.encoder.pos_embed if self.encoder.pos_embed is not None else x


def even_groups(n_layers: int, n_groups: int = 4) -> tuple[tuple[int, ...], ...]:
    """Blocks split into consecutive groups (the paper: 4 interactions over the ViT)."""
    n_groups = min(n_groups, n_layers)
    bounds = [round(i * n_layers / n_groups) for i in range(n_groups + 1)]
    return tuple(tuple(range(bounds[i], bounds[i + 1])) for i in range(n_groups))


def sam_fgsa_config(n_layers: int, dim: int, **overrides) -> FGSAConfig:
    """Adapter sizes for a SAM-sized backbone (the bundled defaults are for a 96-wide TinyViT)."""
    wide = dim >= 256
    settings = dict(
        variant="fgsa", groups=even_groups(n_layers), planes=64 if wide else 8, heads=6 if wide else 2,
        points=4 if wide else 2, inner=dim // 4 if wide else 16, head_width=64 if wide else 8,
    )
    return FGSAConfig(**(settings | overrides))
