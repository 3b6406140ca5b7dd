"""The camouflaged-object tab's variants for a reader study: the mask the FGSA adapter predicts and
the mask of the frozen backbone with the same head (adapter off), both from the tab's own device
entry, drawn over the picture the model saw.

Cases are RGB pictures at the model's input size (H x W x 3 in [0, 1]). Bundled cases are the
held-out synthetic camouflage scenes the tab's figures are measured on (never trained on). Each
variant is kept as the picture plus its mask probability (H x W x 4), so every display of a case
draws the same picture.
"""
from __future__ import annotations

import numpy as np

from studio.study.design import StudyKind, Variant

KEY = "fgsa"
VARIANTS = (
    Variant("fgsa", "FGSA adapter (learned gains)"),
    Variant("frozen", "Adapter off: frozen backbone + the same head"),
)
HELDOUT_SEED = 12_000  # the held-out scenes of the bundled adapter's training log
SITE = "c1"  # the tab's default adapter site
WINDOWS = ("Outline over the picture", "Mask over the picture", "Mask alone", "Picture alone")
OUTLINE = np.array([255, 230, 0], np.uint8)
TINT = np.array([255, 40, 40], np.float32)


def _size() -> int:
    from adapters.fgsa.scenes import SIZE

    return SIZE


def load_cases(path, crop: int = 0) -> list[np.ndarray]:
    """One picture per file, resized to the model's input size (as the tab does)."""
    from adapters.fgsa import io

    rgb = io.read_rgb(path)
    return [np.ascontiguousarray(io.to_model_input(rgb, _size())[0].transpose(1, 2, 0))]


def bundled_cases(count: int, crop: int) -> list[np.ndarray]:
    from adapters.fgsa.scenes import make_dataset

    images, _, _ = make_dataset(HELDOUT_SEED, int(count), "heldout")
    return [np.ascontiguousarray(image.transpose(1, 2, 0)) for image in images]


def compute(picture: np.ndarray, settings: dict, progress=None) -> dict:
    from adapters.fgsa.config import BAND_NAMES, SegmentRequest
    from studio.device import progress_to, run_paper

    picture = np.clip(np.asarray(picture, np.float32), 0, 1)
    request = SegmentRequest(image=np.ascontiguousarray(picture.transpose(2, 0, 1)[None]),
                             site=str(settings.get("site", SITE)), bands=(1.0,) * len(BAND_NAMES), baseline=True)
    with progress_to(progress):
        result = run_paper(KEY, "run", request).result
    return {"fgsa": np.dstack([picture, result.learned_prob]), "frozen": np.dstack([picture, result.frozen_prob])}


def _outline(mask: np.ndarray) -> np.ndarray:
    inner = mask.copy()
    inner[1:, :] &= mask[:-1, :]
    inner[:-1, :] &= mask[1:, :]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    return mask & ~inner


def display(pixels: np.ndarray, window: str) -> np.ndarray:
    picture = (np.clip(pixels[..., :3], 0, 1) * 255).astype(np.float32)
    prob = np.clip(pixels[..., 3], 0, 1)
    if window == WINDOWS[3]:
        return picture.round().astype(np.uint8)
    if window == WINDOWS[2]:
        return np.repeat((prob * 255).round().astype(np.uint8)[..., None], 3, axis=-1)
    if window == WINDOWS[1]:
        alpha = 0.55 * prob[..., None]
        return (picture * (1 - alpha) + TINT * alpha).round().astype(np.uint8)
    out = picture.round().astype(np.uint8)
    edge = _outline(prob >= 0.5)
    # two pixels wide, so the line survives the browser's scaling on a phone
    edge[1:, :] |= edge[:-1, :]
    out[edge] = OUTLINE
    return out


def estimate_seconds(shape, settings: dict) -> float:
    """Measured here: one 224 px picture, adapter and frozen baseline, about 1.5-2 s on one free thread."""
    return 2.0


FGSA = StudyKind(
    key=KEY,
    title="Camouflaged objects (masks over the picture)",
    variants=VARIANTS,
    compute=compute,
    display=display,
    windows=WINDOWS,
    load_cases=load_cases,
    bundled_cases=bundled_cases,
    bundled_shapes=lambda count, crop: [(_size(), _size(), 3)] * int(count),
    default_settings={"site": SITE},
    settings_note=lambda settings: "Masks at the tab's default adapter site with the learned gains.",
    estimate_seconds=estimate_seconds,
    criteria=("coverage", "background", "boundary"),
    files_label="Your cases: pictures (PNG, JPEG, ...), one case per file; each is resized to the model's input size",
    unit="held-out scenes",
)
