"""The speculative-decoding engine shared by the self-speculative papers (Kangaroo, and any drafter
that plugs in): greedy decoding with a pre-allocated KV cache, a fused runner over the frozen
model's decoder layers, and the draft/verify loop. Nothing here is specific to one paper's drafter.

The frozen model is a transformers Llama-family causal LM (`model.model.layers`, `model.model.norm`,
`model.lm_head`, `model.model.rotary_emb`); the decoder layers are called directly so a shallow and a
deep slice can run separately over one shared KV cache. Only greedy decoding at batch size 1 is
implemented; the speculative output is, by construction, the full model's greedy output.

A drafter (`Drafter`) shares the model's first ``shared_layers`` layers: every drafted position
passes them once, and verification runs only the remaining layers over the kept states, so no
layer recomputes an accepted token. `EarlyExitDrafter` is the bare early exit (shared layers +
final norm + LM head); a paper's drafter (Kangaroo's adapter, say) subclasses `Drafter`.

A feature drafter (`FeatureDrafter`, the EAGLE family) shares no layer: it drafts from the full
model's last features (after the final norm) and the next token's embedding, and
`feature_speculative_decode` verifies its chain with every layer in one pass. Both decoders and
`greedy_decode` take the prompt as token ids or as input embeddings (a vision-language model's
prompt, with image tokens spliced in).
"""
from __future__ import annotations

import time
import weakref
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from adapters.common.contract import Progress
from adapters.common.errors import BadInput
from adapters.speculative.decoded import Decoded

# --- KV cache ----------------------------------------------------------------------------------

class KVCache:
    """Pre-allocated key/value buffers, one slot per decoder layer plus any the drafter needs.

    transformers' attention modules only call `update(k, v, layer_idx, ...)`; appending is a copy
    into a buffer and rolling back rejected draft tokens is setting a length, so neither costs a
    concatenation. Slots grow independently: while drafting only the shared layers and the drafter's
    own slots advance; verification then brings the deep layers level.
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
        with torch.no_grad():
            slot[name] = (versions, build())
    return slot[name][1]


def hooked(module: nn.Module) -> bool:
    """Whether someone hooked this module (e.g. a test counting positions): then it runs through its
    own call. transformers' output-capturing hooks (installed once `output_hidden_states` is used)
    only record inside transformers' own forward and are ignored."""
    hooks = [*module._forward_hooks.values(), *module._forward_pre_hooks.values()]
    return any("output_capturing_hook" not in getattr(h, "__qualname__", "") for h in hooks)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
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


# How many rows a packed weight is laid out for: a verification pass carries the last committed
# token plus up to a few drafts. The packed layout serves any row count; this only tunes it.
PACKED_ROWS = 4


def _onednn_linear_available() -> bool:
    mkldnn = getattr(torch.ops, "mkldnn", None)
    return (torch.backends.mkldnn.is_available() and hasattr(mkldnn, "_reorder_linear_weight")
            and hasattr(mkldnn, "_linear_pointwise"))


class FastLinear:
    """One linear map (a module's weight, or several fused), in the layout that is fastest on a CPU
    for the call at hand. Same arithmetic as `F.linear`; only the summation order differs (within
    float32 rounding, as between any two matmul kernels).

    At this model size one new token is bound by reading the weights from memory, so a single row
    runs as a plain matmul against an input-major copy (measured ~10% faster here than
    `F.linear`). Several rows at once (a verification pass, a prompt) run through oneDNN against a
    weight pre-packed for its kernels: measured on one thread over the 30 layers' matrices, 4 rows
    cost 1.2x one row this way against 1.8x through `F.linear`, which is what lets verifying a few
    drafts cost little more than one token. The copies are built once per weight (and rebuilt if
    it changes) and only for float32 weights on a CPU; elsewhere this is `F.linear`.
    """

    def __init__(self, owner: nn.Module, name: str, build: Callable[[], tuple[torch.Tensor, torch.Tensor | None]]):
        self.weight, self.bias = _derived(owner, name, build)
        weight = self.weight.detach()
        cpu32 = weight.device.type == "cpu" and weight.dtype == torch.float32
        self.weight_t = _derived(owner, name + ":t", lambda: weight.t().contiguous()) if cpu32 else None
        self.packed = None
        if cpu32 and _onednn_linear_available():
            try:
                self.packed = _derived(owner, name + ":packed",
                                       lambda: torch.ops.mkldnn._reorder_linear_weight(weight, PACKED_ROWS))
            except RuntimeError:  # a oneDNN build without this kernel: the plain path serves
                self.packed = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // x.shape[-1]
        if rows == 1 and self.weight_t is not None:
            y = x @ self.weight_t
            return y if self.bias is None else y + self.bias
        if rows > 1 and self.packed is not None:
            return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")
        return F.linear(x, self.weight, self.bias)


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
        self.qkv = FastLinear(attn, "qkv", lambda: _fused(attn.q_proj, attn.k_proj, attn.v_proj))
        self.o = FastLinear(attn.o_proj, "o", lambda: (attn.o_proj.weight, getattr(attn.o_proj, "bias", None)))

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
        qkv = self.qkv(x).view(batch, n, heads + 2 * kv_heads, dim)
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
        return self.o(out.transpose(1, 2).reshape(batch, n, heads * dim))


