"""Bottleneck adapters inside a frozen encoder, the token-type head and the bug head.

The adapter is a Pfeiffer-style bottleneck on the output of each block's feed-forward sublayer
(before the block adds its residual and normalises): ``y + s * up(gelu(down(y)))`` with ``up``
initialised to zero, so a fresh adapter is the identity. The same placement serves a BERT block
(``layer.output.dense``) and a Llama block (``layer.mlp``). Hooks are attached only for the duration
of one forward (`FrozenEncoder.hidden`), so the frozen model, which the zoo may share with other
code, is never left modified.

Several adapter sets can be active at once, applied in order (stacking): the NER adapter, frozen,
then the task adapter above it.
"""
from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass

import torch
from torch import nn


class Bottleneck(nn.Module):
    def __init__(self, width: int, bottleneck: int):
        super().__init__()
        self.down = nn.Linear(width, bottleneck)
        self.up = nn.Linear(bottleneck, width)
        nn.init.normal_(self.down.weight, std=0.02)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.up(nn.functional.gelu(self.down(y)))


class AdapterSet(nn.Module):
    """One bottleneck per block of the frozen encoder."""

    def __init__(self, width: int, num_layers: int, bottleneck: int):
        super().__init__()
        self.blocks = nn.ModuleList(Bottleneck(width, bottleneck) for _ in range(num_layers))


@dataclass(frozen=True)
class EncoderInfo:
    family: str  # "bert" (bidirectional) or "llama" (causal)
    width: int
    num_layers: int  # blocks used (a causal LM may be cut to its first few)
    pad_id: int


class FrozenEncoder(nn.Module):
    """A frozen transformer as a per-token feature extractor, with adapters on demand."""

    def __init__(self, model: nn.Module, family: str, num_layers: int | None = None, pad_id: int = 0):
        super().__init__()
        if family not in ("bert", "llama"):
            raise ValueError(f"unknown encoder family {family!r}")
        self.model, self.family = model, family
        total = len(self._all_layers())
        self.num_layers = min(num_layers or total, total)
        width = model.config.hidden_size
        self.info = EncoderInfo(family, width, self.num_layers, pad_id)
        # A causal LM is cut to its first blocks by a shallow view that shares their weights.
        self._llama = truncated_llama(model.model, self.num_layers) if family == "llama" else None

    def used_parameters(self) -> list[nn.Parameter]:
        """The frozen parameters a forward uses (a cut causal LM leaves its later blocks and its
        output head out)."""
        if self.family == "bert":
            return list(self.model.parameters())
        return list(self._llama.parameters())

    def _all_layers(self):
        return self.model.encoder.layer if self.family == "bert" else self.model.model.layers

    def _ffn(self, i: int) -> nn.Module:
        layer = self._all_layers()[i]
        return layer.output.dense if self.family == "bert" else layer.mlp

    @contextlib.contextmanager
    def _adapters(self, stack):
        handles = []
        try:
            for i in range(self.num_layers):
                blocks = [(adapters.blocks[i], scale) for adapters, scale in stack]

                def hook(_module, _inputs, output, blocks=blocks):
                    for block, scale in blocks:
                        output = output + scale * block(output)
                    return output

                handles.append(self._ffn(i).register_forward_hook(hook))
            yield
        finally:
            for handle in handles:
                handle.remove()

    def hidden(self, ids: torch.Tensor, mask: torch.Tensor, stack=()) -> torch.Tensor:
        """B x T x width features after ``num_layers`` blocks, with ``stack`` = [(AdapterSet, scale),
        ...] applied in order inside every block."""
        with self._adapters([(a, s) for a, s in stack if s != 0.0]):
            if self.family == "bert":
                return self.model(input_ids=ids, attention_mask=mask).last_hidden_state
            return self._llama(input_ids=ids, attention_mask=mask).last_hidden_state


def truncated_llama(llama: nn.Module, num_layers: int) -> nn.Module:
    """A view of a Llama model that runs only its first ``num_layers`` decoder layers (then its final
    norm), sharing every weight with ``llama`` and leaving it unchanged."""
    if num_layers >= len(llama.layers):
        return llama
    view = copy.copy(llama)
    view._modules = dict(llama._modules)
    view.layers = nn.ModuleList(list(llama.layers)[:num_layers])
    view.config = copy.copy(llama.config)
    view.config.num_hidden_layers = num_layers
    return view


