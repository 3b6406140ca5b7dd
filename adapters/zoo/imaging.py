"""Turning an RGB picture into the normalised 1x3xSxS tensor a zoo vision model takes."""
from __future__ import annotations

CROP_FRACTION = 0.875  # the usual ImageNet evaluation crop: resize to size/0.875, keep the centre


def to_tensor(rgb, size: int, mean, std, crop: bool = False):
    """1x3xSxS float32 from an HxWx3 uint8 array or a PIL image.

    ``crop=False`` resizes the whole picture to SxS (bicubic); ``crop=True`` resizes the shorter
    side to S/0.875 and keeps the central SxS square.
    """
    import numpy as np
    import torch
    from PIL import Image

    img = rgb if isinstance(rgb, Image.Image) else Image.fromarray(np.asarray(rgb, dtype=np.uint8))
    img = img.convert("RGB")
    if crop:
        w, h = img.size
        short = int(round(size / CROP_FRACTION))
        scale = short / min(w, h)
        img = img.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BICUBIC)
        w, h = img.size
        left, top = (w - size) // 2, (h - size) // 2
        img = img.crop((left, top, left + size, top + size))
    else:
        img = img.resize((size, size), Image.BICUBIC)
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
    x = (x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    return x.unsqueeze(0).contiguous()