class FusedDecoderLayer:
    """A LlamaDecoderLayer's forward in few torch calls: RMSNorm as one call, fused q/k/v and
    gate/up projections. Used for greedy and speculative decoding alike (the same runner), so the
    speedup compares like with like."""

    def __init__(self, layer: nn.Module, layer_idx: int):
        self.attn = FusedAttention(layer.self_attn, layer_idx)
        mlp = layer.mlp
        self.gate_up = FastLinear(mlp, "gate_up", lambda: _fused(mlp.gate_proj, mlp.up_proj))
        self.down = FastLinear(mlp.down_proj, "down", lambda: (mlp.down_proj.weight, getattr(mlp.down_proj, "bias", None)))
        self.intermediate = mlp.gate_proj.weight.shape[0]
        self.act = mlp.act_fn
        self.norm1 = (layer.input_layernorm.weight, layer.input_layernorm.variance_epsilon)
        self.norm2 = (layer.post_attention_layernorm.weight, layer.post_attention_layernorm.variance_epsilon)

    @staticmethod
    def supports(layer: nn.Module) -> bool:
        return (type(layer).__name__ == "LlamaDecoderLayer" and FusedAttention.supports(layer.self_attn)
                and type(layer.input_layernorm).__name__ == "LlamaRMSNorm"
                and all(hasattr(layer.mlp, n) for n in ("gate_proj", "up_proj", "down_proj", "act_fn"))
                and not hooked(layer))

    def __call__(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask, cache) -> torch.Tensor:
        h = rms_norm(x, *self.norm1)
        x = x + self.attn(h, cos, sin, mask, cache)
        h = self.gate_up(rms_norm(x, *self.norm2))
        return x + self.down(self.act(h[..., : self.intermediate]) * h[..., self.intermediate:])


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
        # The vocabulary-wide head is a fifth of the model: it gets the fast layouts too.
        head = self.head
        self.head_linear = (FastLinear(head, "head", lambda: (head.weight, head.bias))
                            if type(head) is nn.Linear and not hooked(head) else None)

    def head_logits(self, features: torch.Tensor) -> torch.Tensor:
        """The LM head on already-normalised features."""
        if self.head_linear is None:
            return self.head(features)
        return self.head_linear(features)

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



# --- drafters ----------------------------------------------------------------------------------

class Drafter:
    """What the draft/verify loop asks of a drafter.

    ``shared_layers`` (k) is how many of the frozen model's first layers the draft runs; their
    hidden states are kept and verification runs layers k+1..L over them (k=0: the draft shares
    nothing and verification runs every layer over the embeddings). ``cache_slots`` is how many KV
    cache slots the drafter needs beyond the model's own (they come after the model's layers).
    Per request, `bind` gets the runner and the cache; `extend` takes the shared layers' hidden
    states of new positions (starting at ``position``), updates the drafter's own state and returns
    its features; `logits` turns the last position's features into next-token logits and `propose`
    into the drafted token and its probability (over ``draft_vocab`` only, when set). `extend` runs
    for every position (the prompt included); `propose` only where drafting continues.
    """

    shared_layers: int = 0
    cache_slots: int = 0
    draft_vocab: torch.Tensor | None = None  # token ids of a trimmed draft head (None: the full head)

    def bind(self, runner: "LayerRunner", cache: KVCache) -> None:
        self.runner, self.cache = runner, cache
        self.trimmed = TrimmedHead(runner, self.draft_vocab) if self.draft_vocab is not None else None

    def extend(self, shallow: torch.Tensor, position: int) -> torch.Tensor:
        raise NotImplementedError

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        return self.runner.head_logits(features[:, -1])

    def propose(self, features: torch.Tensor) -> tuple[float, int]:
        """The draft's next token and its probability (the second exit compares it with the
        threshold). With ``draft_vocab`` set, the head is `TrimmedHead` over those ids."""
        trimmed = getattr(self, "trimmed", None)
        if trimmed is not None:
            return trimmed.top(features[:, -1])
        confidence, token = self.logits(features).softmax(-1).max(-1)
        return confidence.item(), token.item()


