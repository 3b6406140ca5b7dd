"""Kangaroo (Liu et al., arXiv 2404.18911): lossless self-speculative decoding with double early exit.

The frozen causal LM is split at an exit layer k. Its first k layers plus a small adapter (a
normalisation, one attention layer, a normalisation) and the frozen LM head form the draft model;
the remaining layers verify the drafted tokens in one pass. Drafting stops early (the second exit)
as soon as the draft's top probability falls below a threshold. Only greedy decoding at batch
size 1 is implemented; its output is, by construction, the full model's greedy output.

Everything here is plain torch on top of a transformers Llama-family model (`model.model.layers`,
`model.model.norm`, `model.lm_head`, `model.model.rotary_emb`); the decoder layers are called
directly so the shallow and deep halves can run separately over one shared KV cache.
"""
from __future__ import annotations

import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from studio.errors import BadInput

ADAPTER_FORMAT = "kangaroo-adapter-v1"


# --- KV cache ----------------------------------------------------------------------------------

class KangarooCache:
    """Pre-allocated key/value buffers, one slot per decoder layer plus one for the adapter.

    transformers' attention modules only call `update(k, v, layer_idx, ...)`; appending is a copy
    into a buffer and rolling back rejected draft tokens is setting a length, so neither costs a
    concatenation. Slots grow independently: while drafting only the shallow layers and the adapter
    advance; verification then brings the deep layers level.
    """

    def __init__(self, num_slots: int, max_length: int):
        self.max_length = max_length
        self.keys: list[torch.Tensor | None] = [None] * num_slots
        self.values: list[torch.Tensor | None] = [None] * num_slots
        self.lengths = [0] * num_slots

    def update(self, key: torch.Tensor, value: torch.Tensor, layer_idx: int, *args, **kwargs):
        if self.keys[layer_idx] is None:
            shape = (key.shape[0], key.shape[1], self.max_length, key.shape[3])
            self.keys[layer_idx] = key.new_empty(shape)
            self.values[layer_idx] = value.new_empty((*shape[:3], value.shape[3]))
        start, n = self.lengths[layer_idx], key.shape[2]
        if start + n > self.max_length:
            raise RuntimeError(f"KV cache overflow: {start + n} > {self.max_length}")
        self.keys[layer_idx][:, :, start: start + n] = key
        self.values[layer_idx][:, :, start: start + n] = value
        self.lengths[layer_idx] = start + n
        return self.keys[layer_idx][:, :, : start + n], self.values[layer_idx][:, :, : start + n]

    def crop(self, length: int) -> None:
        self.lengths = [min(n, length) for n in self.lengths]


# --- running slices of the frozen model -------------------------------------------------------

_DERIVED: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()


def _derived(module: nn.Module, name: str, build: Callable[[], object]):
    """A tensor derived from a module's weights (a fused or transposed copy), built once per module
    and rebuilt whenever one of its parameters changes (their version counters move)."""
    versions = tuple((p.data_ptr(), p._version) for p in module.parameters())
    slot = _DERIVED.setdefault(module, {})
    if name not in slot or slot[name][0] != versions:
        slot[name] = (versions, build())
    return slot[name][1]


def _hooked(module: nn.Module) -> bool:
    """Whether someone hooked this module (e.g. a test counting positions): then it runs through its
    own call. transformers' output-capturing hooks (installed once `output_hidden_states` is used)
    only record inside transformers' own forward and are ignored."""
    hooks = [*module._forward_hooks.values(), *module._forward_pre_hooks.values()]
    return any("output_capturing_hook" not in getattr(h, "__qualname__", "") for h in hooks)


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """LlamaRMSNorm's arithmetic (statistics in float32, then the weight) in one call for float32."""
    if x.dtype == torch.float32:
        return F.rms_norm(x, weight.shape, weight, eps)
    return weight * F.rms_norm(x.float(), weight.shape, None, eps).to(x.dtype)


