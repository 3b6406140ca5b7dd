"""The adapter's architecture (`MMAConfig`, saved in the weight file's header) and the per-request
settings (`Request`) with the limits the tab's inputs read. No torch import: the web process
validates here before any device work."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np

from adapters.common.errors import BadInput
from adapters.vlm.request import checked_question, finite_number, square_picture

NUM_LAYERS = 30  # SmolLM2-135M


@dataclass(frozen=True)
class MMAConfig:
    dim: int = 576
    rank: int = 8  # LaVIN's adapter_dim
    scale: float = 1.0  # LaVIN's adapter_scale
    temperature: float = 5.0  # LaVIN's instruction-tuning setting
    layers: tuple[int, ...] = field(default_factory=lambda: tuple(range(NUM_LAYERS)))
    routed: bool = True
    modality_std: float = 0.05
    # A token id put before the modality token in its own stream (None: the modality token alone, at
    # position 0, as in LaVIN). SmolLM2's position 0 is an attention sink: from layer 12 on its
    # normalised state is the same whatever the token (cosine 0.9995+ measured), so a router reading
    # it there cannot tell the modalities apart; after the chat template's first token it can.
    modality_prefix: int | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "MMAConfig":
        data = json.loads(text)
        data["layers"] = tuple(data["layers"])
        return cls(**data)


# Request limits (the tab's inputs read them).
MAX_QUESTION_CHARS = 300
MAX_NEW_TOKENS = 48
DEFAULT_NEW_TOKENS = 24
TEMPERATURE_RANGE = (0.5, 20.0)
DEFAULT_TEMPERATURE = 5.0
ROUTES = ("auto", "text", "image")


@dataclass(frozen=True)
class Request:
    """One question about one picture (or none): the adapted model and the projector-only model,
    each answered with and without the picture."""

    question: str
    image: np.ndarray | None  # 224 x 224 x 3 uint8 (already resized), or None for a text-only prompt
    temperature: float = DEFAULT_TEMPERATURE
    route: str = "auto"
    max_new_tokens: int = DEFAULT_NEW_TOKENS
    original_size: tuple[int, int] | None = None  # (width, height) before resizing


def make_request(question, image, temperature=DEFAULT_TEMPERATURE, route="auto",
                 max_new_tokens=DEFAULT_NEW_TOKENS) -> Request:
    """Validate the tab's inputs and build the `Request` (the picture resized to 224 px)."""
    question = checked_question(question, MAX_QUESTION_CHARS)
    t = finite_number("the router temperature", temperature)
    if not TEMPERATURE_RANGE[0] <= t <= TEMPERATURE_RANGE[1]:
        raise BadInput(f"The router temperature must lie between {TEMPERATURE_RANGE[0]} and {TEMPERATURE_RANGE[1]}.")
    if route not in ROUTES:
        raise BadInput(f"The route must be one of: {', '.join(ROUTES)}.")
    n = finite_number("max new tokens", max_new_tokens)
    if int(n) != n or not 1 <= n <= MAX_NEW_TOKENS:
        raise BadInput(f"Max new tokens must be a whole number from 1 to {MAX_NEW_TOKENS}.")
    picture, size = None, None
    if image is not None:
        picture, size = square_picture(image)
    return Request(question, picture, t, route, int(n), size)