class TrimmedHead:
    """A draft head over part of the vocabulary: the frozen LM head's rows for ``token_ids`` (the
    most frequent tokens, say), as one transposed matrix. The draft can only propose those tokens
    and its confidence is a softmax over them; verification still uses the full head, so the
    output is unchanged, only drafting gets cheaper."""

    def __init__(self, runner: "LayerRunner", token_ids: torch.Tensor):
        head = runner.head
        ids = token_ids.to(device=head.weight.device, dtype=torch.long)
        fingerprint = f"rows:{len(ids)}:{int(ids.sum())}:{int((ids * torch.arange(len(ids), device=ids.device)).sum())}"
        self.ids = ids
        self.weight_t = _derived(head, fingerprint, lambda: head.weight[ids].t().contiguous())
        bias = getattr(head, "bias", None)
        self.bias = bias[ids] if bias is not None else None

    def top(self, features: torch.Tensor) -> tuple[float, int]:
        logits = features @ self.weight_t
        if self.bias is not None:
            logits = logits + self.bias
        confidence, index = logits.softmax(-1).max(-1)
        return confidence.item(), int(self.ids[index.item()])


class EarlyExitDrafter(Drafter):
    """The bare early exit: layers 1..k, then the model's own final norm and LM head (or the
    trimmed head over ``draft_vocab``)."""

    def __init__(self, exit_layer: int, draft_vocab: torch.Tensor | None = None):
        self.shared_layers = exit_layer
        self.draft_vocab = draft_vocab

    def extend(self, shallow: torch.Tensor, position: int) -> torch.Tensor:
        return self.runner.norm(shallow)


# --- decoding ----------------------------------------------------------------------------------

PROGRESS_EVERY = 1  # report progress every this many new tokens (and at the end)


def check_request(model: nn.Module, prompt_ids, max_new_tokens: int, max_length: int | None = None) -> int:
    """``prompt_ids``: the prompt's token ids, or its input embeddings (1 x T x D)."""
    if prompt_ids is None or len(prompt_ids) == 0:
        raise BadInput("The prompt is empty: type some text or pick an example.")
    if max_new_tokens < 1:
        raise BadInput("Ask for at least one new token.")
    limit = max_length or context_length(model)
    if len(prompt_ids) + max_new_tokens > limit:
        raise BadInput(f"The prompt ({len(prompt_ids)} tokens) plus {max_new_tokens} new tokens exceeds the model's "
                       f"{limit}-token context; shorten the prompt or ask for fewer tokens.")
    return limit


def context_length(model: nn.Module) -> int:
    return getattr(model.config, "max_position_embeddings", 2048)


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


def _reporter(progress: Progress, max_new_tokens: int, text: str) -> Callable[[int, bool], None]:
    """Calls ``progress(fraction, text)`` every `PROGRESS_EVERY` tokens and when decoding ends."""
    state = {"last": 0}

    def report(done: int, finished: bool) -> None:
        if progress is None:
            return
        done = min(done, max_new_tokens)
        if finished or done // PROGRESS_EVERY > state["last"] // PROGRESS_EVERY:
            progress(1.0 if finished else done / max_new_tokens, f"{text}: {done}/{max_new_tokens} tokens")
        state["last"] = done

    return report


def _checked_prompt(model: nn.Module, prompt_ids, prompt_embeds: torch.Tensor | None, max_new_tokens: int):
    """(the prompt embeddings as T x D or None for token ids, the prompt's length), checked."""
    prompt = prompt_embeds[0] if prompt_embeds is not None and prompt_embeds.dim() == 3 else prompt_embeds
    check_request(model, prompt if prompt is not None else prompt_ids, max_new_tokens)
    return prompt, len(prompt) if prompt is not None else len(prompt_ids)


