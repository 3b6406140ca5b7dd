"""Videos made from real photographs, for training and measuring image-to-video models that must
work on a user's own photo: smooth camera moves (pan in four directions, zoom in or out, at two
speeds) over package sample photographs, and a cut-out object gliding over another photograph.
Captions name what the *content* does in the frame ("the scene moves left slowly", "zoom in
fast", "an object moves up"), which is also what `global_motion` measures from a generated video.

Photographs come from scikit-image, scikit-learn and matplotlib (all installed with the app); a
fixed few are held out of training and used only for measurement. Pure numpy/OpenCV, no torch.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

PANS: dict[str, tuple[int, int]] = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
ZOOMS = ("in", "out")
# output pixels per frame (pans), x frame size / 64: at 64 px "slowly" is a quarter of a latent
# pixel per frame, the least the 16x16 latents of the bundled model can be asked to carry
SPEEDS: dict[str, float] = {"slowly": 1.0, "fast": 2.0}
ZOOM_RATE: dict[str, float] = {"slowly": 0.02, "fast": 0.04}  # relative scale change per frame

TRAIN_PHOTOS = ("astronaut", "rocket", "hubble_deep_field", "immunohistochemistry", "retina", "stereo_motorcycle",
                "china", "grace_hopper", "camera", "coins", "moon", "brick", "grass", "gravel")
HELD_OUT_PHOTOS = ("chelsea", "coffee", "flower")
VOCABULARY = ("the", "scene", "moves", "zoom", "an", "object", *PANS, *ZOOMS, *SPEEDS)


@lru_cache(maxsize=None)
def photo(name: str) -> np.ndarray:
    """A sample photograph as (H, W, 3) float32 in [0, 1] (grey ones repeated to RGB)."""
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_image

        image = load_sample_image(f"{name}.jpg")
    elif name == "grace_hopper":
        import matplotlib.cbook as cbook
        from PIL import Image

        with Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as handle:
            image = np.asarray(handle.convert("RGB"))
    else:
        import skimage.data

        image = getattr(skimage.data, name)()
        if isinstance(image, tuple):
            image = image[0]
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    image = image[..., :3].astype(np.float32) / 255.0
    image.setflags(write=False)
    return image


@dataclass(frozen=True)
class PhotoClip:
    frames: np.ndarray  # (F, S, S, 3) float32 in [0, 1]
    caption: str
    kind: str  # "pan", "zoom" or "object"
    direction: str  # left/right/up/down, or in/out for zooms
    speed: str  # slowly/fast
    source: str  # the photograph's name


def _warp(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """One frame through an affine map; the photo is first area-averaged down to about the frame's
    scale, so a 3x reduction does not alias (warpAffine itself only interpolates)."""
    import cv2

    scale = float(matrix[0, 0])
    if scale < 0.9:
        small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        k = small.shape[1] / image.shape[1]
        matrix = matrix.copy()
        matrix[:, :2] /= k
        image = small
    return cv2.warpAffine(image, matrix.astype(np.float32), (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT)


def _view(cx: float, cy: float, side: float, size: int) -> np.ndarray:
    """The affine map from photo pixels to a size x size frame showing the square of `side` photo
    pixels centred at (cx, cy)."""
    scale = size / side
    return np.array([[scale, 0, size / 2 - scale * cx], [0, scale, size / 2 - scale * cy]])


def camera_clip(rng: np.random.Generator, name: str, *, size: int = 64, frames: int = 8, kind: str | None = None,
                direction: str | None = None, speed: str | None = None) -> PhotoClip:
    """A pan or zoom over one photograph, smooth and sub-pixel exact (one affine warp per frame)."""
    image = photo(name)
    height, width = image.shape[:2]
    kind = kind or ("pan" if rng.random() < 2 / 3 else "zoom")
    speed = speed or list(SPEEDS)[rng.integers(len(SPEEDS))]
    side = rng.uniform(0.45, 0.8) * min(height, width)
    if kind == "pan":
        direction = direction or list(PANS)[rng.integers(len(PANS))]
        ux, uy = PANS[direction]
        step = SPEEDS[speed] * size / 64 * side / size  # photo pixels per frame for the wanted on-screen speed
        travel = step * (frames - 1)
        # the content moves `direction`, so the view window moves the other way
        cx = rng.uniform(side / 2 + travel * max(ux, 0), width - side / 2 - travel * max(-ux, 0))
        cy = rng.uniform(side / 2 + travel * max(uy, 0), height - side / 2 - travel * max(-uy, 0))
        views = [_view(cx - ux * step * f, cy - uy * step * f, side, size) for f in range(frames)]
        caption = f"the scene moves {direction} {speed}"
    elif kind == "zoom":
        direction = direction or ZOOMS[rng.integers(len(ZOOMS))]
        rate = ZOOM_RATE[speed] * (1 if direction == "in" else -1)
        growth = max((1 + rate) ** (-f) for f in range(frames))
        side = min(side, 0.98 * min(height, width) / growth)  # the widest view must fit in the photo
        sides = [side * (1 + rate) ** (-f) for f in range(frames)]
        largest = max(sides)
        cx = rng.uniform(largest / 2, width - largest / 2)
        cy = rng.uniform(largest / 2, height - largest / 2)
        views = [_view(cx, cy, s, size) for s in sides]
        caption = f"zoom {direction} {speed}"
    else:
        raise ValueError(f"unknown camera move {kind!r}")
    # one area reduction of the photo per clip to about twice the frames' scale, so the per-frame
    # anti-aliasing in `_warp` works on a small image (a 1411 px photo per frame cost ~20 ms a clip)
    k = min(1.0, 2 * min(float(v[0, 0]) for v in views))
    if k < 0.9:
        import cv2

        image = cv2.resize(image, None, fx=k, fy=k, interpolation=cv2.INTER_AREA)
        k = image.shape[1] / width
        views = [np.concatenate([v[:, :2] / k, v[:, 2:]], axis=1) for v in views]
    clip = np.stack([_warp(image, v, size) for v in views]).clip(0, 1)
    return PhotoClip(clip.astype(np.float32), caption, kind, direction, speed, name)


def _blob_mask(rng: np.random.Generator, size: int) -> np.ndarray:
    """A soft, irregular object outline (a wobbly ellipse), (size, size) in [0, 1]."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    angle = np.arctan2(yy - size / 2, xx - size / 2)
    wobble = 1 + sum(rng.uniform(-0.12, 0.12) * np.cos(k * angle + rng.uniform(0, 2 * np.pi)) for k in (2, 3, 5))
    radius = np.hypot((xx - size / 2) / rng.uniform(0.8, 1.0), (yy - size / 2) / rng.uniform(0.8, 1.0))
    return np.clip((size * 0.45 * wobble - radius) / 1.5, 0, 1)