class TypeHead(nn.Module):
    def __init__(self, width: int, num_types: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.linear = nn.Linear(width, num_types)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.linear(self.norm(hidden))


class BugHead(nn.Module):
    """Bug localisation (one score per subword) and repair: a pointer from the bug to a subword that
    holds the right name, or one of the operator classes."""

    def __init__(self, width: int, num_operators: int, key_width: int = 64):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.locate = nn.Linear(width, 1)
        self.query = nn.Linear(width, key_width)
        self.key = nn.Linear(width, key_width)
        self.operator = nn.Linear(width, num_operators)

    def location_logits(self, hidden: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        return self.locate(self.norm(hidden)).squeeze(-1).masked_fill(~valid, float("-inf"))

    def repair_logits(self, hidden: torch.Tensor, valid: torch.Tensor, location: torch.Tensor) -> torch.Tensor:
        """B x (T + operators): pointer scores over subwords, then operator scores, from the hidden
        state at ``location`` (B)."""
        h = self.norm(hidden)
        at = h[torch.arange(h.shape[0]), location]
        pointer = torch.einsum("bk,btk->bt", self.query(at), self.key(h)) / self.query.out_features ** 0.5
        pointer = pointer.masked_fill(~valid, float("-inf"))
        return torch.cat([pointer, self.operator(at)], dim=-1)


def bug_loss(head: BugHead, hidden, valid, location, pointer_mask, operator):
    """Localisation cross-entropy plus repair negative log-likelihood (the pointer's probability
    summed over every subword holding the right name, or the right operator's)."""
    loc = nn.functional.cross_entropy(head.location_logits(hidden, valid), location)
    logits = head.repair_logits(hidden, valid, location).log_softmax(-1)
    T = hidden.shape[1]
    target_mask = torch.cat([pointer_mask, torch.zeros(logits.shape[0], logits.shape[1] - T, dtype=torch.bool)], -1)
    rows = (operator >= 0).nonzero().squeeze(-1)
    target_mask[rows, T + operator[rows]] = True
    repair = -torch.logsumexp(logits.masked_fill(~target_mask, float("-inf")), -1)
    return loc + repair.mean(), float(loc.detach()), float(repair.mean().detach())


# --- batches and losses shared by training, the bench and the contract hooks ----------------------

def pad_batch(sequences, pad_id: int, fill=None):
    """(ids B x T, mask B x T) for id sequences padded on the right."""
    T = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), T), dtype=torch.long)
    for i, s in enumerate(sequences):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids, mask


def type_batch(examples, pad_id: int):
    """(ids, mask, labels) for a list of `data.Encoded`; unlabelled and padded positions are -100."""
    ids, mask = pad_batch([e.ids for e in examples], pad_id)
    labels = torch.full(ids.shape, -100, dtype=torch.long)
    for i, e in enumerate(examples):
        labels[i, : len(e.labels)] = torch.tensor(e.labels, dtype=torch.long)
    return ids, mask, labels


def type_loss(encoder: FrozenEncoder, head: TypeHead, stack, ids, mask, labels) -> torch.Tensor:
    logits = head(encoder.hidden(ids, mask, stack))
    return nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)


def bug_batch(examples, pad_id: int, special_ids=()):
    """(ids, mask, valid, location, pointer_mask, operator) for a list of `data.BugExample`; ``valid``
    marks the subwords a bug or a repair may point at (real text, not special tokens)."""
    ids, mask = pad_batch([e.ids for e in examples], pad_id)
    valid = mask.bool().clone()
    for special in special_ids:
        valid &= ids != special
    location = torch.tensor([e.location for e in examples], dtype=torch.long)
    pointer_mask = torch.zeros(ids.shape, dtype=torch.bool)
    for i, e in enumerate(examples):
        pointer_mask[i, list(e.pointer_targets)] = True
    operator = torch.tensor([e.operator for e in examples], dtype=torch.long)
    return ids, mask, valid, location, pointer_mask, operator
