"""The draft's architecture config (saved in its file's header) and the per-request settings
(`Request`) whose limits the tab's inputs read. No torch import: the web process validates here
before any device work."""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

from adapters.common.errors import BadInput

MAX_QUESTION_CHARS = 300
MAX_NEW_TOKENS = 96
MAX_DRAFT_TOKENS = 8
DEFAULT_MAX_NEW_TOKENS = 64
DEFAULT_DRAFT_TOKENS = 6  # fastest of 3-8 on scenes the bench never decodes (python -m bench.vispec --tune)
DRAFTS = ("vision", "text")  # the vision-aware draft and the text-only (EAGLE) baseline
DRAFT_NAMES = {"vision": "vision-aware (ViSpec)", "text": "text-only (EAGLE)"}
DESCRIBE = "Describe the picture in detail."


@dataclass(frozen=True)
class DraftConfig:
    """One EAGLE-style decoder layer over fc([token embedding ; feature]) and, when ``vision``,
    ViSpec's image adaptor (``num_queries`` learnable queries) and its fusion."""

    hidden_size: int
    num_attention_heads: int
    num_key_value_heads: int
    intermediate_size: int
    rms_norm_eps: float = 1e-5
    hidden_act: str = "silu"
    qkv_bias: bool = False
    vision: bool = True
    num_queries: int = 4

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "DraftConfig":
        return cls(**json.loads(text))

    def replace(self, **changes) -> "DraftConfig":
        return DraftConfig(**(asdict(self) | changes))


@dataclass(frozen=True)
class Request:
    """One validated request: the picture (224 px RGB), the question, and how to decode it. The
    device decodes plain greedy and speculative with the chosen draft, and, for the comparison,
    the other draft, all on the same prompt."""

    image: object  # numpy uint8 H x W x 3 (already bounded and resized by the tab)
    question: str
    max_new_tokens: int
    draft_tokens: int
    draft: str  # "vision" or "text"
    use_draft: bool = True


def _whole(value) -> bool:
    return (value is not None and not isinstance(value, bool) and isinstance(value, (int, float))
            and math.isfinite(value) and int(value) == value)


def make_request(image, question, max_new_tokens, draft_tokens, draft, use_draft=True) -> Request:
    """Validate the tab's inputs and build the `Request`; `BadInput` says what is wrong."""
    import numpy as np

    if image is None:
        raise BadInput("No picture: upload one or pick an example.")
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise BadInput("The picture could not be read as an RGB image.")
    if not isinstance(question, str) or not question.strip():
        raise BadInput("The question is empty: type one or pick an example.")
    if len(question) > MAX_QUESTION_CHARS:
        raise BadInput(f"The question is {len(question):,} characters long; this demo takes at most {MAX_QUESTION_CHARS}.")
    if not _whole(max_new_tokens) or not 1 <= max_new_tokens <= MAX_NEW_TOKENS:
        raise BadInput(f"Max new tokens must be a whole number from 1 to {MAX_NEW_TOKENS}.")
    if not _whole(draft_tokens) or not 1 <= draft_tokens <= MAX_DRAFT_TOKENS:
        raise BadInput(f"Draft tokens per pass must be a whole number from 1 to {MAX_DRAFT_TOKENS}.")
    if draft not in DRAFTS:
        raise BadInput(f"Choose the draft: {' or '.join(DRAFTS)}.")
    return Request(image, question.strip(), int(max_new_tokens), int(draft_tokens), draft, bool(use_draft))
