"""Dense features of a whole image from a `GlareEncoder`: overlapping 112 px tiles, the frozen
prefix computed once per tile and the remaining blocks run with the adapter on and/or off.
Shared by inference (the tab), training (head fits) and the bench."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from adapters.dense import tiling

BATCH = 8


def tile_corners(height: int, width: int, tile: int) -> list[tuple[int, int]]:
    """Tiles overlapping by half a tile, so every pixel away from the border is seen twice."""
    return tiling.origins(height, width, tile, tile // 2 if (height > tile or width > tile) else 0)


@torch.no_grad()
def tile_maps(encoder, image: np.ndarray, flags=(True, False), device="cpu", progress=None, adapter=None):
    """Per-tile patch feature maps of an H x W x 3 image: {flag: N x C x h x w} (flag = adapter on)
    and the corners. `adapter` swaps in another UniAdapter set than the encoder's own."""
    tile = encoder.config.image_size
    corners = tile_corners(*image.shape[:2], tile)
    tiles = tiling.cut(image, corners, tile).transpose(0, 3, 1, 2)
    out = {f: [] for f in flags}
    for i in range(0, len(tiles), BATCH):
        x = torch.from_numpy(np.ascontiguousarray(tiles[i:i + BATCH], np.float32)).to(device)
        prefix = encoder.prefix(x)
        for f in flags:
            tokens = encoder.suffix(prefix, adapter_on=f, adapter=adapter)
            out[f].append(tokens[:, 1:].transpose(1, 2).reshape(len(x), -1, tile // encoder.patch, tile // encoder.patch).float().cpu())
        if progress is not None:
            progress(min(len(tiles), i + BATCH) / len(tiles))
    return {f: torch.cat(v) for f, v in out.items()}, corners


def sample_points(maps: torch.Tensor, corners, tile: int, points: np.ndarray) -> np.ndarray:
    """Features at pixel `points` (N x 2 rows/cols), bilinear from each tile's patch grid at pixel
    centres and averaged over the tiles that hold the pixel."""
    total = np.zeros((len(points), maps.shape[1]), np.float64)
    count = np.zeros(len(points), np.int64)
    for m, (y, x) in zip(maps, corners):
        inside = (points[:, 0] >= y) & (points[:, 0] < y + tile) & (points[:, 1] >= x) & (points[:, 1] < x + tile)
        if not inside.any():
            continue
        local = points[inside] - np.array([y, x])
        grid = torch.from_numpy(((local[:, ::-1] + 0.5) / tile * 2 - 1).astype(np.float32)).view(1, -1, 1, 2)
        feats = F.grid_sample(m[None], grid, mode="bilinear", align_corners=False)[0, :, :, 0].T
        total[inside] += feats.numpy()
        count[inside] += 1
    if (count == 0).any():
        raise ValueError("some points lie outside every tile")
    return (total / count[:, None]).astype(np.float32)


def stitched_logits(head, maps: torch.Tensor, corners, tile: int, height: int, width: int) -> np.ndarray:
    """classes x H x W logits of the head over every tile, averaged where tiles overlap."""
    with torch.no_grad():
        logits = head.logits_map(maps, (tile, tile)).numpy()
    return tiling.stitch(logits, corners, height, width)