def _fused(*linears: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One weight (and bias) for several projections of the same input: one matmul instead of several."""
    weight = torch.cat([lin.weight for lin in linears])
    biases = [getattr(lin, "bias", None) for lin in linears]
    if all(b is None for b in biases):
        return weight, None
    bias = torch.cat([b if b is not None else lin.weight.new_zeros(lin.weight.shape[0]) for lin, b in zip(linears, biases)])
    return weight, bias


class FusedAttention:
    """A Llama attention module's forward in few torch calls (bit-identical to the module's own).

    At this model size every torch call costs about as much as its arithmetic, so q/k/v become one
    matmul and rotary embeddings are applied to queries and keys together. The module's weights are
    read, never copied into anything that could drift: a runner is built per request.
    """

    def __init__(self, attn: nn.Module, layer_idx: int):
        config = attn.config
        self.heads = config.num_attention_heads
        self.kv_heads = getattr(config, "num_key_value_heads", None) or self.heads
        self.head_dim = attn.head_dim
        self.scale = attn.scaling
        self.layer_idx = layer_idx
        self.qkv_weight, self.qkv_bias = _derived(attn, "qkv", lambda: _fused(attn.q_proj, attn.k_proj, attn.v_proj))
        self.o_weight, self.o_bias = attn.o_proj.weight, getattr(attn.o_proj, "bias", None)

    @staticmethod
    def supports(attn: nn.Module) -> bool:
        # Variants with extra pieces (q/k norms, sliding windows, soft-capping) keep the module's own forward.
        config = attn.config
        return (type(attn).__name__ == "LlamaAttention" and all(hasattr(attn, n) for n in ("q_proj", "k_proj", "v_proj", "o_proj"))
                and getattr(config, "_attn_implementation", "sdpa") in ("sdpa", "eager")
                and not getattr(config, "pretraining_tp", 1) > 1)

    def __call__(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask, cache) -> torch.Tensor:
        batch, n = x.shape[:2]
        heads, kv_heads, dim = self.heads, self.kv_heads, self.head_dim
        qkv = F.linear(x, self.qkv_weight, self.qkv_bias).view(batch, n, heads + 2 * kv_heads, dim)
        qk = qkv[:, :, : heads + kv_heads]
        first, second = qk.chunk(2, -1)
        qk = qk * cos + torch.cat((-second, first), -1) * sin
        query = qk[:, :, :heads].transpose(1, 2)
        key = qk[:, :, heads:].transpose(1, 2)
        value = qkv[:, :, heads + kv_heads:].transpose(1, 2)
        if cache is not None:
            key, value = cache.update(key, value, self.layer_idx)
        # One query token attends to every cached key and needs no mask; several always come with one.
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=mask, scale=self.scale, enable_gqa=kv_heads != heads)
        return F.linear(out.transpose(1, 2).reshape(batch, n, heads * dim), self.o_weight, self.o_bias)


class FusedDecoderLayer:
    """A LlamaDecoderLayer's forward in few torch calls: RMSNorm as one call, fused q/k/v and
    gate/up projections. Used for greedy and Kangaroo alike (the same runner), so the speedup
    compares like with like."""

    def __init__(self, layer: nn.Module, layer_idx: int):
        self.attn = FusedAttention(layer.self_attn, layer_idx)
        mlp = layer.mlp
        self.gate_up_weight, self.gate_up_bias = _derived(mlp, "gate_up", lambda: _fused(mlp.gate_proj, mlp.up_proj))
        self.down_weight, self.down_bias = mlp.down_proj.weight, getattr(mlp.down_proj, "bias", None)
        self.intermediate = mlp.gate_proj.weight.shape[0]
        self.act = mlp.act_fn
        self.norm1 = (layer.input_layernorm.weight, layer.input_layernorm.variance_epsilon)
        self.norm2 = (layer.post_attention_layernorm.weight, layer.post_attention_layernorm.variance_epsilon)

    @staticmethod
    def supports(layer: nn.Module) -> bool:
        return (type(layer).__name__ == "LlamaDecoderLayer" and FusedAttention.supports(layer.self_attn)
                and type(layer.input_layernorm).__name__ == "LlamaRMSNorm"
                and all(hasattr(layer.mlp, n) for n in ("gate_proj", "up_proj", "down_proj", "act_fn"))
                and not _hooked(layer))

    def __call__(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask, cache) -> torch.Tensor:
        h = _rms_norm(x, *self.norm1)
        x = x + self.attn(h, cos, sin, mask, cache)
        h = F.linear(_rms_norm(x, *self.norm2), self.gate_up_weight, self.gate_up_bias)
        return x + F.linear(self.act(h[..., : self.intermediate]) * h[..., self.intermediate:], self.down_weight, self.down_bias)


class LayerRunner:
    """Runs any contiguous range of a frozen model's decoder layers at given positions.

    Rotary tables are computed once for every position a request can reach; attention masks are
    only built for multi-token calls (one query token needs none). Plain Llama layers run through
    `FusedDecoderLayer` (same arithmetic, fewer calls); any other layer through its own module.
    """

    def __init__(self, model: nn.Module, max_length: int):
        self.model = model
        self.layers = model.model.layers
        self.num_layers = len(self.layers)
        self.norm = model.model.norm
        self.head = model.lm_head
        self.embed = model.model.embed_tokens
        probe = self.embed.weight[:1][None]
        positions = torch.arange(max_length, device=probe.device)[None]
        self.cos, self.sin = model.model.rotary_emb(probe, positions)
        # (batch, position, head, dim) layout for the fused layers' rotary step
        self.cos_heads, self.sin_heads = self.cos[:, :, None], self.sin[:, :, None]
        self.max_length = max_length
        self.fused = [FusedDecoderLayer(layer, i) if FusedDecoderLayer.supports(layer) else None
                      for i, layer in enumerate(self.layers)]
        # The vocabulary-wide head reads 4096 x 128 weights per call; with the weight stored
        # transposed (input-major) the same product runs as a plain matmul, measured ~1.5x faster here.
        head = self.head
        self.head_weight_t = (_derived(head, "weight_t", lambda: head.weight.t().contiguous())
                              if type(head) is nn.Linear and not _hooked(head) else None)

    def head_logits(self, features: torch.Tensor) -> torch.Tensor:
        """The LM head on already-normalised features."""
        if self.head_weight_t is None:
            return self.head(features)
        logits = features @ self.head_weight_t
        return logits if self.head.bias is None else logits + self.head.bias

    def position_embeddings(self, start: int, n: int):
        return self.cos[:, start: start + n], self.sin[:, start: start + n]

    def causal_mask(self, start: int, n: int) -> torch.Tensor | None:
        """Additive mask for `n` queries at positions start..start+n-1 over keys 0..start+n-1."""
        if n == 1:
            return None
        dtype = self.cos.dtype
        query = torch.arange(start, start + n, device=self.cos.device)[:, None]
        key = torch.arange(start + n, device=self.cos.device)[None, :]
        mask = torch.zeros(n, start + n, dtype=dtype, device=self.cos.device)
        return mask.masked_fill(key > query, torch.finfo(dtype).min)[None, None]

    def run(self, hidden: torch.Tensor, start: int, first: int, last: int, cache) -> torch.Tensor:
        """Layers first..last-1 (0-based) over hidden states of positions start.. ."""
        n = hidden.shape[1]
        embeddings = self.position_embeddings(start, n)
        cos, sin = self.cos_heads[:, start: start + n], self.sin_heads[:, start: start + n]
        mask = self.causal_mask(start, n)
        for i in range(first, last):
            fused = self.fused[i]
            if fused is not None:
                hidden = fused(hidden, cos, sin, mask, cache)
            else:
                hidden = self.layers[i](hidden, attention_mask=mask, position_embeddings=embeddings, cache=cache)
        return hidden

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.head_logits(self.norm(hidden))


# --- the adapter -------------------------------------------------------------------------------

class KangarooAdapter(nn.Module):
    """Normalisation, one self-attention layer (with residual), normalisation; then the frozen LM head.

    The attention is the frozen model's own attention class, so rotary embeddings and any bias
    terms follow the architecture. Initialisation: query/key/value and the first norm are copied
    from layer k+1 (the first layer the draft skips), the output projection is zero and the last
    norm is a copy of the model's final norm, so an untrained adapter is exactly the bare early
    exit (first k layers + final norm + LM head) and training can only start from there.
    """

    def __init__(self, model: nn.Module, exit_layer: int):
        super().__init__()
        config = model.config
        num_layers = len(model.model.layers)
        if not 1 <= exit_layer < num_layers:
            raise BadInput(f"The exit layer must be between 1 and {num_layers - 1} (the model has {num_layers} layers).")
        self.exit_layer = exit_layer
        norm_cls = type(model.model.norm)
        eps = getattr(config, "rms_norm_eps", 1e-6)
        next_layer = model.model.layers[exit_layer]
        # The adapter's cache slot comes after the model's own layers.
        self.self_attn = type(next_layer.self_attn)(config, layer_idx=num_layers)
        self.input_norm = norm_cls(config.hidden_size, eps=eps)
        self.output_norm = norm_cls(config.hidden_size, eps=eps)
        dtype = model.model.norm.weight.dtype
        self.to(device=model.model.norm.weight.device, dtype=dtype)
        with torch.no_grad():
            self.self_attn.load_state_dict(next_layer.self_attn.state_dict())
            self.self_attn.o_proj.weight.zero_()
            if getattr(self.self_attn.o_proj, "bias", None) is not None:
                self.self_attn.o_proj.bias.zero_()
            self.input_norm.weight.copy_(next_layer.input_layernorm.weight)
            self.output_norm.weight.copy_(model.model.norm.weight)

    def forward(self, shallow: torch.Tensor, position_embeddings, attention_mask=None, cache=None) -> torch.Tensor:
        attended, _ = self.self_attn(self.input_norm(shallow), position_embeddings=position_embeddings,
                                     attention_mask=attention_mask, cache=cache)
        return self.output_norm(shallow + attended)


class FusedAdapter:
    """`KangarooAdapter.forward` in few torch calls (same arithmetic), for decoding."""

    def __init__(self, adapter: KangarooAdapter, layer_idx: int):
        self.attn = FusedAttention(adapter.self_attn, layer_idx)
        self.norm1 = (adapter.input_norm.weight, adapter.input_norm.variance_epsilon)
        self.norm2 = (adapter.output_norm.weight, adapter.output_norm.variance_epsilon)

    @staticmethod
    def supports(adapter: KangarooAdapter) -> bool:
        return (FusedAttention.supports(adapter.self_attn) and type(adapter.input_norm).__name__ == "LlamaRMSNorm"
                and not _hooked(adapter))

    def __call__(self, shallow: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask, cache) -> torch.Tensor:
        attended = self.attn(_rms_norm(shallow, *self.norm1), cos, sin, mask, cache)
        return _rms_norm(shallow + attended, *self.norm2)


def count_trainable(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def save_adapters(path: Path, adapters: dict[int, KangarooAdapter], metadata: dict[str, str] | None = None) -> None:
    from safetensors.torch import save_file

    tensors = {f"exit{k}.{name}": t.detach().contiguous().cpu() for k, a in adapters.items() for name, t in a.state_dict().items()}
    meta = {"format": ADAPTER_FORMAT, "exits": ",".join(str(k) for k in sorted(adapters)), **(metadata or {})}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=meta)


def load_adapters(path: Path, model: nn.Module) -> dict[int, KangarooAdapter]:
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata() or {}
    if meta.get("format") != ADAPTER_FORMAT:
        raise BadInput(f"{Path(path).name} is not a Kangaroo adapter file (format {meta.get('format')!r}).")
    tensors = load_file(str(path))
    adapters = {}
    for k in (int(x) for x in meta["exits"].split(",")):
        adapter = KangarooAdapter(model, k)
        prefix = f"exit{k}."
        adapter.load_state_dict({n[len(prefix):]: t for n, t in tensors.items() if n.startswith(prefix)})
        adapters[k] = adapter.eval().requires_grad_(False)
    return adapters


# --- training (full-sequence, teacher forcing) -------------------------------------------------

def shallow_hidden_states(model: nn.Module, ids: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
    """Hidden states after every layer (index k = after k layers) and the full model's final,
    normalised hidden state (the LM head's input)."""
    out = model.model(ids, output_hidden_states=True)
    return out.hidden_states, out.last_hidden_state


def adapter_features(model: nn.Module, adapter: KangarooAdapter | None, shallow: torch.Tensor) -> torch.Tensor:
    """The LM head's input for every position of a sequence; `adapter=None` is the bare early exit."""
    if adapter is None:
        return model.model.norm(shallow)
    n = shallow.shape[1]
    positions = torch.arange(n, device=shallow.device)[None]
    embeddings = model.model.rotary_emb(shallow, positions)
    mask = torch.zeros(n, n, dtype=shallow.dtype, device=shallow.device)
    mask = mask.masked_fill(torch.ones(n, n, dtype=torch.bool, device=shallow.device).triu(1), torch.finfo(shallow.dtype).min)
    return adapter(shallow, embeddings, attention_mask=mask[None, None])


def adapter_logits(model: nn.Module, adapter: KangarooAdapter | None, shallow: torch.Tensor) -> torch.Tensor:
    return model.lm_head(adapter_features(model, adapter, shallow))


def distill_loss(draft_logits: torch.Tensor, full_logits: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the draft against the full model's next-token distribution (soft labels)."""
    target = F.softmax(full_logits.float(), dim=-1)
    return -(target * F.log_softmax(draft_logits.float(), dim=-1)).sum(-1).mean()


def adapter_training_step(model, adapters: dict[int, KangarooAdapter], optimizer, ids: torch.Tensor,
                          scored_positions: int | None = None, generator: torch.Generator | None = None) -> dict[int, float]:
    """One step for every exit layer's adapter on one batch; the frozen model only runs forward.

    Every position serves as attention context; the loss (and the vocabulary-sized head, the costly
    part) can be limited to `scored_positions` random positions per sequence.
    """
    with torch.no_grad():
        hidden, final = shallow_hidden_states(model, ids)
        if scored_positions is not None and scored_positions < ids.shape[1]:
            scored = torch.randperm(ids.shape[1], generator=generator)[:scored_positions].sort().values
        else:
            scored = torch.arange(ids.shape[1])
        full_logits = model.lm_head(final[:, scored])
    optimizer.zero_grad(set_to_none=True)
    losses = {}
    total = 0.0
    for k, adapter in adapters.items():
        loss = distill_loss(model.lm_head(adapter_features(model, adapter, hidden[k])[:, scored]), full_logits)
        losses[k] = loss.item()
        total = total + loss
    total.backward()
    optimizer.step()
    return losses


@torch.no_grad()
def top1_agreement(model, adapter: KangarooAdapter | None, exit_layer: int, ids: torch.Tensor) -> float:
    """Share of positions where the draft's top token equals the full model's."""
    hidden, final = shallow_hidden_states(model, ids)
    draft = adapter_logits(model, adapter, hidden[exit_layer])
    return (draft.argmax(-1) == model.lm_head(final).argmax(-1)).float().mean().item()


# --- decoding ----------------------------------------------------------------------------------

@dataclass
class Decoded:
    """New tokens plus who produced each ("draft": accepted draft token, "full": the full model's
    own token, i.e. a correction of a rejected draft or the token after an all-accepted draft)."""

    tokens: list[int]
    sources: list[str]
    seconds: float
    verify_passes: int = 0
    drafted: int = 0
    accepted: int = 0
    shallow_positions: int = 0  # positions run through layers 1..k (excluding the prompt)
    deep_positions: int = 0  # positions run through layers k+1..L (excluding the prompt)
    num_layers: int = 0
    exit_layer: int = 0
    events: list[dict] = field(default_factory=list)

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.drafted if self.drafted else 0.0

    @property
    def tokens_per_pass(self) -> float:
        return len(self.tokens) / self.verify_passes if self.verify_passes else 0.0

    @property
    def layer_evals_per_token(self) -> float:
        """Decoder-layer evaluations per generated token (plain greedy: the number of layers)."""
        k = self.exit_layer
        total = self.shallow_positions * k + self.deep_positions * (self.num_layers - k)
        return total / len(self.tokens) if self.tokens else 0.0


def check_request(model: nn.Module, prompt_ids: list[int], max_new_tokens: int, max_length: int | None = None) -> int:
    if not prompt_ids:
        raise BadInput("The prompt is empty: type some text or pick an example.")
    if max_new_tokens < 1:
        raise BadInput("Ask for at least one new token.")
    limit = max_length or getattr(model.config, "max_position_embeddings", 2048)
    if len(prompt_ids) + max_new_tokens > limit:
        raise BadInput(f"The prompt ({len(prompt_ids)} tokens) plus {max_new_tokens} new tokens exceeds the model's "
                       f"{limit}-token context; shorten the prompt or ask for fewer tokens.")
    return limit


def _finish(tokens: list[int], sources: list[str], max_new_tokens: int, eos_id: int | None) -> bool:
    """Trim to the budget and the first end-of-text; True when decoding is over."""
    if eos_id is not None and eos_id in tokens:
        cut = tokens.index(eos_id) + 1
        del tokens[cut:], sources[cut:]
        return True
    if len(tokens) >= max_new_tokens:
        del tokens[max_new_tokens:], sources[max_new_tokens:]
        return True
    return False


@torch.inference_mode()
def greedy_decode(model: nn.Module, prompt_ids: list[int], max_new_tokens: int, eos_id: int | None = None,
                  on_token: Callable[[int, int], None] | None = None) -> Decoded:
    """Plain greedy decoding with a KV cache, one token per full forward: the baseline."""
    check_request(model, prompt_ids, max_new_tokens)
    start_time = time.perf_counter()
    runner = LayerRunner(model, len(prompt_ids) + max_new_tokens + 1)
    cache = KangarooCache(runner.num_layers, runner.max_length)
    device = runner.embed.weight.device
    ids = torch.tensor([prompt_ids], device=device)
    if len(prompt_ids) > 1:
        runner.run(runner.embed(ids[:, :-1]), 0, 0, runner.num_layers, cache)
    last, position = ids[:, -1:], len(prompt_ids) - 1
    tokens: list[int] = []
    sources: list[str] = []
    while True:
        hidden = runner.run(runner.embed(last), position, 0, runner.num_layers, cache)
        last = runner.logits(hidden[:, -1:]).argmax(-1)
        tokens.append(int(last))
        sources.append("full")
        position += 1
        if on_token:
            on_token(len(tokens), max_new_tokens)
        if _finish(tokens, sources, max_new_tokens, eos_id):
            break
    return Decoded(tokens, sources, time.perf_counter() - start_time, verify_passes=len(tokens),
                   shallow_positions=len(tokens), deep_positions=len(tokens), num_layers=runner.num_layers,
                   exit_layer=runner.num_layers)


@torch.inference_mode()
def kangaroo_decode(model: nn.Module, adapter: KangarooAdapter | None, prompt_ids: list[int], max_new_tokens: int,
                    threshold: float = 0.6, gamma: int = 6, eos_id: int | None = None, exit_layer: int | None = None,
                    on_token: Callable[[int, int], None] | None = None, record_events: bool = False) -> Decoded:
    """Self-speculative greedy decoding; the tokens equal `greedy_decode`'s.

    Each round starts from the last committed token, which no layer has seen yet. Drafting runs it
    (and then each drafted token) through layers 1..k and the adapter, keeping every shallow hidden
    state, and stops after `gamma` drafts or when the draft's top probability is below `threshold`.
    Verification runs layers k+1..L once over all kept shallow states; the longest prefix of drafts
    the full model agrees with is accepted, followed by the full model's own next token. Caches of
    rejected positions are rolled back, so no layer ever recomputes an accepted token.
    `adapter=None` drafts with the bare early exit (layers 1..k + final norm + LM head).
    """
    check_request(model, prompt_ids, max_new_tokens)
    k = adapter.exit_layer if adapter is not None else exit_layer
    num_layers = len(model.model.layers)
    if k is None or not 1 <= k < num_layers:
        raise BadInput(f"The exit layer must be between 1 and {num_layers - 1}.")
    if not 0.0 <= threshold <= 1.0:
        raise BadInput("The confidence threshold must lie between 0 and 1.")
    if not 1 <= gamma <= 32:
        raise BadInput("gamma (the most draft tokens per round) must be between 1 and 32.")
    start_time = time.perf_counter()
    runner = LayerRunner(model, len(prompt_ids) + max_new_tokens + gamma + 1)
    cache = KangarooCache(num_layers + 1, runner.max_length)
    device = runner.embed.weight.device
    ids = torch.tensor([prompt_ids], device=device)

    fused_adapter = FusedAdapter(adapter, num_layers) if adapter is not None and FusedAdapter.supports(adapter) else None

    def draft_features(shallow: torch.Tensor, position: int) -> torch.Tensor:
        n = shallow.shape[1]
        if adapter is None:
            return runner.norm(shallow)
        if fused_adapter is not None:
            return fused_adapter(shallow, runner.cos_heads[:, position: position + n], runner.sin_heads[:, position: position + n],
                                 runner.causal_mask(position, n), cache)
        return adapter(shallow, runner.position_embeddings(position, n), runner.causal_mask(position, n), cache)

    if len(prompt_ids) > 1:
        shallow = runner.run(runner.embed(ids[:, :-1]), 0, 0, k, cache)
        draft_features(shallow, 0)  # fills the adapter's cache for the prompt
        runner.run(shallow, 0, k, num_layers, cache)
    last, position = ids[:, -1:], len(prompt_ids) - 1
    result = Decoded([], [], 0.0, num_layers=num_layers, exit_layer=k)
    while True:
        room = max_new_tokens - len(result.tokens) - 1  # verification always adds one token
        drafts: list[int] = []
        shallow_states = []
        token = last
        while True:
            shallow = runner.run(runner.embed(token), position + len(drafts), 0, k, cache)
            shallow_states.append(shallow)
            features = draft_features(shallow, position + len(drafts))
            if len(drafts) >= min(gamma, room):
                break
            # The draft's top probability and token in one softmax and one max.
            confidence, top_token = runner.head_logits(features[:, -1]).softmax(-1).max(-1)
            if confidence.item() < threshold:
                break
            drafts.append(top_token.item())
            token = top_token[:, None]
        deep = runner.run(torch.cat(shallow_states, dim=1), position, k, num_layers, cache)
        verdict = runner.logits(deep).argmax(-1)[0].tolist()
        accepted = 0
        while accepted < len(drafts) and drafts[accepted] == verdict[accepted]:
            accepted += 1
        new = drafts[:accepted] + [verdict[accepted]]
        result.tokens.extend(new)
        result.sources.extend(["draft"] * accepted + ["full"])
        result.verify_passes += 1
        result.drafted += len(drafts)
        result.accepted += accepted
        result.shallow_positions += len(shallow_states)
        result.deep_positions += len(shallow_states)
        if record_events:
            result.events.append({"drafted": len(drafts), "accepted": accepted})
        position += accepted + 1
        cache.crop(position)
        last = torch.tensor([[verdict[accepted]]], device=device)
        if on_token:
            on_token(min(len(result.tokens), max_new_tokens), max_new_tokens)
        if _finish(result.tokens, result.sources, max_new_tokens, eos_id):
            break
    result.seconds = time.perf_counter() - start_time
    return result
