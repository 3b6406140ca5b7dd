"""Synthetic camouflage scenes from scikit-image's bundled textures and silhouettes (no download).

Three modes:
- ``salient``: object and background use different textures, tints and brightness (easy; used to
  pretrain the bundled backbone, so it knows "objects" but not camouflage);
- ``camouflage``: object and background are crops of the *same* texture with the same tint; the
  object's crop is rescaled (so its texture frequency differs) and its per-channel mean and std are
  matched to the background's;
- ``spectral``: band-limited noise; object and background have the same mean, std and tint and
  differ only in the frequency band that carries their energy (`OBJECT_BAND` vs
  `BACKGROUND_BAND`, cycles per pixel), so the band that matters is known.

Every scene is a float32 3 x S x S image in [0, 1] and a 0/1 mask; the same seed gives the same
scenes.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

MODES = ("salient", "camouflage", "spectral")
TEXTURES = ("brick", "grass", "gravel", "moon")
SILHOUETTES = ("horse", "blob", "shape")
# cycles per pixel; both lie below the Nyquist frequency of a 1/4-resolution map (0.125)
OBJECT_BAND = (0.085, 0.12)
BACKGROUND_BAND = (0.025, 0.055)


@functools.lru_cache(maxsize=None)
def texture(name: str) -> np.ndarray:
    from skimage import data

    img = getattr(data, name)().astype(np.float32)
    if img.ndim == 3:
        img = img.mean(-1)
    img = (img - img.min()) / max(float(img.max() - img.min()), 1e-6)
    return img


@functools.lru_cache(maxsize=None)
def _horse() -> np.ndarray:
    from skimage import data

    horse = ~data.horse()  # the horse is the False pixels
    ys, xs = np.nonzero(horse)
    return horse[ys.min():ys.max() + 1, xs.min():xs.max() + 1].astype(np.float32)


def _resize(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2

    h, w = size
    interp = cv2.INTER_AREA if img.shape[0] > h else cv2.INTER_LINEAR
    return cv2.resize(img, (w, h), interpolation=interp)


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    import cv2

    return cv2.GaussianBlur(img, (0, 0), sigma)


def silhouette(rng: np.random.Generator, size: int) -> np.ndarray:
    """A 0/1 object mask covering roughly 8-45% of the frame, at a random place."""
    kind = SILHOUETTES[rng.integers(len(SILHOUETTES))]
    extent = int(size * rng.uniform(0.45, 0.75))
    if kind == "horse":
        shape = _horse()
        if rng.random() < 0.5:
            shape = shape[:, ::-1]
        aspect = shape.shape[1] / shape.shape[0]
        h, w = (extent, max(8, int(extent * aspect))) if aspect < 1 else (max(8, int(extent / aspect)), extent)
        obj = _resize(np.ascontiguousarray(shape), (h, w)) > 0.5
    elif kind == "blob":
        noise = _blur(rng.standard_normal((extent, extent)).astype(np.float32), extent / 6)
        yy, xx = np.mgrid[:extent, :extent]
        r = np.hypot(yy - extent / 2, xx - extent / 2) / (extent / 2)
        field = noise / (noise.std() + 1e-6) * 0.5 + (1 - r) * 1.5
        obj = field > 0.6
    else:
        from skimage.draw import random_shapes

        labels, _ = random_shapes((extent, extent), max_shapes=1, min_shapes=1, min_size=extent // 2,
                                  channel_axis=None, rng=int(rng.integers(1 << 31)), allow_overlap=False)
        obj = labels < 255
    mask = np.zeros((size, size), np.float32)
    oh, ow = obj.shape
    oh, ow = min(oh, size), min(ow, size)
    y = rng.integers(0, size - oh + 1)
    x = rng.integers(0, size - ow + 1)
    mask[y:y + oh, x:x + ow] = obj[:oh, :ow]
    if mask.mean() < 0.05:  # a degenerate draw: fall back to an ellipse
        yy, xx = np.mgrid[:size, :size]
        mask = (((yy - size / 2) / (size * 0.25)) ** 2 + ((xx - size / 2) / (size * 0.2)) ** 2 < 1).astype(np.float32)
    return mask


def texture_crop(rng: np.random.Generator, name: str, size: int, scale: float) -> np.ndarray:
    """A size x size window showing `scale` times as many texture pixels (scale > 1: finer)."""
    tex = texture(name)
    side = int(min(max(8, round(size * scale)), min(tex.shape) - 1))
    y = rng.integers(0, tex.shape[0] - side)
    x = rng.integers(0, tex.shape[1] - side)
    crop = tex[y:y + side, x:x + side]
    k = int(rng.integers(4))
    return _resize(np.ascontiguousarray(np.rot90(crop, k)), (size, size))


def band_noise(rng: np.random.Generator, size: int, band: tuple[float, float]) -> np.ndarray:
    """Unit-variance noise whose energy lies in the radial frequency band (cycles per pixel)."""
    white = rng.standard_normal((size, size))
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.fftfreq(size)[None, :]
    radius = np.hypot(fy, fx)
    keep = (radius >= band[0]) & (radius <= band[1])
    out = np.fft.ifft2(np.fft.fft2(white) * keep).real
    return ((out - out.mean()) / (out.std() + 1e-8)).astype(np.float32)


def _tint(gray: np.ndarray, colour: np.ndarray) -> np.ndarray:
    return gray[None] * colour[:, None, None]


def _colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0.45, 1.0, size=3).astype(np.float32)


def _match(obj: np.ndarray, ref: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Per-channel mean/std of `obj` set to those of `ref` (both measured over the whole frame)."""
    out = np.empty_like(obj)
    for ch in range(obj.shape[0]):
        o, r = obj[ch], ref[ch]
        out[ch] = (o - o.mean()) / (o.std() + 1e-6) * r.std() + r.mean()
    return out