def prompt_inputs(runner: "LayerRunner", prompt_ids=None, prompt_embeds: torch.Tensor | None = None) -> torch.Tensor:
    """The prompt as 1 x T x D input embeddings: its token ids embedded, or the embeddings given."""
    if prompt_embeds is not None:
        embeds = prompt_embeds if prompt_embeds.dim() == 3 else prompt_embeds[None]
        return embeds.to(device=runner.embed.weight.device, dtype=runner.embed.weight.dtype)
    return runner.embed(torch.tensor([list(prompt_ids)], device=runner.embed.weight.device))


@torch.inference_mode()
def greedy_decode(model: nn.Module, prompt_ids: list[int] | None, max_new_tokens: int, eos_id: int | None = None,
                  progress: Progress = None, prompt_embeds: torch.Tensor | None = None) -> Decoded:
    """Plain greedy decoding with a KV cache, one token per full forward: the baseline. The prompt
    is ``prompt_ids`` or, when given, ``prompt_embeds`` (T x D or 1 x T x D input embeddings)."""
    prompt, length = _checked_prompt(model, prompt_ids, prompt_embeds, max_new_tokens)
    report = _reporter(progress, max_new_tokens, "plain greedy decoding")
    start_time = time.perf_counter()
    runner = LayerRunner(model, length + max_new_tokens + 1)
    cache = KVCache(runner.num_layers, runner.max_length)
    embeds = prompt_inputs(runner, prompt_ids, prompt)
    if length > 1:
        runner.run(embeds[:, :-1], 0, 0, runner.num_layers, cache)
    last_embed, position = embeds[:, -1:], length - 1
    tokens: list[int] = []
    sources: list[str] = []
    while True:
        hidden = runner.run(last_embed, position, 0, runner.num_layers, cache)
        last = runner.logits(hidden[:, -1:]).argmax(-1)
        last_embed = runner.embed(last)
        tokens.append(int(last))
        sources.append("full")
        position += 1
        finished = _finish(tokens, sources, max_new_tokens, eos_id)
        report(len(tokens), finished)
        if finished:
            break
    return Decoded(tokens, sources, time.perf_counter() - start_time, verify_passes=len(tokens),
                   shallow_positions=len(tokens), deep_positions=len(tokens), num_layers=runner.num_layers,
                   exit_layer=runner.num_layers)


def check_exit_layer(num_layers: int, exit_layer: int | None) -> int:
    if exit_layer is None or not 1 <= exit_layer < num_layers:
        raise BadInput(f"The exit layer must be between 1 and {num_layers - 1}.")
    return exit_layer


def check_settings(threshold: float, gamma: int) -> None:
    if not 0.0 <= threshold <= 1.0:
        raise BadInput("The confidence threshold must lie between 0 and 1.")
    if not 1 <= gamma <= 32:
        raise BadInput("gamma (the most draft tokens per round) must be between 1 and 32.")


class Tally:
    """The tokens of one speculative decode, who produced each, and its draft counts."""

    def __init__(self, record_events: bool = False):
        self.tokens: list[int] = []
        self.sources: list[str] = []
        self.events: list[dict] = []
        self.passes = self.drafted = self.accepted = 0
        self.record_events = record_events

    def commit(self, drafts: list[int], verdict: list[int]) -> tuple[int, list[int]]:
        """Keep the longest prefix of drafts the full model agrees with, then its own next token;
        returns (accepted drafts, the new tokens)."""
        accepted = 0
        while accepted < len(drafts) and drafts[accepted] == verdict[accepted]:
            accepted += 1
        new = drafts[:accepted] + [verdict[accepted]]
        self.tokens.extend(new)
        self.sources.extend(["draft"] * accepted + ["full"])
        self.passes += 1
        self.drafted += len(drafts)
        self.accepted += accepted
        if self.record_events:
            self.events.append({"drafted": len(drafts), "accepted": accepted})
        return accepted, new


