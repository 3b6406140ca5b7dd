"""Camouflage scenes composited from REAL textures (photographs bundled with scikit-image and
scikit-learn; no download), at the DINOv2 input size (224 px = 16 x 16 tokens of 14 px).

Every scene: a background window cut from one source photograph, an object shape, and an object
window whose pixels come from a *real* texture too. Object and background share one random
palette (the photograph's luminance mapped through a two-colour ramp) and the object's per-channel
mean and standard deviation are matched to the background's, so colour alone does not give the
object away. Two modes:

- ``scale``: object and background are cut from the **same** photograph; the object's window is
  rescaled 1.8-2.8x (finer or coarser), so the two differ mainly in texture scale, i.e. in which
  spatial frequencies carry their energy (the cue FGSA is built for);
- ``texture``: the object is cut from a **different** photograph of the same split (texture type
  differs; colour statistics still matched).

Splits are by source photograph and by shape family: ``train`` scenes use `TRAIN_TEXTURES` and
ellipses / smooth blobs / random star-convex polygons; ``heldout`` scenes use `HELDOUT_TEXTURES`
(photographs never seen in training) and shapes never seen in training (scikit-image's horse
silhouette and sharp five-to-seven-pointed stars). The same seed gives the same scenes.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from adapters.fgsa.data import _blur, _resize

SIZE = 224
MODES = ("scale", "texture")
SPLITS = ("train", "heldout")
TRAIN_TEXTURES = ("brick", "grass", "coffee", "chelsea", "astronaut", "camera", "moon", "china", "immunohistochemistry", "cell")
HELDOUT_TEXTURES = ("gravel", "rocket", "flower", "coins")
TRAIN_SHAPES = ("ellipse", "blob", "polygon")
HELDOUT_SHAPES = ("horse", "star")
SCALE_RATIO = (1.8, 2.8)  # object window / background window, or its inverse


def textures(split: str) -> tuple[str, ...]:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}")
    return TRAIN_TEXTURES if split == "train" else HELDOUT_TEXTURES


def shapes(split: str) -> tuple[str, ...]:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}")
    return TRAIN_SHAPES if split == "train" else HELDOUT_SHAPES


@functools.lru_cache(maxsize=None)
def photograph(name: str) -> np.ndarray:
    """The source photograph's luminance in [0, 1] (1st-99th percentile stretched), float32."""
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_image

        img = load_sample_image(f"{name}.jpg")
    else:
        from skimage import data

        img = getattr(data, name)()
    img = np.asarray(img, np.float32)
    if img.ndim == 3:
        img = img[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32)
    lo, hi = np.percentile(img, (1, 99))
    return np.clip((img - lo) / max(float(hi - lo), 1e-6), 0, 1).astype(np.float32)


MIN_DETAIL = 0.035  # std of a window's high-pass (window minus its 3-px blur): no flat sky or wall


def detail(img: np.ndarray) -> float:
    return float((img - _blur(img, 3.0)).std())


def window(rng: np.random.Generator, name: str, size: int, scale: float, tries: int = 24) -> np.ndarray:
    """A size x size view of `scale * size` source pixels (scale > 1: finer texture), at a random
    place and quarter turn, redrawn (up to `tries` times) until it holds texture (`MIN_DETAIL`);
    the photograph is mirrored when the window is larger than it."""
    best, best_detail = None, -1.0
    for _ in range(tries):
        out = _window(rng, name, size, scale)
        d = detail(out)
        if d > best_detail:
            best, best_detail = out, d
        if d >= MIN_DETAIL:
            break
    return best


def _window(rng: np.random.Generator, name: str, size: int, scale: float) -> np.ndarray:
    src = photograph(name)
    side = max(8, int(round(size * scale)))
    reps = int(np.ceil(side / min(src.shape))) + 1
    if reps > 1:
        src = np.pad(src, [(0, src.shape[0] * (reps - 1)), (0, src.shape[1] * (reps - 1))], mode="symmetric")
    y = int(rng.integers(0, src.shape[0] - side + 1))
    x = int(rng.integers(0, src.shape[1] - side + 1))
    crop = np.rot90(src[y:y + side, x:x + side], int(rng.integers(4)))
    return _resize(np.ascontiguousarray(crop), (size, size))


# --- shapes ------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _horse() -> np.ndarray:
    from skimage import data

    horse = ~data.horse()
    ys, xs = np.nonzero(horse)
    return horse[ys.min():ys.max() + 1, xs.min():xs.max() + 1].astype(np.float32)


def _polygon_mask(size: int, cy: float, cx: float, radii: np.ndarray, start: float) -> np.ndarray:
    from skimage.draw import polygon

    angles = start + np.arange(len(radii)) * 2 * np.pi / len(radii)
    mask = np.zeros((size, size), np.float32)
    rr, cc = polygon(cy + radii * np.sin(angles), cx + radii * np.cos(angles), (size, size))
    mask[rr, cc] = 1
    return mask


