"""Synthetic sprite videos (what the first bundled image-to-video models were trained on; the
current ones learn from real photographs, `adapters.i2v.photos`), the measurements made on them,
and the generic ones every figure uses (`psnr`, `flow_magnitudes`).

A clip is one coloured sprite (circle, square or triangle) gliding in a straight line over a static
textured background, captioned with what it shows ("red circle moving left"). Everything is drawn
from a seed, so training data, held-out prompts and the figures in the model card are
reproducible. Pure numpy/OpenCV: no torch, no gradio.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.92, 0.12, 0.10),
    "green": (0.10, 0.85, 0.20),
    "blue": (0.15, 0.30, 0.95),
    "yellow": (0.95, 0.88, 0.10),
    "white": (0.97, 0.97, 0.97),
}
SHAPES = ("circle", "square", "triangle")
DIRECTIONS: dict[str, tuple[int, int]] = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
TEXTURES = ("stripes", "checker", "dots", "gradient")
# (colour, shape, direction) triples never shown in training: the bench measures on these.
HELD_OUT: tuple[tuple[str, str, str], ...] = (
    ("red", "square", "up"),
    ("green", "triangle", "left"),
    ("blue", "circle", "down"),
    ("yellow", "square", "right"),
    ("white", "triangle", "up"),
    ("red", "triangle", "right"),
    ("green", "circle", "down"),
    ("blue", "square", "left"),
)
VOCABULARY = ("a", "moving", *COLOURS, *SHAPES, *DIRECTIONS)


def caption(colour: str, shape: str, direction: str) -> str:
    return f"{colour} {shape} moving {direction}"


def parse_caption(text: str) -> tuple[str | None, str | None, str | None]:
    words = text.lower().replace(",", " ").split()
    pick = lambda options: next((w for w in words if w in options), None)  # noqa: E731
    return pick(COLOURS), pick(SHAPES), pick(DIRECTIONS)


@dataclass(frozen=True)
class Clip:
    frames: np.ndarray  # (F, H, W, 3) float32 in [0, 1]
    masks: np.ndarray  # (F, H, W) float32 sprite coverage
    caption: str
    colour: str
    shape: str
    direction: str


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    kind = TEXTURES[rng.integers(len(TEXTURES))]
    base = rng.uniform(0.25, 0.55, size=3) * np.array([1.0, 0.9, 0.8])
    other = np.clip(base + rng.uniform(-0.18, 0.18, size=3), 0.1, 0.65)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    if kind == "stripes":
        angle = rng.uniform(0, np.pi)
        period = rng.uniform(8, 14)
        t = 0.5 + 0.5 * np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period)
    elif kind == "checker":
        cell = int(rng.integers(6, 11))
        t = ((xx // cell + yy // cell) % 2).astype(np.float32)
    elif kind == "dots":
        period = rng.uniform(9, 13)
        t = (0.5 + 0.25 * (np.cos(2 * np.pi * xx / period) + np.cos(2 * np.pi * yy / period))) ** 2
    else:
        angle = rng.uniform(0, 2 * np.pi)
        t = (xx * np.cos(angle) + yy * np.sin(angle)) / size
        t = (t - t.min()) / max(np.ptp(t), 1e-6)
    return (base[None, None] * (1 - t[..., None]) + other[None, None] * t[..., None]).astype(np.float32)


def sprite_mask(shape: str, cx: float, cy: float, radius: float, size: int) -> np.ndarray:
    """Anti-aliased coverage (0..1) of one sprite centred at (cx, cy)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    dx, dy = xx - cx, yy - cy
    if shape == "circle":
        distance = np.sqrt(dx**2 + dy**2) - radius
    elif shape == "square":
        distance = np.maximum(np.abs(dx), np.abs(dy)) - radius * 0.85
    elif shape == "triangle":  # apex up: the farthest of three edges (outward normals, image y down)
        inradius = 0.5 * radius * 1.15
        normals = [(0.0, 1.0), (0.866, -0.5), (-0.866, -0.5)]
        distance = np.max([nx * dx + ny * dy for nx, ny in normals], axis=0) - inradius
    else:
        raise ValueError(f"unknown shape {shape}")
    return np.clip(0.5 - distance, 0.0, 1.0).astype(np.float32)


