"""The per-request settings (`Request`) and their limits, which the tab's inputs read, and the
defaults measured best by the bench. No torch import: the web process validates here before any device work."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable

from adapters.common.errors import BadInput

# Limits of one request (the sliders' ranges) and the tab's defaults.
MAX_PROMPT_CHARS = 2000
MAX_PROMPT_TOKENS = 256  # after the chat template (its system prompt is about 30 tokens)
MAX_NEW_TOKENS = 128
MAX_GAMMA = 12
EXIT_CHOICES = (2,)  # exit layers the bundled adapter file has an adapter for
DEFAULT_EXIT = 2
DEFAULT_MAX_NEW_TOKENS = 64
DEFAULT_THRESHOLD = 0.4
DEFAULT_GAMMA = 3


@dataclass(frozen=True)
class Request:
    """One validated request: Kangaroo with the adapter, Kangaroo with the bare exit and plain greedy
    decoding, all from the same prompt token ids."""

    prompt_ids: tuple[int, ...]
    max_new_tokens: int
    exit_layer: int
    threshold: float
    gamma: int


def _number(name: str, value) -> float:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise BadInput(f"Set a value for {name}.")
    return value


def _whole(value: float) -> bool:
    return math.isfinite(value) and int(value) == value


def make_request(prompt, max_new_tokens, exit_layer, threshold, gamma, *, encode: Callable[[str], list[int]],
                 exits: Iterable[int], context: int) -> Request:
    """Validate the tab's inputs against the loaded model (its tokenizer, plain or through the chat
    template, the exit layers it has adapters for, its context length) and build the `Request`;
    `BadInput` says what is wrong."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise BadInput("The prompt is empty: type a question, an instruction or some code, or pick an example.")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise BadInput(f"The prompt is {len(prompt):,} characters long; this demo takes at most {MAX_PROMPT_CHARS:,}.")
    for name, value in (("max new tokens", max_new_tokens), ("exit layer", exit_layer), ("gamma", gamma), ("threshold", threshold)):
        _number(name, value)
    if not _whole(max_new_tokens) or not 1 <= max_new_tokens <= MAX_NEW_TOKENS:
        raise BadInput(f"Max new tokens must be a whole number from 1 to {MAX_NEW_TOKENS}.")
    if not _whole(gamma) or not 1 <= gamma <= MAX_GAMMA:
        raise BadInput(f"gamma (the most draft tokens per round) must be a whole number from 1 to {MAX_GAMMA}.")
    if not 0.0 <= threshold <= 1.0:
        raise BadInput("The confidence threshold must lie between 0 and 1.")
    exits = sorted(exits)
    if not _whole(exit_layer) or int(exit_layer) not in exits:  # 2.5 is refused, never rounded
        shown = int(exit_layer) if _whole(exit_layer) else exit_layer
        choices = ", ".join(str(k) for k in exits)
        raise BadInput(f"No adapter was trained for exit layer {shown}; choose one of {choices}.")
    ids = encode(prompt)
    if len(ids) > MAX_PROMPT_TOKENS:
        raise BadInput(f"The prompt is {len(ids)} tokens long; this demo takes at most {MAX_PROMPT_TOKENS}. Shorten it.")
    max_new = int(max_new_tokens)
    if len(ids) + max_new > context:
        raise BadInput(f"The prompt ({len(ids)} tokens) plus {max_new} new tokens exceeds the model's "
                       f"{context}-token context; shorten the prompt or ask for fewer tokens.")
    return Request(tuple(int(i) for i in ids), max_new, int(exit_layer), float(threshold), int(gamma))
