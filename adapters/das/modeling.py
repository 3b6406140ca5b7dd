"""Dynamic architecture skipping (DAS) on the small VLM's language model, re-implemented.

Each decoder layer of the frozen LM is wrapped in a `SkippableLayer`. A layer in the current skip
set either becomes ``x + delta(norm(x))`` (mode ``adapters``: the layer's own frozen pre-attention
norm, then a bottleneck adapter with a zero-initialised up-projection, so a fresh adapter is plain
removal) or is dropped outright (mode ``removed``: ``x``). Mode ``full`` runs every layer.

The search (`sample_skip_set`, `reinforce_update`): every layer has a skip score ``s_i`` and a skip
probability ``p_i = sigmoid(s_i)``; a skip set of ``k`` layers is drawn without replacement with
weights ``p``; each candidate set is scored on a validation batch by ``r = exp(-loss)`` and, against
the mean reward of the candidates drawn together (the baseline), every layer of a candidate set moves
by ``lr * (r - baseline) * p_i (1 - p_i)`` (the REINFORCE gradient of a sigmoid). After the search
the top-k layers by ``p`` are skipped and their adapters trained.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from adapters.das.config import DASConfig
from adapters.vlm.adapter import RouterAdapter

MODES = ("full", "adapters", "removed")


@dataclass
class SkipState:
    """What every wrapped layer reads during one forward: shared by all layers of one model."""

    mode: str = "full"
    skipped: frozenset = field(default_factory=frozenset)


class SkippableLayer(nn.Module):
    """A frozen decoder layer that the shared `SkipState` can replace by its adapter or remove."""

    def __init__(self, layer: nn.Module, index: int, state: SkipState, adapter: RouterAdapter | None):
        super().__init__()
        self.layer, self.index, self.state, self.adapter = layer, index, state, adapter

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        state = self.state
        if state.mode == "full" or self.index not in state.skipped:
            return self.layer(hidden_states, *args, **kwargs)
        if state.mode == "removed" or self.adapter is None:
            return hidden_states
        h = self.layer.input_layernorm(hidden_states)
        return hidden_states + self.adapter.delta(h).to(hidden_states.dtype)


class DAS(nn.Module):
    """The trainable part: one replacing adapter per candidate layer, and the skip scores (a buffer:
    the search moves them by its reward rule, not by gradients)."""

    def __init__(self, config: DASConfig):
        super().__init__()
        self.config = config
        self.adapters = nn.ModuleDict({str(i): RouterAdapter(config.dim, config.rank, config.scale, routed=False,
                                                             dropout=0.0) for i in config.candidates})
        self.register_buffer("scores", torch.zeros(config.num_layers))

    def probabilities(self) -> torch.Tensor:
        """Per-layer skip probability sigmoid(score); 0 for layers that are never skipped."""
        p = torch.sigmoid(self.scores.float())
        keep = torch.ones_like(p, dtype=torch.bool)
        keep[list(self.config.candidates)] = False
        return p.masked_fill(keep, 0.0)

    def top_k(self, k: int) -> tuple[int, ...]:
        """The k most skippable layers (ties: the deeper layer first), sorted by index."""
        p = self.probabilities()
        order = sorted(self.config.candidates, key=lambda i: (-float(p[i]), -i))
        return tuple(sorted(order[:k]))


def attach(lm: nn.Module, das: DAS | None) -> SkipState:
    """Wrap every decoder layer of `lm` (a private copy of the frozen LM's module tree, see
    `adapters.vlm.model.private_lm`) so a `SkipState` can skip it; returns that state."""
    state = SkipState()
    layers = lm.model.layers
    for i in range(len(layers)):
        if isinstance(layers[i], SkippableLayer):
            raise ValueError("this LM already has skippable layers")
        adapter = das.adapters[str(i)] if das is not None and str(i) in das.adapters else None
        layers[i] = SkippableLayer(layers[i], i, state, adapter)
    return state


class skipping:
    """``with skipping(state, layers, mode):`` runs the wrapped LM with ``layers`` replaced by their
    adapters (``mode="adapters"``) or removed (``"removed"``); ``"full"`` runs every layer."""

    def __init__(self, state: SkipState, layers, mode: str = "adapters"):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self.state, self.layers, self.mode = state, frozenset(int(i) for i in layers), mode

    def __enter__(self):
        self.previous = (self.state.mode, self.state.skipped)
        self.state.mode, self.state.skipped = self.mode, self.layers
        return self.state

    def __exit__(self, *exc):
        self.state.mode, self.state.skipped = self.previous
        return False


def sample_skip_set(probabilities: torch.Tensor, k: int, generator: torch.Generator | None = None) -> tuple[int, ...]:
    """k distinct layers drawn without replacement, each draw with weights ``probabilities``."""
    picked = torch.multinomial(probabilities.float(), k, replacement=False, generator=generator)
    return tuple(sorted(int(i) for i in picked))


def reinforce_update(das: DAS, skip_sets, losses, lr: float) -> list[float]:
    """Move the skip scores by DAS's rule: reward exp(-loss) of each candidate set against the mean
    reward of all candidates (the baseline); returns the rewards."""
    import math

    rewards = [math.exp(-float(loss)) for loss in losses]
    baseline = sum(rewards) / len(rewards)
    p = torch.sigmoid(das.scores.float())
    with torch.no_grad():
        for layers, reward in zip(skip_sets, rewards):
            for i in layers:
                das.scores[i] += lr * (reward - baseline) * float(p[i] * (1 - p[i]))
    return rewards


def batch_loss(lm: nn.Module, rows, pad_id: int, image_embeds: torch.Tensor | None = None) -> torch.Tensor:
    """Answer-only next-token cross-entropy of `lm` as it is currently skipped; ``rows`` are
    `adapters.vlm.modeling.ChatLayout.encode` triples (image slots filled by ``image_embeds``)."""
    from adapters.vlm.modeling import answer_logits_loss, pad_batch, splice

    ids, slots, mask, labels = pad_batch(rows, pad_id)
    return answer_logits_loss(lm, splice(lm.get_input_embeddings(), ids, slots, image_embeds), mask, labels)
