"""Mixture-of-Modality Adaptation (LaVIN) on the small VLM, re-implemented.

In every adapted LM layer the adapter sits before attention, on the normalised input:
``h = norm(x);  h' = h + s * (w0 * up0(down(h)) + w1 * up1(down(h)))`` with one shared
down-projection, two zero-initialised up-projections (so a fresh adapter is the identity) and a
router ``w = softmax(W_r h_m / t)`` read at the modality token ``m``. As in LaVIN the modality
token is a learned embedding (one for text-only, one for image+text instructions) at position 0;
a causal LM lets position 0 attend only to itself, so its per-layer state depends on the modality
alone. Here that token runs as its own stream through the adapted layers, and the prompt tokens do
not attend to it: the routing is LaVIN's, and a fresh adapter (or the adapter switched off) gives
exactly the frozen model. The stream is the modality token alone (LaVIN's position 0) or, with
``config.modality_prefix``, one fixed token of the chat template and then the modality token:
SmolLM2 makes position 0 an attention sink whose normalised state from layer 12 on is the same for
any token, so there a router could not see the modality. ``routed=False`` is the ablation
"adapters without router": one up-projection, ``h + s * up0(down(h))``, for every input.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from adapters.mma.config import MMAConfig
from adapters.vlm.adapter import RouterAdapter

TEXT, IMAGE = 0, 1
ROUTES = ("auto", "text", "image")


@dataclass
class RoutingState:
    """What the adapted norms read during one forward: shared by all layers of one model."""

    enabled: bool = False
    temperature: float = 5.0
    recording: bool = False  # the modality stream: route from its own token, record the weights
    weights: dict = field(default_factory=dict)  # layer -> B x 2


class AdaptedNorm(nn.Module):
    """A decoder layer's pre-attention norm followed by its MMA adapter."""

    def __init__(self, norm: nn.Module, adapter: RouterAdapter, layer: int, state: RoutingState):
        super().__init__()
        self.norm, self.adapter, self.layer, self.state = norm, adapter, layer, state

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        state = self.state
        if not state.enabled:
            return h
        weights = None
        if self.adapter.routed:
            if state.recording:
                weights = self.adapter.route(h[:, -1], state.temperature)
                state.weights[self.layer] = weights
            else:
                weights = state.weights[self.layer]
        return self.adapter(h, weights)


class MMA(nn.Module):
    """The trainable part: per-layer adapters and the two modality embeddings."""

    def __init__(self, config: MMAConfig):
        super().__init__()
        self.config = config
        self.adapters = nn.ModuleDict({str(i): RouterAdapter(config.dim, config.rank, config.scale, config.routed)
                                       for i in config.layers})
        self.modality = nn.Embedding(2, config.dim) if config.routed else None
        if self.modality is not None:
            nn.init.normal_(self.modality.weight, std=config.modality_std)


def attach(lm: nn.Module, mma: MMA) -> RoutingState:
    """Put `mma`'s adapters into `lm` (a private copy of the frozen LM's module tree, see
    `adapters.vlm.model.private_lm`) before attention; returns the state they read."""
    state = RoutingState(temperature=mma.config.temperature)
    for i, layer in enumerate(lm.model.layers):
        if str(i) in mma.adapters:
            norm = layer.input_layernorm
            if isinstance(norm, AdaptedNorm):
                raise ValueError("this LM already carries adapters")
            layer.input_layernorm = AdaptedNorm(norm, mma.adapters[str(i)], i, state)
    return state


def route_weights(lm: nn.Module, mma: MMA, state: RoutingState, modality: torch.Tensor,
                  temperature: float) -> dict:
    """Per-layer B x 2 path weights for the given modality ids: the modality token through the
    adapted layers, alone (LaVIN's position 0) or after ``config.modality_prefix``; the router reads
    the modality token's state, the stream's last position."""
    state.weights = {}
    state.recording, state.enabled, state.temperature = True, True, temperature
    stream = mma.modality(modality)[:, None]
    if mma.config.modality_prefix is not None:
        embed = lm.get_input_embeddings()
        prefix = embed(torch.tensor([mma.config.modality_prefix], device=stream.device)).to(stream.dtype)
        stream = torch.cat([prefix.expand(len(modality), 1, -1), stream], 1)
    try:
        lm.model(inputs_embeds=stream, use_cache=False)
    finally:
        state.recording = False
    return dict(state.weights)


class adapted:
    """``with adapted(lm, mma, state, modality_ids, route=..., temperature=...):`` runs `lm` with
    the adapters on, routed by each row's modality (``route="auto"``) or forced to the text or
    image route for every row. ``enabled=False`` runs the frozen model."""

    def __init__(self, lm, mma: MMA, state: RoutingState, modality: torch.Tensor, route: str = "auto",
                 temperature: float | None = None, enabled: bool = True):
        if route not in ROUTES:
            raise ValueError(f"route must be one of {ROUTES}")
        self.lm, self.mma, self.state, self.enabled = lm, mma, state, enabled
        self.temperature = temperature if temperature is not None else mma.config.temperature
        ids = modality.clone()
        if route != "auto":
            ids[:] = TEXT if route == "text" else IMAGE
        self.modality = ids

    def __enter__(self):
        if not self.enabled:
            self.state.enabled = False
            return {}
        weights = {}
        if self.mma.config.routed:
            weights = route_weights(self.lm, self.mma, self.state, self.modality, self.temperature)
        self.state.enabled = True
        return weights

    def __exit__(self, *exc):
        self.state.enabled = False
        return False


def batch_loss(lm: nn.Module, mma: MMA, state: RoutingState, rows, modality: int, pad_id: int,
               image_embeds: torch.Tensor | None = None) -> torch.Tensor:
    """The training loss of one batch of one modality: answer-only next-token cross-entropy of the
    adapted LM; ``rows`` are `adapters.vlm.modeling.ChatLayout.encode` triples (image slots filled
    by ``image_embeds``)."""
    from adapters.vlm.modeling import answer_logits_loss, pad_batch, splice

    ids, slots, mask, labels = pad_batch(rows, pad_id)
    with adapted(lm, mma, state, torch.full((len(rows),), modality)):
        return answer_logits_loss(lm, splice(lm.get_input_embeddings(), ids, slots, image_embeds), mask, labels)


def distill_loss(lm: nn.Module, mma: MMA, state: RoutingState, rows, modality: int, pad_id: int) -> torch.Tensor:
    """Text-only distillation: the mean over answer positions of KL(frozen || adapted) over the whole
    next-token distribution, the frozen logits being the same LM with the adapters off (no image
    slots: ``rows`` are text-only `ChatLayout.encode` triples)."""
    import torch.nn.functional as F

    from adapters.vlm.modeling import pad_batch

    ids, _, mask, labels = pad_batch(rows, pad_id)
    ids = torch.tensor(ids)
    where = labels[:, 1:] != -100

    def log_probs(hidden):
        return F.log_softmax(lm.lm_head(hidden[:, :-1][where]).float(), -1)

    state.enabled = False
    with torch.no_grad():
        frozen = log_probs(lm.model(input_ids=ids, attention_mask=mask).last_hidden_state)
    with adapted(lm, mma, state, torch.full((len(rows),), modality)):
        student = log_probs(lm.model(input_ids=ids, attention_mask=mask).last_hidden_state)
    return F.kl_div(student, frozen, log_target=True, reduction="batchmean")
