"""The bottleneck adapter the VLM papers share (LaVIN's RepAdapter with its router, as re-implemented
here): one down-projection, one or two zero-initialised up-projections and, when routed, a router
that mixes the two up-projections.

``delta(h, weights)`` is the adapter's contribution alone; ``forward`` adds it to its input. MMA puts
``forward`` after a layer's pre-attention norm; DAS puts ``x + delta(norm(x))`` in place of a whole
skipped layer. Zero-initialised up-projections make a fresh adapter add nothing.
"""
from __future__ import annotations

import torch
from torch import nn


class RouterAdapter(nn.Module):
    def __init__(self, dim: int, rank: int, scale: float, routed: bool, dropout: float = 0.1):
        super().__init__()
        self.scale, self.routed = scale, routed
        self.down = nn.Linear(dim, rank)
        self.up = nn.ModuleList(nn.Linear(rank, dim) for _ in range(2 if routed else 1))
        self.router = nn.Linear(dim, 2) if routed else None
        self.dropout = nn.Dropout(dropout)
        nn.init.xavier_uniform_(self.down.weight)
        nn.init.zeros_(self.down.bias)
        for up in self.up:
            nn.init.zeros_(up.weight)
            nn.init.zeros_(up.bias)

    def route(self, h_modality: torch.Tensor, temperature: float) -> torch.Tensor:
        """B x D state of the modality token -> B x 2 path weights."""
        return torch.softmax(self.router(h_modality).float() / temperature, dim=-1)

    def delta(self, h: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        """What the adapter adds to ``h`` (B x T x D); ``weights`` (B x 2) only when routed."""
        z = self.dropout(self.down(h))
        if not self.routed:
            return self.scale * self.up[0](z)
        w = weights.to(h.dtype)
        return self.scale * (w[:, 0, None, None] * self.up[0](z) + w[:, 1, None, None] * self.up[1](z))

    def forward(self, h: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
        return h + self.delta(h, weights)
