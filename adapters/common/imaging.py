"""Reading a user's image file safely, shared by every tab that takes a picture (no gradio)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from adapters.common.errors import BadInput

MIN_SIDE = 16
MAX_SIDE = 8192
MAX_PIXELS = 40_000_000
MAX_FILE_BYTES = 64 * 1024 * 1024


def read_rgb_image(path: str | Path | None, *, min_side: int = MIN_SIDE, max_side: int = MAX_SIDE,
                   max_pixels: int = MAX_PIXELS, max_file_bytes: int = MAX_FILE_BYTES) -> np.ndarray:
    """H x W x 3 uint8 RGB from an image file, or `BadInput` with a plain reason.

    Grayscale, palette and 16-bit/float images are converted (16-bit stretched to 0..255) and
    transparency is composited over white. The size is checked from the header before any pixel is
    decoded, so an enormous or decompression-bomb file costs nothing.
    """
    from PIL import Image, UnidentifiedImageError

    if path is None or not str(path).strip():
        raise BadInput("No image was given: upload a picture or pick an example.")
    path = Path(path)
    if not path.is_file():
        raise BadInput("The image file could not be found: upload it again.")
    if path.stat().st_size > max_file_bytes:
        raise BadInput(f"The file is {path.stat().st_size / 2**20:.0f} MB; the limit is {max_file_bytes // 2**20} MB.")
    too_large = (f"too large (at most {max_side} px a side and {max_pixels // 1_000_000} megapixels); "
                 f"downscale it first.")
    try:
        with Image.open(path) as img:
            w, h = img.size
            if w * h > max_pixels or max(w, h) > max_side:
                raise BadInput(f"The image is {w}x{h} pixels: {too_large}")
            if min(w, h) < min_side:
                raise BadInput(f"The image is {w}x{h} pixels: too small (it needs at least {min_side} pixels on each side).")
            img.load()
            if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                rgba = img.convert("RGBA")
                img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
            if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
                values = np.asarray(img, dtype=np.float64)
                span = values.max() - values.min()
                values = (values - values.min()) / span * 255 if span > 0 else np.zeros_like(values)
                img = Image.fromarray(values.astype(np.uint8))
            return np.asarray(img.convert("RGB"))
    except BadInput:
        raise
    except Image.DecompressionBombError:
        raise BadInput(f"The image is {too_large}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise BadInput(f"'{path.name}' is not an image we can read ({type(exc).__name__}); use PNG, JPEG, WebP or BMP.") from None


def enlarge_to_tile(rgb: np.ndarray, tile: int) -> tuple[np.ndarray, str]:
    """An H x W x 3 uint8 image with its shorter side below `tile` scaled up (bilinear, aspect kept)
    so one model tile fits, and a sentence saying so ("" when nothing was done)."""
    h, w = rgb.shape[:2]
    if min(h, w) >= tile:
        return rgb, ""
    from PIL import Image

    scale = tile / min(h, w)
    out = np.asarray(Image.fromarray(rgb).resize((max(tile, round(w * scale)), max(tile, round(h * scale))), Image.BILINEAR))
    return out, f"Enlarged from {w}x{h} to {out.shape[1]}x{out.shape[0]} (tiles are {tile} px). "
