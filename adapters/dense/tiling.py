"""Cutting a scene into model-sized tiles and stitching per-tile predictions back together."""
from __future__ import annotations

import numpy as np


def origins(height: int, width: int, size: int, overlap: int = 0) -> list[tuple[int, int]]:
    """Top-left corners covering the whole H x W area with size x size tiles; the last row and
    column are shifted inwards so every tile lies inside (the image must be at least one tile)."""
    if height < size or width < size:
        raise ValueError(f"a {height}x{width} image is smaller than one {size}px tile")
    step = max(1, size - overlap)

    def starts(n):
        out = list(range(0, n - size + 1, step))
        if out[-1] != n - size:
            out.append(n - size)
        return out

    return [(y, x) for y in starts(height) for x in starts(width)]


def cut(image: np.ndarray, corners, size: int) -> np.ndarray:
    """N x size x size x ... tiles of an H x W x ... array."""
    return np.stack([image[y:y + size, x:x + size] for y, x in corners])


def stitch(tiles: np.ndarray, corners, height: int, width: int) -> np.ndarray:
    """Average N x C x size x size per-tile scores into C x H x W (overlaps are averaged)."""
    n, c, size, _ = tiles.shape
    total = np.zeros((c, height, width), np.float64)
    weight = np.zeros((height, width), np.float64)
    for tile, (y, x) in zip(tiles, corners):
        total[:, y:y + size, x:x + size] += tile
        weight[y:y + size, x:x + size] += 1
    if (weight == 0).any():
        raise ValueError("the tiles do not cover the image")
    return (total / weight).astype(np.float32)