def make_clip(
    rng: np.random.Generator,
    size: int = 32,
    frames: int = 8,
    colour: str | None = None,
    shape: str | None = None,
    direction: str | None = None,
) -> Clip:
    colour = colour or list(COLOURS)[rng.integers(len(COLOURS))]
    shape = shape or SHAPES[rng.integers(len(SHAPES))]
    direction = direction or list(DIRECTIONS)[rng.integers(len(DIRECTIONS))]
    background = _texture(rng, size)
    radius = rng.uniform(4.0, 5.5)
    speed = rng.uniform(1.6, 2.4)
    travel = speed * (frames - 1)
    margin = radius + 1
    along_start = rng.uniform(margin, size - margin - travel)
    across = rng.uniform(margin, size - margin)
    ux, uy = DIRECTIONS[direction]
    tint = np.clip(np.array(COLOURS[colour]) + rng.uniform(-0.04, 0.04, 3), 0, 1).astype(np.float32)
    out, masks = [], []
    for f in range(frames):
        along = along_start + speed * f
        if ux:
            cx = along if ux > 0 else size - along
            cy = across
        else:
            cy = along if uy > 0 else size - along
            cx = across
        mask = sprite_mask(shape, cx, cy, radius, size)
        out.append(background * (1 - mask[..., None]) + tint[None, None] * mask[..., None])
        masks.append(mask)
    return Clip(np.stack(out).astype(np.float32), np.stack(masks), caption(colour, shape, direction), colour, shape, direction)


def is_held_out(clip_or_triple) -> bool:
    triple = (clip_or_triple.colour, clip_or_triple.shape, clip_or_triple.direction) if isinstance(clip_or_triple, Clip) else tuple(clip_or_triple)
    return triple in HELD_OUT


def training_clip(rng: np.random.Generator, size: int = 32, frames: int = 8) -> Clip:
    """A random clip whose (colour, shape, direction) is not held out."""
    while True:
        clip = make_clip(rng, size, frames)
        if not is_held_out(clip):
            return clip


def clip_batch(rng: np.random.Generator, n: int, size: int = 32, frames: int = 8) -> tuple[np.ndarray, list[str]]:
    clips = [training_clip(rng, size, frames) for _ in range(n)]
    return np.stack([c.frames for c in clips]), [c.caption for c in clips]


def held_out_clips(seed: int = 1234, per_prompt: int = 1, size: int = 32, frames: int = 8) -> list[Clip]:
    rng = np.random.default_rng(seed)
    return [make_clip(rng, size, frames, *triple) for triple in HELD_OUT for _ in range(per_prompt)]


# --- measurements ------------------------------------------------------------------------------

def foreground_mask(frame: np.ndarray, colour: np.ndarray, tolerance: float = 0.28) -> np.ndarray:
    """Pixels within `tolerance` (RGB distance) of the sprite colour: the sprites are saturated and
    the backgrounds muted, so this separates them without knowing the background."""
    return np.linalg.norm(frame - colour[None, None], axis=-1) < tolerance


def sprite_colour(frame: np.ndarray, name: str | None) -> np.ndarray:
    """The sprite's colour in frame 0: the named colour refined by the pixels that match it."""
    reference = np.array(COLOURS[name] if name in COLOURS else (1.0, 1.0, 1.0), dtype=np.float32)
    mask = foreground_mask(frame, reference, 0.35)
    return frame[mask].mean(axis=0) if mask.sum() >= 3 else reference


def _centroid(mask: np.ndarray) -> tuple[float, float] | None:
    if mask.sum() < 3:
        return None
    yy, xx = np.nonzero(mask)
    return float(xx.mean()), float(yy.mean())