def object_clip(rng: np.random.Generator, background: str, source: str, *, size: int = 64, frames: int = 8,
                direction: str | None = None, speed: str | None = None) -> PhotoClip:
    """A piece of one photograph, cut out with a soft irregular outline, gliding over another."""
    import cv2

    direction = direction or list(PANS)[rng.integers(len(PANS))]
    speed = speed or list(SPEEDS)[rng.integers(len(SPEEDS))]
    back = camera_clip(rng, background, size=size, frames=1, kind="pan", direction="left", speed="slowly").frames[0]
    piece_size = int(round(size * rng.uniform(0.3, 0.42)))
    image = photo(source)
    side = rng.uniform(0.25, 0.5) * min(image.shape[:2])
    cx = rng.uniform(side / 2, image.shape[1] - side / 2)
    cy = rng.uniform(side / 2, image.shape[0] - side / 2)
    piece = _warp(image, _view(cx, cy, side, piece_size), piece_size)
    mask = _blob_mask(rng, piece_size)
    ux, uy = PANS[direction]
    step = 2.0 * SPEEDS[speed] * size / 64  # objects move faster than the camera moves
    travel = step * (frames - 1)
    margin = piece_size / 2
    start_x = rng.uniform(margin + travel * max(-ux, 0), size - margin - travel * max(ux, 0))
    start_y = rng.uniform(margin + travel * max(-uy, 0), size - margin - travel * max(uy, 0))
    out = []
    for f in range(frames):
        x, y = start_x + ux * step * f, start_y + uy * step * f
        shift = np.array([[1, 0, x - piece_size / 2], [0, 1, y - piece_size / 2]], np.float32)
        placed = cv2.warpAffine(piece, shift, (size, size), flags=cv2.INTER_LINEAR)
        alpha = cv2.warpAffine(mask, shift, (size, size), flags=cv2.INTER_LINEAR)[..., None]
        out.append(back * (1 - alpha) + placed * alpha)
    return PhotoClip(np.stack(out).astype(np.float32).clip(0, 1), f"an object moves {direction} {speed}", "object",
                     direction, speed, f"{source} over {background}")


