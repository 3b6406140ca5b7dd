"""Unlabelled views for self-supervised adaptation and labelled pixels for the linear head, all
from the real Landsat-7 scene and all a function of their seed.

- Unlabelled tiles: 112 px crops of the training region (left of the scene). Each tile gets a few
  views: a mild global photometric change (brightness, contrast, saturation, gamma), a *patch
  augmentation* (every 14 px patch its own brightness/contrast jitter, plus pixel noise) and one
  of the 8 dihedral turns/flips, which maps the patch grid onto itself so patches still correspond.
  Overhead land cover has no "up", so the turns are the main difference between two views.
- Labelled pixels: the scene's land-cover raster has 2,872 labelled pixels (codes 1..7). The head
  is fitted on a fraction of the training region's labelled pixels, drawn per class (at least one
  pixel of every class present), and scored on every labelled pixel of the held-out region.
"""
from __future__ import annotations

import numpy as np

from adapters.dense import landsat

TILE = 112
PATCH = 14
FRACTIONS = (0.01, 0.05, 0.20, 1.0)


def dihedral(image: np.ndarray, code: int) -> np.ndarray:
    """H x W x ... array turned `code % 4` quarter turns, then flipped left-right when code >= 4."""
    out = np.rot90(image, code % 4, axes=(0, 1))
    return np.ascontiguousarray(out[:, ::-1] if code >= 4 else out)


def augment(tile: np.ndarray, rng: np.random.Generator, patch: int = PATCH) -> tuple[np.ndarray, int]:
    """One view of an H x W x 3 [0, 1] tile and its dihedral code."""
    x = tile.astype(np.float32)
    grey = x.mean(-1, keepdims=True)
    # mild on purpose: at 30 m colour is the main land-cover cue, and views that differ strongly in
    # colour taught the adapter to ignore it (seed-0 trial kept in the training log as superseded)
    x = grey + (x - grey) * rng.uniform(0.9, 1.1)  # saturation
    x = (x - 0.5) * rng.uniform(0.9, 1.1) + 0.5 + rng.uniform(-0.03, 0.03)  # contrast, brightness
    x = np.clip(x, 0, 1) ** rng.uniform(0.95, 1.05)
    gh, gw = x.shape[0] // patch, x.shape[1] // patch
    gain = np.repeat(np.repeat(rng.normal(1.0, 0.03, (gh, gw, 1)), patch, 0), patch, 1)
    shift = np.repeat(np.repeat(rng.normal(0.0, 0.02, (gh, gw, 1)), patch, 0), patch, 1)
    x = x * gain + shift + rng.normal(0, 0.01, x.shape)
    code = int(rng.integers(0, 8))
    return dihedral(np.clip(x, 0, 1).astype(np.float32), code), code


def unlabelled_views(n_tiles: int, views: int, seed: int = 0, size: int = TILE, regions=("train",)):
    """N x V x 3 x S x S views and N x V dihedral codes of `n_tiles` random crops of `regions`
    (labels are never read)."""
    rng = np.random.default_rng(seed)
    sc = landsat.scene()
    corners = [c for r in regions for c in landsat.tile_origins(r, size, 4, sc.valid)]
    picks = [corners[i] for i in rng.integers(0, len(corners), n_tiles)]
    images = np.zeros((n_tiles, views, 3, size, size), np.float32)
    codes = np.zeros((n_tiles, views), np.int64)
    for i, (y, x) in enumerate(picks):
        for v in range(views):
            view, codes[i, v] = augment(sc.rgb[y:y + size, x:x + size], rng)
            images[i, v] = view.transpose(2, 0, 1)
    return images, codes


def labelled_pixels(region: str) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) N x 2 int and classes 0..6 of the labelled, valid pixels in a region."""
    labels = landsat.landcover()
    valid = landsat.scene().valid
    c0, c1 = landsat.region_columns(region)
    mask = np.zeros_like(valid)
    mask[:, c0:c1] = True
    ys, xs = np.nonzero(mask & valid & (labels > 0))
    return np.stack([ys, xs], 1), labels[ys, xs] - 1


def fraction_subset(classes: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Indices of a per-class random `fraction` of the labelled pixels (at least one per class)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must lie in (0, 1], got {fraction}")
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(classes):
        idx = np.flatnonzero(classes == c)
        k = max(1, int(round(fraction * len(idx))))
        keep.append(rng.choice(idx, size=k, replace=False))
    return np.sort(np.concatenate(keep))


WINDOW = 160  # example windows: 160 rows of the held-out region at its full width
WINDOW_ROWS = (96, 168, 216, 264)  # chosen for their labelled pixels of several classes


def heldout_window(index: int) -> tuple[np.ndarray, np.ndarray]:
    """A held-out window: RGB H x W x 3 in [0, 1] and its land-cover codes (uint8, 0 = unlabelled)."""
    y = WINDOW_ROWS[index]
    c0, c1 = landsat.region_columns("heldout")
    return (landsat.scene().rgb[y:y + WINDOW, c0:c1].copy(),
            landsat.landcover()[y:y + WINDOW, c0:c1].astype(np.uint8))