def _shifted(mask: np.ndarray, dx: float, dy: float) -> np.ndarray:
    import cv2

    matrix = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(mask.astype(np.float32), matrix, mask.shape[::-1], flags=cv2.INTER_NEAREST) > 0.5


def appearance_consistency(video: np.ndarray, colour_name: str | None) -> dict[str, float]:
    """How well frames 1..N keep frame 0's sprite: centroid-aligned IoU of the colour masks (shape)
    and the RGB distance between the sprites' mean colours (colour). A lost sprite scores IoU 0."""
    colour = sprite_colour(video[0], colour_name)
    first = foreground_mask(video[0], colour)
    c0 = _centroid(first)
    ious, colour_errors = [], []
    for frame in video[1:]:
        mask = foreground_mask(frame, colour)
        c = _centroid(mask)
        if c0 is None or c is None:
            ious.append(0.0)
            colour_errors.append(float(np.linalg.norm(colour)))
            continue
        aligned = _shifted(mask, c0[0] - c[0], c0[1] - c[1])
        union = np.logical_or(aligned, first).sum()
        ious.append(float(np.logical_and(aligned, first).sum() / max(union, 1)))
        colour_errors.append(float(np.linalg.norm(frame[mask].mean(axis=0) - colour)))
    return {"shape_iou": float(np.mean(ious)), "colour_error": float(np.mean(colour_errors))}


def background_fidelity(video: np.ndarray, colour_name: str | None, tolerance: float = 0.4) -> float:
    """PSNR (dB) of frames 1..N against frame 0 away from the sprite: the backgrounds are static,
    so everything outside the sprite should stay exactly as in the input image. The sprite's pixels
    over all frames, loosely matched by colour and widened by 2 px, are left out; each frame's PSNR
    is capped at 60 dB (a perfect copy)."""
    import cv2

    colour = sprite_colour(video[0], colour_name)
    sprite = np.zeros(video.shape[1:3], dtype=np.uint8)
    for frame in video:
        sprite |= foreground_mask(frame, colour, tolerance).astype(np.uint8)
    keep = cv2.dilate(sprite, np.ones((5, 5), np.uint8)) == 0
    if keep.sum() < 16:
        return float("nan")
    return float(np.mean([min(psnr(frame[keep], video[0][keep]), 60.0) for frame in video[1:]]))


def motion_direction(video: np.ndarray, colour_name: str | None, min_shift: float = 1.5) -> str | None:
    """Direction of the sprite's centroid from frame 0 to the last frame (None when it barely moves
    or is lost)."""
    colour = sprite_colour(video[0], colour_name)
    start, end = _centroid(foreground_mask(video[0], colour)), _centroid(foreground_mask(video[-1], colour))
    if start is None or end is None:
        return None
    dx, dy = end[0] - start[0], end[1] - start[1]
    if max(abs(dx), abs(dy)) < min_shift:
        return None
    if abs(dx) >= abs(dy):
        return "right" if dx > 0 else "left"
    return "down" if dy > 0 else "up"


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


def flow_magnitudes(video: np.ndarray) -> np.ndarray:
    """Mean Farneback optical-flow magnitude (in input pixels) between consecutive frames.

    Flow runs on each colour channel and the strongest channel counts, because a blue sprite on a
    green background can vanish in grey; tiny frames are upscaled first so the window fits."""
    import cv2

    video = np.clip(np.asarray(video, np.float32), 0, 1)
    scale = max(1, 128 // video.shape[1])
    frames = [cv2.resize((f * 255).astype(np.uint8), None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC) for f in video]
    out = []
    for a, b in zip(frames[:-1], frames[1:]):
        per_channel = []
        for c in range(3):
            flow = cv2.calcOpticalFlowFarneback(a[..., c], b[..., c], None, 0.5, 3, 15, 3, 5, 1.2, 0)
            per_channel.append(float(np.linalg.norm(flow, axis=-1).mean()) / scale)
        out.append(max(per_channel))
    return np.array(out, dtype=np.float32)