@torch.inference_mode()
def speculative_decode(model: nn.Module, drafter: Drafter, prompt_ids: list[int], max_new_tokens: int,
                       threshold: float = 0.6, gamma: int = 6, eos_id: int | None = None,
                       progress: Progress = None, record_events: bool = False,
                       progress_text: str = "speculative decoding") -> Decoded:
    """Self-speculative greedy decoding; the tokens equal `greedy_decode`'s.

    Each round starts from the last committed token, which no layer has seen yet. Drafting runs it
    (and then each drafted token) through layers 1..k and the drafter, keeping every shallow hidden
    state, and stops after `gamma` drafts or when the draft's top probability is below `threshold`
    (the second early exit). Verification runs layers k+1..L once over all kept shallow states; the
    longest prefix of drafts the full model agrees with is accepted, followed by the full model's
    own next token. Caches of rejected positions are rolled back, so no layer ever recomputes an
    accepted token.
    """
    check_request(model, prompt_ids, max_new_tokens)
    num_layers = len(model.model.layers)
    k = drafter.shared_layers
    if k:  # a drafter that shares no layer (k=0) verifies every layer over the embeddings
        check_exit_layer(num_layers, k)
    check_settings(threshold, gamma)
    report = _reporter(progress, max_new_tokens, progress_text)
    start_time = time.perf_counter()
    runner = LayerRunner(model, len(prompt_ids) + max_new_tokens + gamma + 1)
    cache = KVCache(num_layers + drafter.cache_slots, runner.max_length)
    drafter.bind(runner, cache)
    device = runner.embed.weight.device
    ids = torch.tensor([prompt_ids], device=device)

    if len(prompt_ids) > 1:
        shallow = runner.run(runner.embed(ids[:, :-1]), 0, 0, k, cache)
        drafter.extend(shallow, 0)  # fills the drafter's cache for the prompt
        runner.run(shallow, 0, k, num_layers, cache)
    last, position = ids[:, -1:], len(prompt_ids) - 1
    tally = Tally(record_events)
    tokens, sources = tally.tokens, tally.sources
    positions = 0
    while True:
        room = max_new_tokens - len(tokens) - 1  # verification always adds one token
        drafts: list[int] = []
        shallow_states = []
        token = last
        while True:
            shallow = runner.run(runner.embed(token), position + len(drafts), 0, k, cache)
            shallow_states.append(shallow)
            features = drafter.extend(shallow, position + len(drafts))
            if len(drafts) >= min(gamma, room):
                break
            confidence, top_token = drafter.propose(features)
            if confidence < threshold:
                break
            drafts.append(top_token)
            token = torch.tensor([[top_token]], device=device)
        deep = runner.run(torch.cat(shallow_states, dim=1), position, k, num_layers, cache)
        verdict = runner.logits(deep).argmax(-1)[0].tolist()
        accepted, _ = tally.commit(drafts, verdict)
        positions += len(shallow_states)
        position += accepted + 1
        cache.crop(position)
        last = torch.tensor([[verdict[accepted]]], device=device)
        finished = _finish(tokens, sources, max_new_tokens, eos_id)
        report(len(tokens), finished)
        if finished:
            break
    return Decoded(tokens, sources, time.perf_counter() - start_time, verify_passes=tally.passes, drafted=tally.drafted,
                   accepted=tally.accepted, shallow_positions=positions, deep_positions=positions,
                   num_layers=num_layers, exit_layer=k, events=tally.events)


# --- feature-level drafting (the EAGLE family) -------------------------------------------------

