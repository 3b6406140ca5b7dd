"""GLARE-style continual self-supervised adaptation of a frozen DINOv2 (re-implemented from the
paper's description; no official code was found).

- `UniAdapter`: a bottleneck after a ViT block, down-projection d -> r shared by every modality,
  one up-projection r -> d per modality, GELU between, and a scaled residual. The up-projections
  start at zero, so a fresh adapter leaves the frozen token stream exactly as it was.
- `GlareEncoder`: the frozen backbone with one `UniAdapter` after each adapted block. The blocks
  below the first adapted one are a frozen *prefix*: its output does not depend on the adapter, so
  training caches it and inference computes it once for the adapted and the frozen feature maps.
- Self-supervised losses against an EMA teacher (`ssl_losses`), all InfoNCE so that nothing can
  collapse to a constant:
  global   - the student's [CLS] of one view finds the teacher's [CLS] of another view of the same
             tile among the batch;
  local    - each student patch (views differ by per-patch photometric jitter and a dihedral
             turn, undone on the patch grid) finds the teacher's patch at the same ground position
             among the tile's patches;
  regional - attention-guided regions: each head of the teacher's last block gives a [CLS]->patch
             attention map; region features are the maps' weighted sums of student and teacher
             patch embeddings, and each student region finds its teacher region among all the
             batch's regions (the paper leaves the region construction open; this is the choice).
- `LinearHead`: a 1x1 linear map from the final-LayerNorm patch features to the land-cover
  classes, upsampled bilinearly to pixels (linear, so it equals the linear map of upsampled
  features, which is how it is fitted on labelled pixels).
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from adapters.dense.backbone import FrozenDino, _call

LOSS_SETS = ("global", "global+local", "global+local+regional")
N_CLASSES = 7


@dataclass(frozen=True)
class GlareConfig:
    depth: int = 12
    adapted: tuple[int, ...] = tuple(range(6, 12))  # blocks followed by a UniAdapter
    rank: int = 32
    scale: float = 0.5
    modalities: tuple[str, ...] = ("rgb",)
    proj_dim: int = 128  # SSL projection (training only)
    loss_set: str = "global+local+regional"
    image_size: int = 112
    n_classes: int = N_CLASSES
    backbone: dict = field(default_factory=lambda: {"kind": "dinov2_small"})

    @property
    def first_adapted(self) -> int:
        return min(self.adapted)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "GlareConfig":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        for k in ("adapted", "modalities"):
            if k in known:
                known[k] = tuple(known[k])
        return cls(**known)


class UniAdapter(nn.Module):
    def __init__(self, dim: int, rank: int, modalities: tuple[str, ...], scale: float):
        super().__init__()
        self.scale = scale
        self.down = nn.Linear(dim, rank)
        self.up = nn.ModuleDict({m: nn.Linear(rank, dim) for m in modalities})
        for up in self.up.values():
            nn.init.zeros_(up.weight)
            nn.init.zeros_(up.bias)

    def forward(self, tokens: torch.Tensor, modality: str = "rgb") -> torch.Tensor:
        return tokens + self.scale * self.up[modality](F.gelu(self.down(tokens)))


class GlareAdapter(nn.Module):
    """One UniAdapter per adapted block, in block order."""

    def __init__(self, dim: int, config: GlareConfig):
        super().__init__()
        self.blocks = nn.ModuleList(UniAdapter(dim, config.rank, config.modalities, config.scale)
                                    for _ in config.adapted)


class GlareEncoder(nn.Module):
    def __init__(self, backbone: FrozenDino, config: GlareConfig):
        super().__init__()
        if config.depth != backbone.depth:
            raise ValueError(f"config says {config.depth} blocks, the backbone has {backbone.depth}")
        self.backbone = backbone
        self.config = config
        self.adapter = GlareAdapter(backbone.dim, config)

    @property
    def patch(self) -> int:
        return self.backbone.patch

    def prefix(self, image: torch.Tensor) -> torch.Tensor:
        """Tokens after the frozen blocks below the first adapted one (B x 1+hw x C)."""
        tokens = self.backbone.embed(image)
        for layer in self.backbone.model.encoder.layer[:self.config.first_adapted]:
            tokens = _call(layer, tokens)
        return tokens

    def suffix(self, tokens: torch.Tensor, adapter_on: bool = True, modality: str = "rgb",
               adapter: GlareAdapter | None = None, last_input: list | None = None) -> torch.Tensor:
        """The remaining blocks (each adapted one followed by its UniAdapter when on) and the final
        LayerNorm. `adapter` swaps in another adapter (the EMA teacher's); `last_input` receives
        the tokens entering the last block (for its attention maps)."""
        adapter = self.adapter if adapter is None else adapter
        slot = {block: i for i, block in enumerate(self.config.adapted)}
        layers = self.backbone.model.encoder.layer
        for index in range(self.config.first_adapted, len(layers)):
            if last_input is not None and index == len(layers) - 1:
                last_input.append(tokens)
            tokens = _call(layers[index], tokens)
            if adapter_on and index in slot:
                tokens = adapter.blocks[slot[index]](tokens, modality)
        return self.backbone.model.layernorm(tokens)

    def forward(self, image: torch.Tensor, adapter_on: bool = True) -> torch.Tensor:
        """Normalised tokens B x 1+hw x C."""
        return self.suffix(self.prefix(image), adapter_on)

    def feature_map(self, image: torch.Tensor, adapter_on: bool = True) -> torch.Tensor:
        """Patch features B x C x h x w."""
        return patch_map(self(image, adapter_on), image.shape[-2:], self.patch)

    def last_attention(self, tokens_in: torch.Tensor) -> torch.Tensor:
        """[CLS] -> patch attention of every head of the last block, B x heads x hw (rows sum to 1)."""
        layer = self.backbone.model.encoder.layer[-1]
        attn = layer.attention
        x = layer.norm1(tokens_in)
        heads = self.backbone.model.config.num_attention_heads
        b, n, c = x.shape
        q = attn.q_proj(x[:, :1]).reshape(b, 1, heads, -1).transpose(1, 2)
        k = attn.k_proj(x[:, 1:]).reshape(b, n - 1, heads, -1).transpose(1, 2)
        logits = (q @ k.transpose(-1, -2)).squeeze(2) / (c // heads) ** 0.5
        return logits.softmax(-1)

    def adapter_state_dict(self) -> dict:
        return {k: v for k, v in self.state_dict().items() if k.startswith("adapter.")}

    def trainable(self) -> list[nn.Parameter]:
        return list(self.adapter.parameters())


def patch_map(tokens: torch.Tensor, size, patch: int) -> torch.Tensor:
    grid = (size[0] // patch, size[1] // patch)
    return tokens[:, 1:].transpose(1, 2).reshape(tokens.shape[0], -1, *grid)


class LinearHead(nn.Module):
    def __init__(self, dim: int, n_classes: int = N_CLASSES):
        super().__init__()
        self.linear = nn.Linear(dim, n_classes)

    def logits_map(self, features: torch.Tensor, size) -> torch.Tensor:
        """B x C x h x w features -> B x classes x H x W logits."""
        logits = torch.einsum("bchw,kc->bkhw", features, self.linear.weight) + self.linear.bias.view(1, -1, 1, 1)
        return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)

    def forward(self, pixel_features: torch.Tensor) -> torch.Tensor:
        return self.linear(pixel_features)


# --- self-supervised training -------------------------------------------------------------------

class Projector(nn.Module):
    def __init__(self, dim: int, out: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, 2 * out), nn.GELU(), nn.Linear(2 * out, out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(x), dim=-1)


class Student(nn.Module):
    """What the optimiser trains: the encoder's adapter and the projector."""

    def __init__(self, encoder: GlareEncoder):
        super().__init__()
        self.adapter = encoder.adapter
        self.projector = Projector(encoder.backbone.dim, encoder.config.proj_dim)


class Teacher(nn.Module):
    """An EMA copy of the student's adapter and projector; never trained by gradients."""

    def __init__(self, student: Student):
        super().__init__()
        self.adapter = copy.deepcopy(student.adapter).requires_grad_(False)
        self.projector = copy.deepcopy(student.projector).requires_grad_(False)

    @torch.no_grad()
    def update(self, student: Student, momentum: float) -> None:
        for mine, theirs in ((self.adapter, student.adapter), (self.projector, student.projector)):
            for t, s in zip(mine.parameters(), theirs.parameters()):
                t.mul_(momentum).add_(s.detach(), alpha=1 - momentum)


def undo_dihedral(grid: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """B x h x w x ... maps seen through dihedral transform `codes` (0..7: k = code % 4 quarter
    turns, then a left-right flip when code >= 4) back into the tile's own frame."""
    out = []
    for g, code in zip(grid, codes.tolist()):
        if code >= 4:
            g = torch.flip(g, (1,))
        out.append(torch.rot90(g, -(code % 4), (0, 1)))
    return torch.stack(out)


def info_nce(query: torch.Tensor, keys: torch.Tensor, temperature: float) -> torch.Tensor:
    """Row i of `query` should pick row i of `keys` (both unit vectors, ... x N x D)."""
    logits = query @ keys.transpose(-1, -2) / temperature
    target = torch.arange(logits.shape[-1]).expand(logits.shape[:-1])
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))


