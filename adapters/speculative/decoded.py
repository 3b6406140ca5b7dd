"""The result of one decode, as plain data (it crosses the device boundary; no torch import)."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Decoded:
    """New tokens plus who produced each ("draft": accepted draft token, "full": the full model's
    own token, i.e. a correction of a rejected draft or the token after an all-accepted draft)."""

    tokens: list[int]
    sources: list[str]
    seconds: float
    verify_passes: int = 0
    drafted: int = 0
    accepted: int = 0
    shallow_positions: int = 0  # positions run through the shared layers 1..k (excluding the prompt)
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
