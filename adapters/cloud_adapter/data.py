"""Clouded tiles of the real Landsat-7 scene (and a shifted set over other real images), with the
4-class masks the simulator implies. Everything is a function of its seed.

- train: random 112 px crops of the training region (left of the scene), random cloud settings
  over the whole slider range, random flips/rotations at training time;
- heldout: the held-out region (right of the scene, never seen in training) on a fixed tile grid,
  four cloud draws per tile;
- shifted: the same cloud draws over photographs that are not satellite images (scikit-image's
  grass, gravel, brick, coffee, rocket, astronaut), to show how far the model is from home.
"""
from __future__ import annotations

import numpy as np

from adapters.cloud_adapter.simulate import CloudSettings, random_settings, simulate
from adapters.dense import landsat

TILE = 112
HELDOUT_STRIDE = 28
HELDOUT_DRAWS = 4
SHIFTED_IMAGES = ("grass", "gravel", "brick", "coffee", "rocket", "astronaut")


def clear_tile(region: str, corner: tuple[int, int], size: int = TILE) -> np.ndarray:
    y, x = corner
    return landsat.scene().rgb[y:y + size, x:x + size]


def _clouded(tiles: list[np.ndarray], settings: list[CloudSettings]):
    images, labels = [], []
    for tile, s in zip(tiles, settings):
        out, lab, _ = simulate(tile, s)
        images.append(out.transpose(2, 0, 1))
        labels.append(lab)
    return np.stack(images).astype(np.float32), np.stack(labels).astype(np.int64)


def train_set(n: int, seed: int = 0, size: int = TILE):
    """n clouded crops of the training region: images N x 3 x S x S in [0, 1], labels N x S x S."""
    rng = np.random.default_rng(seed)
    sc = landsat.scene()
    corners = landsat.tile_origins("train", size, 4, sc.valid)
    picks = [corners[i] for i in rng.integers(0, len(corners), n)]
    return _clouded([sc.rgb[y:y + size, x:x + size] for y, x in picks], [random_settings(rng) for _ in picks])


def heldout_corners(size: int = TILE) -> list[tuple[int, int]]:
    return landsat.tile_origins("heldout", size, HELDOUT_STRIDE, landsat.scene().valid)


def heldout_set(seed: int = 1000, size: int = TILE, draws: int = HELDOUT_DRAWS):
    """Every held-out tile under `draws` cloud draws (fixed seeds)."""
    rng = np.random.default_rng(seed)
    sc = landsat.scene()
    tiles, settings = [], []
    for y, x in heldout_corners(size):
        for _ in range(draws):
            tiles.append(sc.rgb[y:y + size, x:x + size])
            settings.append(random_settings(rng))
    return _clouded(tiles, settings)


def shifted_tiles(size: int = TILE) -> list[np.ndarray]:
    from skimage import data as skdata
    from skimage.transform import resize

    out = []
    for name in SHIFTED_IMAGES:
        img = getattr(skdata, name)()
        if img.ndim == 2:
            img = np.stack([img] * 3, -1)
        img = img[..., :3].astype(np.float32) / 255.0
        # a quarter-size view, centre crop: about the ground sampling the Landsat tiles have
        small = resize(img, (max(size, img.shape[0] // 4), max(size, img.shape[1] // 4)), anti_aliasing=True)
        y0, x0 = (small.shape[0] - size) // 2, (small.shape[1] - size) // 2
        out.append(small[y0:y0 + size, x0:x0 + size].astype(np.float32))
    return out


def shifted_set(seed: int = 2000, size: int = TILE, draws: int = HELDOUT_DRAWS):
    rng = np.random.default_rng(seed)
    tiles, settings = [], []
    for tile in shifted_tiles(size):
        for _ in range(draws):
            tiles.append(tile)
            settings.append(random_settings(rng))
    return _clouded(tiles, settings)


def augment(images: np.ndarray, labels: np.ndarray, rng: np.random.Generator):
    """Random flips and quarter turns, the same for image and mask."""
    k = int(rng.integers(0, 4))
    images, labels = np.rot90(images, k, axes=(-2, -1)), np.rot90(labels, k, axes=(-2, -1))
    if rng.random() < 0.5:
        images, labels = images[..., ::-1], labels[..., ::-1]
    return np.ascontiguousarray(images), np.ascontiguousarray(labels)
