"""Reading the FGSA tab's inputs safely (no gradio): the image, an optional ground-truth mask, and
the resize to the model's input size. Everything here runs in the web process, before device work."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from adapters.common.errors import BadInput
from adapters.common.imaging import read_rgb_image

MIN_SIDE = 16
MAX_SIDE = 8192
MAX_PIXELS = 40_000_000
MAX_FILE_BYTES = 50 * 1024 * 1024


def read_rgb(path: str | Path) -> np.ndarray:
    """H x W x 3 uint8 RGB from an image file (`adapters.common.imaging.read_rgb_image`: conversions
    and size limits); a flat image is refused too, since there is nothing to segment in it."""
    rgb = read_rgb_image(path, min_side=MIN_SIDE, max_side=MAX_SIDE, max_pixels=MAX_PIXELS, max_file_bytes=MAX_FILE_BYTES)
    if int(rgb.max()) - int(rgb.min()) < 2:
        raise BadInput("The image is one flat colour (for example all black): there is nothing to segment.")
    return rgb


def read_mask(path: str | Path | None, size: int, image_hw: tuple[int, int] | None = None) -> np.ndarray | None:
    """An optional ground-truth mask as 0/1 at the model's size (nearest neighbour). With
    ``image_hw`` the mask must have the image's size: a ground truth is pixel for pixel."""
    if path is None or str(path) == "":
        return None
    import cv2

    rgb = read_rgb_any(path)
    if image_hw is not None and rgb.shape[:2] != tuple(image_hw):
        raise BadInput(f"The ground-truth mask is {rgb.shape[1]}x{rgb.shape[0]} pixels but the image is "
                       f"{image_hw[1]}x{image_hw[0]}: they must match pixel for pixel.")
    gray = rgb.mean(-1)
    return (cv2.resize(gray, (size, size), interpolation=cv2.INTER_NEAREST) > 127).astype(np.float32)


def read_rgb_any(path) -> np.ndarray:
    """Like read_rgb but accepts flat images (an empty ground truth is valid); the same limits,
    checked from the header before decoding."""
    try:
        return read_rgb_image(path, min_side=1, max_side=MAX_SIDE, max_pixels=MAX_PIXELS, max_file_bytes=MAX_FILE_BYTES)
    except BadInput as exc:
        raise BadInput(f"Ground-truth mask: {exc} Use a PNG mask (white object on black).") from None


def to_model_input(rgb: np.ndarray, size: int) -> np.ndarray:
    """1 x 3 x size x size float32 in [0, 1] (area interpolation when shrinking)."""
    import cv2

    h, w = rgb.shape[:2]
    interp = cv2.INTER_AREA if min(h, w) > size else cv2.INTER_LINEAR
    small = cv2.resize(rgb, (size, size), interpolation=interp)
    return np.ascontiguousarray(small.transpose(2, 0, 1)[None].astype(np.float32) / 255)