def info_nce_other_tiles(query: torch.Tensor, keys: torch.Tensor, temperature: float) -> torch.Tensor:
    """Patch (b, i) of `query` should pick patch (b, i) of `keys` (both B x N x D unit vectors) among
    the patches of the OTHER tiles: neighbours in its own tile, often the same land cover, are never
    pushed away."""
    b, n, _ = query.shape
    logits = query.reshape(b * n, -1) @ keys.reshape(b * n, -1).T / temperature
    tile = torch.arange(b).repeat_interleave(n)
    same_tile = (tile[:, None] == tile[None, :]) & ~torch.eye(b * n, dtype=torch.bool)
    return F.cross_entropy(logits.masked_fill(same_tile, float("-inf")), torch.arange(b * n))


LOCAL_NEGATIVES = ("tile", "other-tiles")


def ssl_losses(encoder: GlareEncoder, student: Student, teacher: Teacher, prefix_a: torch.Tensor,
               prefix_b: torch.Tensor, codes_a: torch.Tensor, codes_b: torch.Tensor, loss_set: str,
               temperature: float = 0.1, local_negatives: str = "tile") -> dict:
    """The losses of `loss_set` for a batch of two views (cached prefix tokens B x 1+hw x C and
    their dihedral codes) of the same tiles: the student sees view a, the teacher view b.
    `local_negatives`: the local loss's negatives are the other patches of the same tile ("tile")
    or the patches of the other tiles in the batch ("other-tiles")."""
    if local_negatives not in LOCAL_NEGATIVES:
        raise ValueError(f"local_negatives must be one of {LOCAL_NEGATIVES}")
    terms = set(loss_set.split("+"))
    if not terms <= {"global", "local", "regional"}:
        raise ValueError(f"unknown loss terms in '{loss_set}'")
    b, n, c = prefix_a.shape
    side = int(round((n - 1) ** 0.5))
    with torch.no_grad():
        last_in: list = []
        t_tokens = encoder.suffix(prefix_b, adapter=teacher.adapter, last_input=last_in)
        t_proj = teacher.projector(t_tokens)
    s_tokens = encoder.suffix(prefix_a, adapter=student.adapter)
    s_proj = student.projector(s_tokens)
    out = {}
    if "global" in terms:
        out["global"] = info_nce(s_proj[:, 0], t_proj[:, 0], temperature)
    if terms & {"local", "regional"}:
        s_patch = undo_dihedral(s_proj[:, 1:].reshape(b, side, side, -1), codes_a).reshape(b, side * side, -1)
        t_patch = undo_dihedral(t_proj[:, 1:].reshape(b, side, side, -1), codes_b).reshape(b, side * side, -1)
        if "local" in terms:
            local = info_nce if local_negatives == "tile" else info_nce_other_tiles
            out["local"] = local(s_patch, t_patch, temperature)
        if "regional" in terms:
            with torch.no_grad():
                attn = encoder.last_attention(last_in[0])  # B x heads x hw, teacher view's frame
                attn = undo_dihedral(attn.transpose(1, 2).reshape(b, side, side, -1), codes_b)
                attn = attn.reshape(b, side * side, -1).transpose(1, 2)
            s_region = F.normalize(attn @ s_patch, dim=-1).reshape(-1, s_patch.shape[-1])
            t_region = F.normalize(attn @ t_patch, dim=-1).reshape(-1, t_patch.shape[-1])
            out["regional"] = info_nce(s_region, t_region, temperature)
    out["total"] = sum(out.values())
    return out


def build(backbone: FrozenDino, **overrides) -> GlareEncoder:
    depth = backbone.depth
    settings = dict(depth=depth, adapted=tuple(range(depth // 2, depth)))
    return GlareEncoder(backbone, GlareConfig(**(settings | overrides)))
