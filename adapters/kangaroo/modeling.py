"""Kangaroo (Liu et al., arXiv 2404.18911): lossless self-speculative decoding with double early exit.

The frozen causal LM is split at an exit layer k. Its first k layers plus a small adapter (a
normalisation, one attention layer, a normalisation) and the frozen LM head form the draft model;
the remaining layers verify the drafted tokens in one pass. Drafting stops early (the second exit)
as soon as the draft's top probability falls below a threshold. Only greedy decoding at batch
size 1 is implemented; its output is, by construction, the full model's greedy output.

Everything here is plain torch on top of a transformers Llama-family model (`model.model.layers`,
`model.model.norm`, `model.lm_head`, `model.model.rotary_emb`). The decoding loop, the KV cache and
the fused layer runner are the shared engine in `adapters.speculative.engine`; this module is the
Kangaroo-specific part: the adapter, its drafter, its file format and its training loss.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from adapters.common.contract import Progress
from adapters.common.errors import BadInput
from adapters.common.weights import load_strict, read_header
from adapters.speculative.decoded import Decoded
from adapters.speculative.engine import (
    Drafter,
    EarlyExitDrafter,
    FusedAttention,
    check_exit_layer,
    hooked,
    rms_norm,
    speculative_decode,
)

ADAPTER_FORMAT = "kangaroo-adapter-v1"
DRAFT_VOCAB_KEY = "draft_vocab"


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
                and not hooked(adapter))

    def __call__(self, shallow: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask, cache) -> torch.Tensor:
        attended = self.attn(rms_norm(shallow, *self.norm1), cos, sin, mask, cache)
        return rms_norm(shallow + attended, *self.norm2)


def count_trainable(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def save_adapters(path: Path, adapters: dict[int, KangarooAdapter], metadata: dict[str, str] | None = None,
                  draft_vocab: torch.Tensor | None = None) -> None:
    """One file for the adapters of several exit layers (``exit<k>.<name>``) and, optionally, the
    draft vocabulary (``draft_vocab``: token ids whose LM-head rows form the draft's head)."""
    from safetensors.torch import save_file

    tensors = {f"exit{k}.{name}": t.detach().contiguous().cpu() for k, a in adapters.items() for name, t in a.state_dict().items()}
    if draft_vocab is not None:
        tensors[DRAFT_VOCAB_KEY] = draft_vocab.detach().to(torch.int32).contiguous().cpu()
    meta = {"format": ADAPTER_FORMAT, "exits": ",".join(str(k) for k in sorted(adapters)), **(metadata or {})}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=meta)


def load_draft_vocab(path: Path) -> torch.Tensor | None:
    """The draft vocabulary stored with the adapters (token ids), or None (the draft uses the full head)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        if DRAFT_VOCAB_KEY not in handle.keys():
            return None
        return handle.get_tensor(DRAFT_VOCAB_KEY).long()


def load_adapters(path: Path, model: nn.Module) -> dict[int, KangarooAdapter]:
    from safetensors.torch import load_file

    meta = read_header(path)
    if meta.get("format") != ADAPTER_FORMAT:
        raise BadInput(f"{Path(path).name} is not a Kangaroo adapter file (format {meta.get('format')!r}).")
    tensors = load_file(str(path))
    adapters = {}
    for k in (int(x) for x in meta["exits"].split(",")):
        adapter = KangarooAdapter(model, k)
        prefix = f"exit{k}."
        load_strict(adapter, {n[len(prefix):]: t for n, t in tensors.items() if n.startswith(prefix)},
                    role=f"Kangaroo exit adapter (layer {k}, {Path(path).name})")
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

class AdapterDrafter(Drafter):
    """Kangaroo's draft for the shared engine: layers 1..k, the adapter (with its own KV cache slot
    after the model's layers), then the frozen LM head."""

    cache_slots = 1

    def __init__(self, adapter: KangarooAdapter, draft_vocab: torch.Tensor | None = None):
        self.adapter = adapter
        self.shared_layers = adapter.exit_layer
        self.draft_vocab = draft_vocab

    def bind(self, runner, cache) -> None:
        super().bind(runner, cache)
        # the adapter's cache slot comes after the model's own layers (as its attention was built)
        self.fused = FusedAdapter(self.adapter, runner.num_layers) if FusedAdapter.supports(self.adapter) else None

    def extend(self, shallow: torch.Tensor, position: int) -> torch.Tensor:
        runner, n = self.runner, shallow.shape[1]
        if self.fused is not None:
            return self.fused(shallow, runner.cos_heads[:, position: position + n], runner.sin_heads[:, position: position + n],
                              runner.causal_mask(position, n), self.cache)
        return self.adapter(shallow, runner.position_embeddings(position, n), runner.causal_mask(position, n), self.cache)


def kangaroo_decode(model: nn.Module, adapter: KangarooAdapter | None, prompt_ids: list[int], max_new_tokens: int,
                    threshold: float = 0.6, gamma: int = 6, eos_id: int | None = None, exit_layer: int | None = None,
                    progress: Progress = None, record_events: bool = False,
                    draft_vocab: torch.Tensor | None = None) -> Decoded:
    """Kangaroo's self-speculative greedy decoding; the tokens equal `greedy_decode`'s.

    The draft is layers 1..k + the adapter + the LM head; `adapter=None` drafts with the bare early
    exit (layers 1..k + final norm + LM head) at `exit_layer`. With `draft_vocab` (token ids) the
    draft's head is the LM head's rows for those ids only (`TrimmedHead`); verification always uses
    the full head. Drafting stops early when the draft's top probability is below `threshold` (the
    second exit); see `speculative_decode`.
    """
    k = adapter.exit_layer if adapter is not None else exit_layer
    check_exit_layer(len(model.model.layers), k)
    drafter = AdapterDrafter(adapter, draft_vocab) if adapter is not None else EarlyExitDrafter(k, draft_vocab)
    text = "Kangaroo with the adapter" if adapter is not None else "Kangaroo with the bare exit"
    return speculative_decode(model, drafter, prompt_ids, max_new_tokens, threshold=threshold, gamma=gamma,
                              eos_id=eos_id, progress=progress, record_events=record_events, progress_text=text)
