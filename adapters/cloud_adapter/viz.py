"""Pictures for the Cloud-Adapter tab (numpy + PIL): class overlays in the paper's palette, the
context maps, and the mask file."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from adapters.cloud_adapter.simulate import CLASSES

# the official demo's CloudSEN12 palette: clear, thick cloud, thin cloud, shadow
PALETTE = np.array([(79, 253, 199), (77, 2, 115), (251, 255, 41), (221, 53, 223)], np.uint8)
DISPLAY = 224  # tiles are drawn at least this large (nearest neighbour), so a phone shows the pixels


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    return (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)


def enlarge(img: np.ndarray, minimum: int = DISPLAY) -> np.ndarray:
    factor = max(1, int(np.ceil(minimum / max(img.shape[:2]))))
    return np.repeat(np.repeat(img, factor, 0), factor, 1) if factor > 1 else img


def overlay(rgb: np.ndarray, classes: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """Clear pixels keep the image; every other class is tinted with its palette colour."""
    base = to_uint8(rgb).astype(np.float32)
    colour = PALETTE[classes].astype(np.float32)
    weight = np.where(classes[..., None] == 0, 0.0, alpha)
    return enlarge((base * (1 - weight) + colour * weight).round().astype(np.uint8))


def mask_rgb(classes: np.ndarray) -> np.ndarray:
    return enlarge(PALETTE[classes])


def legend_markdown() -> str:
    swatches = " ".join(f"<span style='display:inline-block;width:0.9em;height:0.9em;background:rgb{tuple(int(c) for c in col)};"
                        f"border:1px solid #888;vertical-align:middle'></span> {name}" for name, col in zip(CLASSES, PALETTE))
    return f"**Legend:** {swatches} (clear is left untinted in the overlays)"


def _ramp(values: np.ndarray) -> np.ndarray:
    """[0, 1] -> a dark-blue to yellow ramp."""
    stops = np.array([(20, 20, 80), (30, 120, 160), (120, 200, 90), (250, 230, 60)], np.float32)
    x = np.clip(values, 0, 1) * (len(stops) - 1)
    i = np.minimum(x.astype(int), len(stops) - 2)
    t = (x - i)[..., None]
    return (stops[i] * (1 - t) + stops[i + 1] * t).astype(np.uint8)


def context_panel(maps, size: int = 160) -> np.ndarray | None:
    """The context maps side by side, each resized to size x size (nearest), with 4 px gaps."""
    if not maps:
        return None
    from PIL import Image

    tiles = [np.asarray(Image.fromarray(_ramp(m)).resize((size, size), Image.NEAREST)) for _, m in maps]
    gap = np.full((size, 4, 3), 255, np.uint8)
    row = [tiles[0]]
    for t in tiles[1:]:
        row += [gap, t]
    return np.concatenate(row, 1)


def save_mask_png(classes: np.ndarray, path: Path) -> Path:
    """The predicted classes as a palette PNG (pixel value = class index, 0..3)."""
    from PIL import Image

    img = Image.fromarray(classes.astype(np.uint8), mode="P")
    img.putpalette(PALETTE.reshape(-1).tolist() + [0] * (768 - PALETTE.size))
    img.save(path)
    return path
