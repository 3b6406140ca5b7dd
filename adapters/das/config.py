"""The skip search's architecture (`DASConfig`, saved in the weight file's header) and the per-request
settings (`Request`) with the limits the tab's inputs read. No torch import: the web process
validates here before any device work."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np

from adapters.common.errors import BadInput
from adapters.vlm.request import MAX_QUESTION_CHARS, checked_question, finite_number, square_picture

NUM_LAYERS = 30  # SmolLM2-135M
KS = (3, 6, 9, 12)  # the skip counts searched, trained and measured
DEFAULT_K = 6
MAX_SKIPPED = 20  # a manual skip set may remove at most this many layers
MAX_NEW_TOKENS = 32
DEFAULT_NEW_TOKENS = 12
VARIANTS = ("full", "adapters", "removed")  # the three-way compare, in the tab's order


@dataclass(frozen=True)
class DASConfig:
    dim: int = 576
    rank: int = 16  # the replacing adapter's bottleneck width
    scale: float = 1.0
    num_layers: int = NUM_LAYERS
    # The first layer is always kept: it is the one the decoding cache measures the prompt length by.
    candidates: tuple[int, ...] = field(default_factory=lambda: tuple(range(1, NUM_LAYERS)))

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "DASConfig":
        data = json.loads(text)
        data["candidates"] = tuple(data["candidates"])
        return cls(**data)


@dataclass(frozen=True)
class Request:
    """One question about one picture, answered three ways: the full model, the model with the
    skip set's layers replaced by their adapters, and with those layers simply removed."""

    question: str
    image: np.ndarray | None  # 224 x 224 x 3 uint8 (already resized), or None
    k: int = DEFAULT_K
    manual: tuple[int, ...] = ()  # a skip set chosen by hand (empty: the searched top-k)
    max_new_tokens: int = DEFAULT_NEW_TOKENS
    original_size: tuple[int, int] | None = None  # (width, height) before resizing


def _whole(name: str, value, lo: int, hi: int) -> int:
    n = finite_number(name, value)
    if int(n) != n or not lo <= n <= hi:
        raise BadInput(f"{name[0].upper()}{name[1:]} must be a whole number from {lo} to {hi}.")
    return int(n)


def parse_layers(value, candidates: tuple[int, ...] = tuple(range(1, NUM_LAYERS))) -> tuple[int, ...]:
    """A manual skip set from a list of layer numbers (ints or their strings) or a comma-separated
    string; sorted, without repeats."""
    if value is None:
        return ()
    items = value.replace(",", " ").split() if isinstance(value, str) else list(value)
    layers = set()
    for item in items:
        try:
            layer = int(str(item).strip())
        except ValueError:
            raise BadInput(f"'{item}' is not a layer number: pick layers from {candidates[0]} to {candidates[-1]}.") from None
        if layer not in candidates:
            raise BadInput(f"Layer {layer} cannot be skipped: pick layers from {candidates[0]} to {candidates[-1]} "
                           f"(layer 0 always runs).")
        layers.add(layer)
    if len(layers) > MAX_SKIPPED:
        raise BadInput(f"{len(layers)} layers chosen; this demo skips at most {MAX_SKIPPED} of {NUM_LAYERS}.")
    return tuple(sorted(layers))


def make_request(question, image, k=DEFAULT_K, manual=(), max_new_tokens=DEFAULT_NEW_TOKENS) -> Request:
    """Validate the tab's inputs and build the `Request` (the picture resized to 224 px)."""
    question = checked_question(question, MAX_QUESTION_CHARS)
    k = _whole("the number of skipped layers k", k, 1, MAX_SKIPPED)
    layers = parse_layers(manual)
    n = _whole("max new tokens", max_new_tokens, 1, MAX_NEW_TOKENS)
    picture, size = (None, None) if image is None else square_picture(image)
    return Request(question, picture, k, layers, n, size)