class FeatureDrafter:
    """What `feature_speculative_decode` asks of a drafter that works on the full model's features.

    A draft *pair* at position t is (embedding of token t+1, the full model's feature at t), the
    feature being the last layer's output after the final norm; from it the drafter predicts the
    feature at t+1, whose LM-head top token is the draft for position t+2. Per request `bind` gets
    the runner and the longest sequence; `start` reads the whole prompt (its input embeddings, the
    full model's features and which positions are image tokens) plus the first new token's
    embedding and returns the drafter's predicted feature; `extend` commits pairs built from
    verified features; `step` drafts one pair ahead on the drafter's own predicted feature
    (uncommitted); `rollback` forgets every uncommitted step; `propose` turns a predicted feature
    into (probability, token) over ``draft_vocab`` (a trimmed head) or the full head.
    """

    draft_vocab: torch.Tensor | None = None

    def bind(self, runner: "LayerRunner", max_length: int) -> None:
        self.runner = runner
        self.trimmed = TrimmedHead(runner, self.draft_vocab) if self.draft_vocab is not None else None

    def start(self, prompt_embeds: torch.Tensor, features: torch.Tensor, image_mask: torch.Tensor | None,
              next_embed: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def extend(self, embeds: torch.Tensor, features: torch.Tensor, position: int) -> torch.Tensor:
        raise NotImplementedError

    def step(self, embed: torch.Tensor, feature: torch.Tensor, position: int) -> torch.Tensor:
        raise NotImplementedError

    def rollback(self) -> None:
        raise NotImplementedError

    def propose(self, feature: torch.Tensor) -> tuple[float, int]:
        if self.trimmed is not None:
            return self.trimmed.top(feature[:, -1])
        confidence, token = self.runner.head_logits(feature[:, -1]).softmax(-1).max(-1)
        return confidence.item(), token.item()


@torch.inference_mode()
def feature_speculative_decode(model: nn.Module, drafter: FeatureDrafter, prompt_ids: list[int] | None,
                               max_new_tokens: int, gamma: int = 4, threshold: float = 0.0,
                               eos_id: int | None = None, progress: Progress = None,
                               prompt_embeds: torch.Tensor | None = None, image_mask: torch.Tensor | None = None,
                               record_events: bool = False, progress_text: str = "speculative decoding") -> Decoded:
    """Greedy decoding with a feature drafter (EAGLE-style chain drafting); the tokens equal
    `greedy_decode`'s.

    The prompt runs once through every layer. Each round the drafter proposes up to `gamma` tokens
    from its own predicted features (stopping early below `threshold`); the full model then runs
    the last committed token and all drafts in one pass, the longest agreeing prefix is accepted
    plus the full model's own next token, the full model's cache is cut back to the accepted
    positions, and the drafter commits pairs built from the verified features (its uncommitted
    steps are dropped, since they were built on predicted features).
    """
    prompt, length = _checked_prompt(model, prompt_ids, prompt_embeds, max_new_tokens)
    check_settings(threshold, gamma)
    report = _reporter(progress, max_new_tokens, progress_text)
    start_time = time.perf_counter()
    runner = LayerRunner(model, length + max_new_tokens + gamma + 2)
    num_layers = runner.num_layers
    cache = KVCache(num_layers, runner.max_length)
    drafter.bind(runner, runner.max_length)
    embeds = prompt_inputs(runner, prompt_ids, prompt)
    device = embeds.device

    features = runner.norm(runner.run(embeds, 0, 0, num_layers, cache))
    last = int(runner.head_logits(features[:, -1]).argmax(-1))
    tally = Tally(record_events)
    tokens, sources = tally.tokens, tally.sources
    tokens.append(last)
    sources.append("full")
    finished = _finish(tokens, sources, max_new_tokens, eos_id)
    report(len(tokens), finished)
    if not finished:
        feature = drafter.start(embeds, features, image_mask, runner.embed(torch.tensor([[last]], device=device)))
    position = length  # the last committed token's position (not yet run through the model)
    while not finished:
        budget = min(gamma, max_new_tokens - len(tokens) - 1)  # verification always adds one token
        drafts: list[int] = []
        while len(drafts) < budget:
            confidence, token = drafter.propose(feature)
            if confidence < threshold:
                break
            drafts.append(token)
            if len(drafts) < budget:
                feature = drafter.step(runner.embed(torch.tensor([[token]], device=device)), feature,
                                       position + len(drafts) - 1)
        ids = torch.tensor([[last] + drafts], device=device)
        verified = runner.norm(runner.run(runner.embed(ids), position, 0, num_layers, cache))
        verdict = runner.head_logits(verified).argmax(-1)[0].tolist()
        accepted, new = tally.commit(drafts, verdict)
        cache.crop(position + accepted + 1)
        finished = _finish(tokens, sources, max_new_tokens, eos_id)
        report(len(tokens), finished)
        if finished:
            break
        drafter.rollback()
        feature = drafter.extend(runner.embed(torch.tensor([new], device=device)), verified[:, : accepted + 1], position)
        position += accepted + 1
        last = new[-1]
    # the prefill's token counts as one pass, as each of plain greedy's tokens does
    return Decoded(tokens, sources, time.perf_counter() - start_time, verify_passes=tally.passes + 1,
                   drafted=tally.drafted, accepted=tally.accepted, num_layers=num_layers, events=tally.events)