def shape_mask(rng: np.random.Generator, kind: str, size: int) -> np.ndarray:
    """A 0/1 mask of one shape family covering roughly 10-35% of the frame."""
    extent = size * rng.uniform(0.42, 0.68)  # bounding size in pixels
    cy = rng.uniform(extent / 2, size - extent / 2)
    cx = rng.uniform(extent / 2, size - extent / 2)
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    if kind == "ellipse":
        a, b = extent / 2, extent / 2 * rng.uniform(0.5, 1.0)
        t = rng.uniform(0, np.pi)
        u = (xx - cx) * np.cos(t) + (yy - cy) * np.sin(t)
        v = -(xx - cx) * np.sin(t) + (yy - cy) * np.cos(t)
        mask = ((u / a) ** 2 + (v / b) ** 2 < 1).astype(np.float32)
    elif kind == "blob":
        noise = _blur(rng.standard_normal((size, size)).astype(np.float32), extent / 6)
        r = np.hypot(yy - cy, xx - cx) / (extent / 2)
        field = noise / (noise.std() + 1e-6) * 0.45 + (1 - r) * 1.5
        mask = (field > 0.6).astype(np.float32)
    elif kind == "polygon":  # star-convex, gently varying radius
        n = int(rng.integers(5, 10))
        mask = _polygon_mask(size, cy, cx, extent / 2 * rng.uniform(0.6, 1.0, n), rng.uniform(0, 2 * np.pi))
    elif kind == "star":  # sharp alternating spikes: never seen in training
        n = int(rng.integers(5, 8))
        radii = np.tile([extent / 2, extent / 2 * rng.uniform(0.35, 0.5)], n)
        mask = _polygon_mask(size, cy, cx, radii, rng.uniform(0, 2 * np.pi))
    elif kind == "horse":
        horse = _horse()
        if rng.random() < 0.5:
            horse = horse[:, ::-1]
        h = int(extent)
        w = min(size, int(h * horse.shape[1] / horse.shape[0]))
        obj = _resize(np.ascontiguousarray(horse), (h, w)) > 0.5
        mask = np.zeros((size, size), np.float32)
        y, x = int(rng.integers(0, size - h + 1)), int(rng.integers(0, size - w + 1))
        mask[y:y + h, x:x + w] = obj
    else:
        raise ValueError(f"unknown shape '{kind}'")
    if mask.mean() < 0.04:  # degenerate draw: a plain ellipse in the middle
        mask = ((((yy - size / 2) / (size * 0.25)) ** 2 + ((xx - size / 2) / (size * 0.2)) ** 2) < 1).astype(np.float32)
    return mask


# --- composition -------------------------------------------------------------------------------


def _palette(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Dark and light colours of a ramp (natural-ish: earthy to vivid)."""
    dark = rng.uniform(0.0, 0.35, 3).astype(np.float32)
    light = np.clip(dark + rng.uniform(0.3, 0.8, 3), 0, 1).astype(np.float32)
    return dark, light


def _recolour(gray: np.ndarray, palette) -> np.ndarray:
    dark, light = palette
    return dark[:, None, None] + (light - dark)[:, None, None] * gray[None]


def _match(obj: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Per-channel mean and std of `obj` set to those of `ref`."""
    out = np.empty_like(obj)
    for ch in range(obj.shape[0]):
        o, r = obj[ch], ref[ch]
        out[ch] = (o - o.mean()) / (o.std() + 1e-6) * r.std() + r.mean()
    return out


@dataclass
class Scene:
    image: np.ndarray  # 3 x S x S float32 in [0, 1]
    mask: np.ndarray  # S x S float32 0/1
    mode: str
    background: str  # source photograph of the background
    obj: str  # source photograph of the object
    shape: str
    ratio: float  # object window scale / background window scale


def make_scene(rng: np.random.Generator, split: str = "train", mode: str = "scale", size: int = SIZE) -> Scene:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    names = textures(split)
    kind = shapes(split)[int(rng.integers(len(shapes(split))))]
    mask = shape_mask(rng, kind, size)
    bg_name = names[int(rng.integers(len(names)))]
    base = rng.uniform(0.6, 1.3)
    if mode == "scale":
        obj_name = bg_name
        ratio = rng.uniform(*SCALE_RATIO)
        ratio = ratio if rng.random() < 0.5 else 1 / ratio
    else:
        obj_name = names[(names.index(bg_name) + 1 + int(rng.integers(len(names) - 1))) % len(names)]
        ratio = rng.uniform(0.8, 1.25)
    palette = _palette(rng)
    bg = _recolour(window(rng, bg_name, size, base), palette)
    obj = _match(_recolour(window(rng, obj_name, size, base * ratio), palette), bg)
    alpha = _blur(mask, 1.0)[None]
    image = np.clip(bg * (1 - alpha) + obj * alpha, 0, 1).astype(np.float32)
    return Scene(image, mask.astype(np.float32), mode, bg_name, obj_name, kind, float(ratio))


def make_scenes(seed: int, n: int, split: str = "train", modes: tuple[str, ...] = MODES, size: int = SIZE) -> list[Scene]:
    rng = np.random.default_rng(seed)
    return [make_scene(rng, split, modes[i % len(modes)], size) for i in range(n)]


def make_dataset(seed: int, n: int, split: str = "train", modes: tuple[str, ...] = MODES, size: int = SIZE):
    """n scenes cycling through `modes`: images N x 3 x S x S, masks N x 1 x S x S, and the scenes'
    descriptions (mode, background, object, shape, ratio) as dicts."""
    scenes = make_scenes(seed, n, split, modes, size)
    images = np.stack([s.image for s in scenes]).astype(np.float32)
    masks = np.stack([s.mask for s in scenes])[:, None].astype(np.float32)
    info = [dict(mode=s.mode, background=s.background, obj=s.obj, shape=s.shape, ratio=round(s.ratio, 3)) for s in scenes]
    return images, masks, info