def _compose(background: np.ndarray, obj: np.ndarray, mask: np.ndarray, soft: float = 0.7) -> np.ndarray:
    alpha = _blur(mask, soft)[None] if soft > 0 else mask[None]
    return np.clip(background * (1 - alpha) + obj * alpha, 0, 1)


@dataclass
class Scene:
    image: np.ndarray  # 3 x S x S float32 in [0, 1]
    mask: np.ndarray  # S x S float32 0/1
    mode: str


def make_scene(rng: np.random.Generator, mode: str, size: int = 64) -> Scene:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    mask = silhouette(rng, size)
    if mode == "salient":
        names = rng.choice(len(TEXTURES), 2, replace=False)
        bg = _tint(texture_crop(rng, TEXTURES[names[0]], size, rng.uniform(0.5, 3)), _colour(rng))
        obj_colour = _colour(rng)
        obj = _tint(texture_crop(rng, TEXTURES[names[1]], size, rng.uniform(0.5, 3)), obj_colour)
        shift = rng.choice([-1, 1]) * rng.uniform(0.2, 0.4)
        bg = bg * 0.6 + (0.2 if shift > 0 else 0.4)
        obj = obj * 0.6 + (0.2 if shift < 0 else 0.4) + shift * 0.3
        image = _compose(bg, obj, mask)
    elif mode == "camouflage":
        name = TEXTURES[rng.integers(len(TEXTURES))]
        colour = _colour(rng)
        base = rng.uniform(1.0, 2.5)
        ratio = rng.uniform(1.8, 2.6) if rng.random() < 0.5 else 1 / rng.uniform(1.8, 2.6)
        bg = _tint(texture_crop(rng, name, size, base), colour) * 0.7 + 0.15
        obj = _match(_tint(texture_crop(rng, name, size, base * ratio), colour) * 0.7 + 0.15, bg, 1 - mask)
        image = _compose(bg, obj, mask)
    else:
        colour = _colour(rng)
        level = rng.uniform(0.35, 0.6)
        contrast = rng.uniform(0.12, 0.2)
        bg = _tint(level + contrast * band_noise(rng, size, BACKGROUND_BAND), colour)
        obj = _tint(level + contrast * band_noise(rng, size, OBJECT_BAND), colour)
        image = _compose(bg, obj, mask, soft=0)
    return Scene(np.clip(image, 0, 1).astype(np.float32), mask.astype(np.float32), mode)


def make_dataset(seed: int, n: int, modes: tuple[str, ...], size: int = 64) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """n scenes cycling through `modes`: images N x 3 x S x S, masks N x 1 x S x S, mode names."""
    rng = np.random.default_rng(seed)
    images = np.empty((n, 3, size, size), np.float32)
    masks = np.empty((n, 1, size, size), np.float32)
    names = []
    for i in range(n):
        scene = make_scene(rng, modes[i % len(modes)], size)
        images[i], masks[i, 0] = scene.image, scene.mask
        names.append(scene.mode)
    return images, masks, names