def training_clip(rng: np.random.Generator, size: int = 64, frames: int = 8) -> PhotoClip:
    """A random clip over training photographs only (never a held-out one)."""
    if rng.random() < 0.25:
        background, source = rng.choice(TRAIN_PHOTOS, 2, replace=False)
        return object_clip(rng, str(background), str(source), size=size, frames=frames)
    return camera_clip(rng, str(TRAIN_PHOTOS[rng.integers(len(TRAIN_PHOTOS))]), size=size, frames=frames)


def clip_batch(rng: np.random.Generator, n: int, size: int = 64, frames: int = 8) -> tuple[np.ndarray, list[str]]:
    """n training clips as one (n, F, S, S, 3) array and their captions."""
    clips = [training_clip(rng, size, frames) for _ in range(n)]
    return np.stack([c.frames for c in clips]), [c.caption for c in clips]


def held_out_clips(seed: int = 4321, size: int = 64, frames: int = 8) -> list[PhotoClip]:
    """Every camera move (4 pans, 2 zooms) at the slow speed over each held-out photograph."""
    rng = np.random.default_rng(seed)
    clips = []
    for name in HELD_OUT_PHOTOS:
        for direction in PANS:
            clips.append(camera_clip(rng, name, size=size, frames=frames, kind="pan", direction=direction, speed="slowly"))
        for direction in ZOOMS:
            clips.append(camera_clip(rng, name, size=size, frames=frames, kind="zoom", direction=direction, speed="slowly"))
    return clips


def global_motion(video: np.ndarray) -> dict[str, float]:
    """Mean optical flow of a video as a camera move: translation (dx, dy, px/frame, image y down)
    and divergence (relative scale change per frame; > 0 zooms in), fitted per frame pair by least
    squares to u = dx + d*(x - cx), v = dy + d*(y - cy) on a dense Farneback field."""
    import cv2

    video = np.clip(np.asarray(video, np.float32), 0, 1)
    grey = [cv2.cvtColor((f * 255).astype(np.uint8), cv2.COLOR_RGB2GRAY) for f in video]
    h, w = grey[0].shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    xx -= (w - 1) / 2
    yy -= (h - 1) / 2
    fits = []
    for a, b in zip(grey[:-1], grey[1:]):
        flow = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, max(7, w // 8), 3, 5, 1.2, 0)
        u, v = flow[..., 0].ravel(), flow[..., 1].ravel()
        design = np.zeros((2 * u.size, 3), np.float32)
        design[: u.size, 0], design[u.size:, 1] = 1, 1
        design[: u.size, 2], design[u.size:, 2] = xx.ravel(), yy.ravel()
        solution, *_ = np.linalg.lstsq(design, np.concatenate([u, v]), rcond=None)
        fits.append(solution)
    dx, dy, divergence = np.mean(fits, axis=0)
    return {"dx": float(dx), "dy": float(dy), "divergence": float(divergence)}


def classify_motion(video: np.ndarray, min_shift: float = 0.15, min_zoom: float = 0.004) -> str | None:
    """The named move a video shows: a pan direction, "in"/"out", or None when it barely moves.
    A zoom wins when its edge displacement exceeds the translation."""
    m = global_motion(video)
    size = np.asarray(video).shape[2]
    zoom_shift = abs(m["divergence"]) * size / 2
    shift = max(abs(m["dx"]), abs(m["dy"]))
    if max(zoom_shift, shift) < min_shift or (zoom_shift >= shift and abs(m["divergence"]) < min_zoom):
        return None
    if zoom_shift >= shift:
        return "in" if m["divergence"] > 0 else "out"
    if abs(m["dx"]) >= abs(m["dy"]):
        return "right" if m["dx"] > 0 else "left"
    return "down" if m["dy"] > 0 else "up"
