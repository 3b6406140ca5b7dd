"""The image-to-video tab's variants for a reader study: the video with the I2V-Adapter branch on
and with it off, same sampler, prior and seed, from the tab's own device entry.

Cases are still pictures at the model's frame size (H x W x 3 in [0, 1]); bundled cases are the
first frames of camera moves over the held-out photographs of the tab's figures (never trained
on). A video is shown as still frames (a grid, or first/middle/last), since readers rate
what every frame shows side by side.
"""
from __future__ import annotations

import numpy as np

from studio.study.design import StudyKind, TextSetting, Variant

KEY = "i2v"
VARIANTS = (
    Variant("on", "I2V-Adapter on"),
    Variant("off", "I2V-Adapter off (same sampler, prior and seed)"),
)
WINDOWS = ("All frames in a grid", "First, middle and last frame", "Change from the first frame")
SETTINGS = {"motion_strength": 0.75, "frames": 8, "steps": 20, "guidance": 4.0, "seed": 0}
GAP = 2  # px of white between frames


def _frame_size() -> int:
    from studio.loader import MODELS
    from studio.registry import paper_spec

    return MODELS.get(paper_spec(KEY)).value.frame_size


def load_cases(path, crop: int = 0) -> list[np.ndarray]:
    """One picture per file, centre-cropped to a square at the model's frame size (as the tab does)."""
    from adapters.i2v.io import load_image

    return [np.ascontiguousarray(load_image(path, _frame_size()).pixels, np.float32)]


def bundled_cases(count: int, crop: int) -> list[np.ndarray]:
    from adapters.common.errors import BadInput
    from adapters.i2v.photos import held_out_clips

    size = _frame_size()
    clips = held_out_clips(size=size) + held_out_clips(seed=4322, size=size)  # two views of every move
    if count > len(clips):
        raise BadInput(f"The bundled held-out clips give {len(clips)} pictures; ask for fewer cases.")
    moves = 6  # clips come photo by photo, six moves each: take one of every photo before the next move
    order = [clips[i::moves] for i in range(moves)]
    return [np.ascontiguousarray(c.frames[0], np.float32) for group in order for c in group][:count]


def compute(picture: np.ndarray, settings: dict, progress=None) -> dict:
    from adapters.i2v.config import AnimateRequest
    from studio.device import progress_to, run_paper

    values = {**SETTINGS, **{k: v for k, v in settings.items() if k in SETTINGS}}
    request = AnimateRequest(pixels=np.clip(np.asarray(picture, np.float32), 0, 1), prompt=str(settings["prompt"]),
                             negative_prompt="", motion_strength=float(values["motion_strength"]),
                             frames=int(values["frames"]), steps=int(values["steps"]),
                             guidance=float(values["guidance"]), seed=int(values["seed"]))
    with progress_to(progress):
        result = run_paper(KEY, "run", request).result
    return {"on": result.video_on, "off": result.video_off}


def _row(frames: list[np.ndarray]) -> np.ndarray:
    h = frames[0].shape[0]
    gap = np.ones((h, GAP, 3), np.float32)
    parts = [p for f in frames for p in (f, gap)][:-1]
    return np.concatenate(parts, axis=1)


def display(video: np.ndarray, window: str) -> np.ndarray:
    video = np.clip(np.asarray(video, np.float32), 0, 1)
    n = len(video)
    if window == WINDOWS[1]:
        out = _row([video[0], video[n // 2], video[-1]])
    else:
        frames = list(video) if window == WINDOWS[0] else [np.clip(0.5 + (f - video[0]) * 2, 0, 1) for f in video]
        half = (n + 1) // 2
        top, bottom = frames[:half], frames[half:] + [np.ones_like(frames[0])] * (2 * half - n)
        gap = np.ones((GAP, _row(top).shape[1], 3), np.float32)
        out = np.concatenate([_row(top), gap, _row(bottom)], axis=0)
    return (out * 255).round().astype(np.uint8)


def estimate_seconds(shape, settings: dict) -> float:
    """Measured here (bench/i2v.py): one 8-frame, 20-step video of the bundled 64 px model, 5.6 s with the
    adapter and 4.6 s without on one thread."""
    values = {**SETTINGS, **settings}
    return 0.3 + 2 * 0.032 * int(values["frames"]) * int(values["steps"])


I2V = StudyKind(
    key=KEY,
    title="Image to video (still frames of each video)",
    variants=VARIANTS,
    compute=compute,
    display=display,
    windows=WINDOWS,
    load_cases=load_cases,
    bundled_cases=bundled_cases,
    default_settings=dict(SETTINGS),
    settings_note=lambda settings: (f"Every video: {SETTINGS['frames']} frames, {SETTINGS['steps']} steps, motion "
                                    f"strength {SETTINGS['motion_strength']}, seed {SETTINGS['seed']}, prompt "
                                    f"'{settings.get('prompt', '')}'."),
    estimate_seconds=estimate_seconds,
    criteria=("fidelity", "motion", "steadiness"),
    files_label="Your cases: still pictures (PNG, JPEG, ...), one case per file; each is centre-cropped and resized",
    text_setting=TextSetting("prompt", "Prompt for every case (what moves, and how)", "the scene moves right slowly"),
    unit="held-out pictures",
)
