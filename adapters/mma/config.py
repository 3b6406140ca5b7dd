"""The adapter's architecture (`MMAConfig`, saved in the weight file's header) and the per-request
settings (`Request`) with the limits the tab's inputs read. No torch import: the web process
validates here before any device work."""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

import numpy as np

from adapters.common.errors import BadInput

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
IMAGE_SIDE = 224
MAX_IMAGE_PIXELS = 40_000_000


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


def _finite(name: str, value) -> float:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BadInput(f"Set a number for {name}.")
    return float(value)


def make_request(question, image, temperature=DEFAULT_TEMPERATURE, route="auto",
                 max_new_tokens=DEFAULT_NEW_TOKENS) -> Request:
    """Validate the tab's inputs and build the `Request` (the picture resized to 224 px)."""
    if not isinstance(question, str) or not question.strip():
        raise BadInput("The question is empty: type a question about the picture, or pick an example.")
    question = question.strip()
    if len(question) > MAX_QUESTION_CHARS:
        raise BadInput(f"The question is {len(question):,} characters long; this demo takes at most "
                       f"{MAX_QUESTION_CHARS}.")
    t = _finite("the router temperature", temperature)
    if not TEMPERATURE_RANGE[0] <= t <= TEMPERATURE_RANGE[1]:
        raise BadInput(f"The router temperature must lie between {TEMPERATURE_RANGE[0]} and {TEMPERATURE_RANGE[1]}.")
    if route not in ROUTES:
        raise BadInput(f"The route must be one of: {', '.join(ROUTES)}.")
    n = _finite("max new tokens", max_new_tokens)
    if int(n) != n or not 1 <= n <= MAX_NEW_TOKENS:
        raise BadInput(f"Max new tokens must be a whole number from 1 to {MAX_NEW_TOKENS}.")
    picture, size = None, None
    if image is not None:
        picture, size = square_picture(image)
    return Request(question, picture, t, route, int(n), size)


def square_picture(image) -> tuple[np.ndarray, tuple[int, int]]:
    """Any RGB / grey / RGBA array -> 224 x 224 x 3 uint8 (the whole picture, stretched), and its
    original (width, height)."""
    from PIL import Image

    arr = np.asarray(image)
    if arr.dtype == object or arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)):
        raise BadInput("The picture could not be read: upload a PNG or JPEG photograph.")
    if arr.size == 0 or min(arr.shape[:2]) < 8:
        raise BadInput("The picture is too small: it needs at least 8 pixels on each side.")
    if arr.shape[0] * arr.shape[1] > MAX_IMAGE_PIXELS:
        raise BadInput(f"The picture has {arr.shape[0] * arr.shape[1]:,} pixels; this demo takes at most "
                       f"{MAX_IMAGE_PIXELS:,}.")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise BadInput("The picture contains NaN or infinite values.")
        arr = np.clip(arr * (255.0 if arr.max() <= 1.0 else 1.0), 0, 255)
    arr = arr.astype(np.uint8)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    arr = arr[..., :3]
    h, w = arr.shape[:2]
    resized = np.asarray(Image.fromarray(arr).resize((IMAGE_SIDE, IMAGE_SIDE), Image.BICUBIC), np.uint8)
    return resized, (int(w), int(h))
