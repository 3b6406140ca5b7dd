"""Architecture settings (saved next to the weights), the per-request settings (`Request`) and their
limits, which the tab's inputs read. No torch import: the web process validates here first."""
from __future__ import annotations

import math
from dataclasses import dataclass

from adapters.common.errors import BadInput

MAX_LEN = 64  # subwords per training window (the CPU budget sets it)
MAX_CHARS = 200  # characters per training window of whole lines
BUG_MAX_LEN = 96  # subwords per function with a bug, and per request
MAX_FUNCTION_CHARS = 320  # longest function a synthetic bug is injected into
REQUEST_MAX_LEN = 128  # subwords of pasted code the model reads (the rest is shown, not typed)
BOTTLENECK = 64
SMOL_LAYERS = 6  # SmolLM2 measured on its first blocks only (CPU budget)

MAX_CODE_CHARS = 2000
MAX_SCALE = 2.0
DEFAULT_SCALE = 1.0


@dataclass(frozen=True)
class Request:
    """Code to type and to search for a bug, and the NER adapter's scale (0 = off)."""

    code: str
    scale: float = DEFAULT_SCALE


def make_request(code, scale=DEFAULT_SCALE) -> Request:
    """Validate the tab's inputs (type, size, the scale's range) and check the code is Python that
    `ast` can parse, so the ground truth exists; `BadInput` says what is wrong."""
    if not isinstance(code, str) or not code.strip():
        raise BadInput("The code is empty: paste a Python function or pick an example.")
    if len(code) > MAX_CODE_CHARS:
        raise BadInput(f"The code is {len(code):,} characters long; this demo takes at most {MAX_CODE_CHARS:,}.")
    if "\x00" in code:
        raise BadInput("The code contains a NUL character; paste plain Python source.")
    if scale is None or isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale):
        raise BadInput("Set a number for the NER-adapter scale.")
    if not 0.0 <= scale <= MAX_SCALE:
        raise BadInput(f"The NER-adapter scale must lie between 0 and {MAX_SCALE:g}.")
    from adapters.codeberter.labels import safe_python_tokens

    if safe_python_tokens(code) is None:
        raise BadInput("Python cannot parse this code (a syntax error?), so it has no ground-truth token types; "
                       "paste code that runs through `ast.parse`.")
    return Request(code, float(scale))
