"""What a tab tells the studio about itself (no gradio import, so the About tab, tests and the
bench can read it without building any UI)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from studio.loader import ModelSpec


@dataclass(frozen=True)
class TabInfo:
    key: str  # short id: elem_ids, api_names and assets/<key> derive from it
    title: str
    paper: str
    paper_url: str
    frozen_model: str  # what stays frozen, per source
    adapter: str  # what the adapter adds, one sentence
    description: str  # one paragraph shown at the top of the tab
    spec: ModelSpec | None = None
    # (adapter_params, frozen_params) of the model in use; must be cheap (read safetensors headers,
    # or the loaded model when it is already in memory), never load a model just to count.
    param_counts: Callable[[], tuple[int, int]] | None = None
    api_names: tuple[str, ...] = field(default_factory=tuple)
