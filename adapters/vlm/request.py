"""Checks the VLM tabs share on their inputs, before any device work (no torch import): a number
that must be finite, a question, and any picture squared to the 224 px the vision encoder reads."""
from __future__ import annotations

import math

import numpy as np

from adapters.common.errors import BadInput

IMAGE_SIDE = 224
MAX_IMAGE_PIXELS = 40_000_000
MAX_QUESTION_CHARS = 300


def finite_number(name: str, value) -> float:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BadInput(f"Set a number for {name}.")
    return float(value)


def checked_question(question, limit: int = MAX_QUESTION_CHARS) -> str:
    if not isinstance(question, str) or not question.strip():
        raise BadInput("The question is empty: type a question about the picture, or pick an example.")
    question = question.strip()
    if len(question) > limit:
        raise BadInput(f"The question is {len(question):,} characters long; this demo takes at most {limit}.")
    return question


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
