"""Input checks and outputs for the image-to-video tab: image loading (any size, centre-cropped and
resized with a note), setting validation, browser-playable H.264 mp4, frame strips. No gradio."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from adapters.common.errors import BadInput
from adapters.common.imaging import read_rgb_image
from adapters.i2v.config import LIMITS

MIN_SIDE = 16
MAX_SIDE = 8192
MAX_PIXELS = 40_000_000
MAX_PROMPT_CHARS = 300


@dataclass(frozen=True)
class PreparedImage:
    pixels: np.ndarray  # (S, S, 3) float32 in [0, 1]
    note: str


def load_image(path: str | Path | None, size: int) -> PreparedImage:
    """Open an uploaded image, centre-crop it to a square and resize it to `size`."""
    from PIL import Image

    rgb = read_rgb_image(path, min_side=MIN_SIDE, max_side=MAX_SIDE, max_pixels=MAX_PIXELS)
    height, width = rgb.shape[:2]
    image = Image.fromarray(rgb)
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    image = image.crop((left, top, left + side, top + side))
    resample = Image.Resampling.BOX if side >= size else Image.Resampling.BICUBIC
    image = image.resize((size, size), resample)
    notes = []
    if width != height:
        notes.append(f"centre-cropped from {width}x{height} to {side}x{side}")
    if side != size:
        notes.append(f"resized to {size}x{size}, the model's frame size")
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    return PreparedImage(pixels, ("Input " + " and ".join(notes) + ".") if notes else "")


def number(name: str, value, integer: bool = False) -> float | int:
    """A finite number from a form field (a whole one when `integer`), or a plain-language error."""
    if isinstance(value, bool):
        raise BadInput(f"{name} must be a number (got {value!r}).")
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise BadInput(f"{name} must be a number (got {value!r}).") from None
    if not math.isfinite(value):
        raise BadInput(f"{name} must be a finite number.")
    if integer and value != int(value):
        raise BadInput(f"{name} must be a whole number (got {value}).")
    return int(value) if integer else value


def check_settings(prompt, negative_prompt, motion_strength, frames, steps, guidance, seed) -> dict:
    """Plain-language errors for anything out of range; returns the cleaned values."""
    out = {}
    for key, label, integer in (("frames", "Frames", True), ("steps", "Steps", True), ("guidance", "Guidance", False), ("seed", "Seed", True)):
        value = number(label, {"frames": frames, "steps": steps, "guidance": guidance, "seed": seed}[key], integer)
        low, high = LIMITS[key]
        if not low <= value <= high:
            raise BadInput(f"{label} must be between {low} and {high} (got {value}).")
        out[key] = value
    m = number("Motion strength", motion_strength)
    if not 0.0 <= m <= 1.0:
        raise BadInput(f"Motion strength must be between 0 and 1 (got {m}).")
    out["motion_strength"] = m
    for key, label, value in (("prompt", "Prompt", prompt), ("negative_prompt", "Negative prompt", negative_prompt)):
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise BadInput(f"{label} must be text.")
        if len(value) > MAX_PROMPT_CHARS:
            raise BadInput(f"{label} is too long ({len(value)} characters; at most {MAX_PROMPT_CHARS}).")
        out[key] = value.strip()
    return out


def display_scale(size: int, target: int = 256) -> int:
    """Whole-number upscaling so tiny frames are visible (nearest neighbour: no invented detail)."""
    return max(1, target // size)


def upscale(frames: np.ndarray, factor: int) -> np.ndarray:
    return frames.repeat(factor, axis=-3).repeat(factor, axis=-2) if factor > 1 else frames


def to_uint8(frames: np.ndarray) -> np.ndarray:
    return (np.clip(frames, 0, 1) * 255 + 0.5).astype(np.uint8)


def write_mp4(frames: np.ndarray, path: Path, fps: int = 8) -> Path:
    """(F, H, W, 3) in [0, 1] -> H.264 / yuv420p mp4 with even sides (what browsers play)."""
    import imageio.v2 as imageio

    frames = to_uint8(frames)
    h, w = frames.shape[1:3]
    frames = frames[:, : h - h % 2, : w - w % 2]
    writer = imageio.get_writer(str(path), fps=fps, codec="libx264", pixelformat="yuv420p", macro_block_size=2,
                                ffmpeg_params=["-movflags", "+faststart", "-crf", "16"], ffmpeg_log_level="error")
    try:
        for frame in frames:
            writer.append_data(frame)
    finally:
        writer.close()
    return Path(path)


def frame_strip(rows: list[np.ndarray], gap: int = 2) -> np.ndarray:
    """Each row a (F, H, W, 3) video laid out left to right; rows stacked; uint8."""
    lines = []
    for video in rows:
        f, h, w, _ = video.shape
        line = np.ones((h, f * w + (f - 1) * gap, 3), np.float32)
        for i, frame in enumerate(video):
            line[:, i * (w + gap): i * (w + gap) + w] = frame
        lines.append(line)
    width = lines[0].shape[1]
    spacer = np.ones((gap, width, 3), np.float32)
    stacked = [lines[0]]
    for line in lines[1:]:
        stacked += [spacer, line]
    return to_uint8(np.concatenate(stacked, axis=0))
