"""ViSpec (Kang et al., 2025): vision-aware speculative decoding for a vision-language model.

The draft is EAGLE's: one decoder layer over ``fc([embedding of token t+1 ; target feature at t])``
that predicts the target's next feature, read out by the target's own (frozen) LM head, here its
rows for a trimmed vocabulary. ViSpec adds an image adaptor: a few learnable queries attend over
the image tokens' embeddings and compress them; all but the last take the image's place in the
draft's sequence, and the last (a global image vector) is fused into every later draft input
through ``img_fc`` (identity on the feature half, zero on the image half at the start, so a fresh
adaptor leaves the draft a text-only one). The text-only draft (the EAGLE baseline) is the same
module without the adaptor: image positions are simply absent from its sequence. Only the fusion
starts at zero: the adaptor's rows take part in the draft's attention from the first step, as in
the official code, so a fresh adaptor is not exactly the text-only draft.

Module and parameter names follow the official checkpoints (``layers.0.self_attn.q_proj``,
``fc``, ``imadpt.q``, ``img_fc``, ...), so an official head loads by name. Decoding is
`adapters.speculative.engine.feature_speculative_decode`; `ViSpecDrafter` is the plug-in.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from adapters.common.weights import load_strict, read_header, save_with_header
from adapters.speculative.engine import FeatureDrafter, LayerRunner, rms_norm
from adapters.vispec.config import DraftConfig

DRAFT_FORMAT = "vispec-draft-v1"
DRAFT_VOCAB_KEY = "draft_vocab"


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, -1)
    return x * cos + torch.cat((-second, first), -1) * sin


class DraftAttention(nn.Module):
    def __init__(self, config: DraftConfig):
        super().__init__()
        h, d = config.hidden_size, config.head_dim
        self.heads, self.kv_heads, self.head_dim = config.num_attention_heads, config.num_key_value_heads, d
        self.q_proj = nn.Linear(h, self.heads * d, bias=config.qkv_bias)
        self.k_proj = nn.Linear(h, self.kv_heads * d, bias=config.qkv_bias)
        self.v_proj = nn.Linear(h, self.kv_heads * d, bias=config.qkv_bias)
        self.o_proj = nn.Linear(self.heads * d, h, bias=False)

    def forward(self, x, cos, sin, mask=None, cache: "DraftCache | None" = None):
        """x: 1 x n x H; cos/sin: 1 x n x D (the target's rotary tables at the rows' positions)."""
        b, n, _ = x.shape
        q = self.q_proj(x).view(b, n, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, n, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, n, self.kv_heads, self.head_dim).transpose(1, 2)
        cos, sin = cos[:, None], sin[:, None]
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        if cache is not None:
            k, v = cache.append(k, v)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None and cache is None and n > 1,
                                             enable_gqa=self.kv_heads != self.heads)
        return self.o_proj(out.transpose(1, 2).reshape(b, n, -1))


class DraftMLP(nn.Module):
    def __init__(self, config: DraftConfig):
        super().__init__()
        h, i = config.hidden_size, config.intermediate_size
        self.gate_proj = nn.Linear(h, i, bias=False)
        self.up_proj = nn.Linear(h, i, bias=False)
        self.down_proj = nn.Linear(i, h, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class RMSNorm(nn.Module):
    def __init__(self, size: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x):
        return rms_norm(x, self.weight, self.eps)


class DraftLayer(nn.Module):
    """EAGLE's decoder layer: as the target's, except that the first layer has no input norm (its
    input is already fc's mix of a normalised feature and an embedding)."""

    def __init__(self, config: DraftConfig):
        super().__init__()
        self.self_attn = DraftAttention(config)
        self.mlp = DraftMLP(config)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(self, x, cos, sin, mask=None, cache=None):
        x = x + self.self_attn(x, cos, sin, mask, cache)
        return x + self.mlp(self.post_attention_layernorm(x))


class ImageAdaptor(nn.Module):
    """Learnable queries (one per head) attending over the image tokens: B x K x H -> B x Q x H."""

    def __init__(self, config: DraftConfig):
        super().__init__()
        h, heads, d = config.hidden_size, config.num_attention_heads, config.head_dim
        self.heads, self.head_dim = heads, d
        self.q = nn.Parameter(torch.randn(config.num_queries, heads, d) * d ** -0.5)
        self.k_proj = nn.Linear(h, heads * d, bias=config.qkv_bias)
        self.v_proj = nn.Linear(h, heads * d, bias=config.qkv_bias)
        self.o_proj = nn.Linear(heads * d, h, bias=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        b, k, _ = image.shape
        q = self.q.transpose(0, 1)[None].expand(b, -1, -1, -1)
        key = self.k_proj(image).view(b, k, self.heads, self.head_dim).transpose(1, 2)
        value = self.v_proj(image).view(b, k, self.heads, self.head_dim).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, key, value)
        return self.o_proj(out.transpose(1, 2).reshape(b, q.shape[2], -1))


class ViSpecDraft(nn.Module):
    """The draft model: fc, one decoder layer and (``config.vision``) the image adaptor with its
    fusion ``img_fc``. The target's embeddings and LM head are shared, not held here."""

    def __init__(self, config: DraftConfig):
        super().__init__()
        self.config = config
        h = config.hidden_size
        self.layers = nn.ModuleList([DraftLayer(config)])
        self.fc = nn.Linear(2 * h, h, bias=True)
        for module in (self.fc, *self.layers.modules()):
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        if config.vision:
            self.imadpt = ImageAdaptor(config)
            for lin in (self.imadpt.k_proj, self.imadpt.v_proj, self.imadpt.o_proj):
                nn.init.normal_(lin.weight, std=0.02)
            self.img_fc = nn.Linear(2 * h, h, bias=True)
            with torch.no_grad():
                self.img_fc.weight.zero_()
                self.img_fc.weight[:, :h].copy_(torch.eye(h))
                self.img_fc.bias.zero_()

    @property
    def vision(self) -> bool:
        return self.config.vision

    # -- the draft's input rows ------------------------------------------------------------------

    def image_vectors(self, image: torch.Tensor | None, use_image: bool = True):
        """(rows that take the image's place, the global image vector) from K x H image-token
        embeddings; (None, None) without an image, for the text-only draft or with ``use_image`` off."""
        if image is None or not self.vision or not use_image:
            return None, None
        out = self.imadpt(image[None])[0]
        return out[:-1], out[-1]

    def fuse(self, features: torch.Tensor, image_vector: torch.Tensor | None, use_image: bool = True) -> torch.Tensor:
        """img_fc([feature ; global image vector]), the vector being zero before the image (as in
        the official code); the feature itself for a draft without the adaptor or with it off."""
        if not self.vision or not use_image:
            return features
        vector = image_vector if image_vector is not None else features.new_zeros(features.shape[-1])
        return self.img_fc(torch.cat([features, vector.expand_as(features)], -1))

    def text_rows(self, next_embeds: torch.Tensor, features: torch.Tensor, image_vector=None,
                  use_image: bool = True) -> torch.Tensor:
        return self.fc(torch.cat([next_embeds, self.fuse(features, image_vector, use_image)], -1))

    def sequence_rows(self, embeds: torch.Tensor, features: torch.Tensor, image_mask: torch.Tensor | None,
                      use_image: bool = True):
        """The draft's input rows for pairs t = 0..N-2 of a sequence (embeddings N x H, the
        target's features N x H, the image positions), their positions, and for each row the pair
        index t it predicts from (-1 for the image adaptor's rows).

        Pairs whose next input is an image token are not text: the adaptor's rows take their
        place (at the last positions of that stretch) in the vision-aware draft; the text-only draft
        has nothing there."""
        n = embeds.shape[0]
        pairs = torch.arange(n - 1)
        if image_mask is None or not bool(image_mask.any()):
            return self.text_rows(embeds[1:], features[:-1], None, use_image), pairs, pairs
        where = torch.nonzero(image_mask).flatten()
        first, last = int(where[0]), int(where[-1])  # one contiguous image per prompt
        image_pairs = (pairs + 1 >= first) & (pairs + 1 <= last)
        rows_image, vector = self.image_vectors(embeds[first: last + 1], use_image)
        before = pairs[pairs + 1 < first]
        after = pairs[pairs + 1 > last]
        parts = [self.text_rows(embeds[before + 1], features[before], None, use_image)]
        positions = [before]
        index = [before]
        if rows_image is not None and len(rows_image):
            count = rows_image.shape[0]
            parts.append(rows_image)
            spots = pairs[image_pairs][-count:]
            positions.append(spots)
            index.append(torch.full_like(spots, -1))
        parts.append(self.text_rows(embeds[after + 1], features[after], vector, use_image))
        positions.append(after)
        index.append(after)
        return torch.cat(parts), torch.cat(positions), torch.cat(index)

    def forward_rows(self, rows: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """Teacher-forced: the layer over all rows (causal in row order); rows n x H -> n x H."""
        return self.layers[0](rows[None], cos, sin)[0]


def rope(lm: nn.Module, positions: torch.Tensor):
    """The target's rotary tables at ``positions`` (1 x n x D), shared with the draft."""
    probe = lm.model.embed_tokens.weight[:1][None]
    return lm.model.rotary_emb(probe, positions[None])


# --- decoding -------------------------------------------------------------------------------

class DraftCache:
    """The draft layer's keys and values, pre-allocated; `crop` forgets uncommitted steps."""

    def __init__(self):
        self.keys = self.values = None
        self.length = 0

    def append(self, k: torch.Tensor, v: torch.Tensor):
        if self.keys is None:
            raise RuntimeError("draft cache used before `reserve`")
        start, n = self.length, k.shape[2]
        self.keys[:, :, start: start + n] = k
        self.values[:, :, start: start + n] = v
        self.length = start + n
        return self.keys[:, :, : self.length], self.values[:, :, : self.length]

    def reserve(self, like: torch.Tensor, kv_heads: int, head_dim: int, rows: int) -> None:
        self.keys = like.new_empty((1, kv_heads, rows, head_dim))
        self.values = like.new_empty((1, kv_heads, rows, head_dim))
        self.length = 0


class ViSpecDrafter(FeatureDrafter):
    """`ViSpecDraft` plugged into the engine. ``use_image=False`` runs a vision-aware draft as a
    text-only one (its adaptor off). Per request the fusion of the (constant) image vector and fc
    are folded into one input projection, so a draft step is one matmul before the layer."""

    def __init__(self, draft: ViSpecDraft, draft_vocab: torch.Tensor | None, use_image: bool = True):
        self.draft, self.draft_vocab, self.use_image = draft, draft_vocab, use_image
        self.cache = DraftCache()

    def bind(self, runner: LayerRunner, max_length: int) -> None:
        super().bind(runner, max_length)
        config = self.draft.config
        self.cache.reserve(runner.cos, config.num_key_value_heads, config.head_dim, max_length + 1)
        self.committed = 0

    def _fold(self, vector: torch.Tensor | None):
        """fc([e ; img_fc([f ; v])]) as e @ We' + f @ Wf' + b' for this request's image vector v."""
        draft, h = self.draft, self.draft.config.hidden_size
        w_e, w_f = draft.fc.weight[:, :h], draft.fc.weight[:, h:]
        bias = draft.fc.bias
        if draft.vision and self.use_image:
            w_h, w_v = draft.img_fc.weight[:, :h], draft.img_fc.weight[:, h:]
            shift = draft.img_fc.bias + (w_v @ vector if vector is not None else 0)
            bias = bias + w_f @ shift
            w_f = w_f @ w_h
        self.in_weight_t = torch.cat([w_e, w_f], 1).t().contiguous()
        self.in_bias = bias

    def _run(self, rows: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        cos, sin = self.runner.cos[:, positions], self.runner.sin[:, positions]
        n = rows.shape[1]
        mask = None
        if n > 1:  # rows attend to everything cached and causally among themselves
            past = self.cache.length
            mask = torch.zeros(n, past + n, dtype=rows.dtype, device=rows.device)
            mask[:, past:] = torch.full((n, n), torch.finfo(rows.dtype).min, dtype=rows.dtype).triu(1)
            mask = mask[None, None]
        return self.draft.layers[0](rows, cos, sin, mask, self.cache)

    def start(self, prompt_embeds, features, image_mask, next_embed):
        embeds = torch.cat([prompt_embeds[0], next_embed[0]])
        mask = None
        if image_mask is not None:
            mask = torch.cat([image_mask.to(torch.bool).flatten(), torch.zeros(1, dtype=torch.bool)])
        feats = torch.cat([features[0], features[0, -1:]])  # the last feature is never read as a pair's input
        rows, positions, _ = self.draft.sequence_rows(embeds, feats, mask, self.use_image)
        vector = None
        if mask is not None and bool(mask.any()) and self.draft.vision and self.use_image:
            where = torch.nonzero(mask).flatten()
            vector = self.draft.image_vectors(embeds[int(where[0]): int(where[-1]) + 1])[1]
        self._fold(vector)
        out = self._run(rows[None], positions.to(rows.device))
        self.committed = self.cache.length
        return out[:, -1:]

    def _rows(self, embeds: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        return torch.cat([embeds, features], -1) @ self.in_weight_t + self.in_bias

    def extend(self, embeds, features, position):
        self.cache.length = self.committed
        n = embeds.shape[1]
        out = self._run(self._rows(embeds, features), torch.arange(position, position + n, device=embeds.device))
        self.committed = self.cache.length
        return out[:, -1:]

    def step(self, embed, feature, position):
        return self._run(self._rows(embed, feature), torch.tensor([position], device=embed.device))

    def rollback(self) -> None:
        self.cache.length = self.committed


# --- training -------------------------------------------------------------------------------

def vocab_index(draft_vocab: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Full-vocabulary id -> row of the trimmed head (-100 for ids the draft cannot propose)."""
    index = torch.full((vocab_size,), -100, dtype=torch.long)
    index[draft_vocab] = torch.arange(len(draft_vocab))
    return index


def draft_loss(draft: ViSpecDraft, lm: nn.Module, head_t: torch.Tensor, index: torch.Tensor, example: dict,
               ce_weight: float = 0.3, unroll: bool = True) -> torch.Tensor:
    """EAGLE's loss on one teacher-forced sequence: smooth-L1 between predicted and true next
    features plus ``ce_weight`` x cross-entropy of the trimmed head against the target's next token,
    on the answer's pairs. With ``unroll`` a second pass feeds each pair the draft's own prediction
    instead of the true feature (what drafting a second token ahead sees) and adds its loss.

    ``example``: embeds (N x H, image tokens spliced in), features (N x H), image_mask (N), ids (N;
    -1 at image tokens), answer_start (first answer position)."""
    embeds, features, mask, ids = example["embeds"], example["features"], example["image_mask"], example["ids"]
    start = example["answer_start"]
    rows, positions, pair = draft.sequence_rows(embeds, features, mask)
    cos, sin = rope(lm, positions)
    out = draft.forward_rows(rows, cos, sin)
    scored = (pair >= start - 1) & (pair < len(ids) - 2)
    target_features = features[pair[scored] + 1]
    labels = index[ids[pair[scored] + 2]]

    def loss_of(predicted):
        regression = F.smooth_l1_loss(predicted, target_features)
        ce = F.cross_entropy(predicted @ head_t, labels, ignore_index=-100) if bool((labels >= 0).any()) else 0.0
        return regression + ce_weight * ce

    loss = loss_of(out[scored])
    if unroll:
        # pair t's feature is replaced by the draft's prediction at pair t-1 (answer pairs only)
        predicted_at = {int(t) + 1: i for i, t in enumerate(pair.tolist()) if t >= start - 1}
        rows2 = rows.clone()
        swap = [(i, predicted_at[int(t)]) for i, t in enumerate(pair.tolist()) if int(t) in predicted_at]
        if swap:
            rows_idx = torch.tensor([i for i, _ in swap])
            src = torch.tensor([j for _, j in swap])
            t_idx = pair[rows_idx]
            vector = draft.image_vectors(embeds[mask] if mask is not None and bool(mask.any()) else None)[1]
            rows2[rows_idx] = draft.text_rows(embeds[t_idx + 1], out[src], vector)
            out2 = draft.forward_rows(rows2, cos, sin)
            loss = loss + loss_of(out2[scored])
    return loss


# --- files ----------------------------------------------------------------------------------

def save_draft(draft: ViSpecDraft, draft_vocab: torch.Tensor, path: str | Path, extra: dict[str, str] | None = None,
               dtype: torch.dtype = torch.float16) -> None:
    """Weights (stored in ``dtype``), the trimmed vocabulary and the config in the header."""
    state = {k: v.to(dtype) for k, v in draft.state_dict().items()}
    state[DRAFT_VOCAB_KEY] = draft_vocab.to(torch.int64)
    save_with_header(path, state, {"format": DRAFT_FORMAT, "config": draft.config.to_json()} | dict(extra or {}))


def draft_config_of(path: str | Path) -> DraftConfig:
    meta = read_header(path)
    if meta.get("format") != DRAFT_FORMAT:
        raise ValueError(f"{Path(path).name} is not a ViSpec draft file")
    return DraftConfig.from_json(meta["config"])


def load_draft(path: str | Path) -> tuple[ViSpecDraft, torch.Tensor]:
    from safetensors.torch import load_file

    state = load_file(str(path))
    vocab = state.pop(DRAFT_VOCAB_KEY)
    draft = ViSpecDraft(draft_config_of(path))
    load_strict(draft, {k: v.float() for k, v in state.items()}, "ViSpec draft")
    return draft.eval().requires_grad_(False), vocab


def config_for(lm: nn.Module, vision: bool, intermediate_size: int, num_queries: int = 4) -> DraftConfig:
    c = lm.config
    return DraftConfig(hidden_size=c.hidden_size, num_attention_heads=c.num_attention_heads,
                       num_key_value_heads=getattr(c, "num_key_value_heads", None) or c.num_attention_heads,
                       intermediate_size=intermediate_size, rms_norm_eps=getattr(c, "rms_norm_eps", 1e-5),
                       qkv_bias=bool(getattr(c, "attention_bias", False)), vision=vision, num_queries=num_queries)


def describe(config: DraftConfig) -> str:
    return json.dumps({"vision": config.vision, "queries": config.num_queries, "mlp": config.intermediate_size})
