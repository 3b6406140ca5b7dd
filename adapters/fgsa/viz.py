"""The FGSA tab's pictures (numpy in, RGB uint8 out): mask overlay, spectrum with rings coloured by
gain, learned vs edited attention, and the downloadable mask."""
from __future__ import annotations

from pathlib import Path

import numpy as np

DISPLAY = 256


def overlay(rgb_small: np.ndarray, prob: np.ndarray, colour=(255, 40, 40), size: int = DISPLAY) -> np.ndarray:
    """The image tinted in proportion to the predicted probability (so an unsure model shows a faint
    tint, not nothing) and outlined where it exceeds 0.5, at display size."""
    import cv2

    img = cv2.resize(rgb_small, (size, size), interpolation=cv2.INTER_NEAREST).astype(np.float32)
    p = cv2.resize(prob.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
    mask = p > 0.5
    alpha = (0.6 * np.clip(p, 0, 1))[..., None]
    img = (1 - alpha) * img + alpha * np.array(colour, np.float32)
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    out = img.clip(0, 255).astype(np.uint8)
    cv2.drawContours(out, contours, -1, (255, 255, 0), 1)
    return out


def heat(values: np.ndarray, size: int = DISPLAY, limits: tuple[float, float] | None = None) -> np.ndarray:
    """Colour map of `values`; `limits` (low, high) fixes the scale, so two maps drawn with the same
    limits can be compared (an edit that removes part of the attention shows as a fainter map)."""
    import cv2

    v = np.asarray(values, np.float32)
    low, high = limits if limits is not None else (float(v.min()), float(v.max()))
    v = np.clip((v - low) / max(high - low, 1e-6), 0, 1)
    big = cv2.resize(v, (size, size), interpolation=cv2.INTER_NEAREST)
    return cv2.applyColorMap((big * 255).astype(np.uint8), cv2.COLORMAP_VIRIDIS)[:, :, ::-1]


def attention_pair(learned: np.ndarray, edited: np.ndarray, size: int = 192) -> np.ndarray:
    """Learned and edited attention side by side on the learned map's colour scale."""
    learned, edited = np.asarray(learned, np.float32), np.asarray(edited, np.float32)
    limits = (float(learned.min()), float(learned.max()))
    return np.concatenate([heat(learned, size, limits), np.full((size, 6, 3), 255, np.uint8), heat(edited, size, limits)], 1)


def spectrum_panel(info, stride: int, size: int = DISPLAY) -> np.ndarray:
    """Log-magnitude of the pooled map (centred) with every ring's boundary coloured by its gain
    (learned x user; blue = suppressed, red = boosted), and a bar per ring underneath.
    `info`: an `adapters.fgsa.inference.SiteAnalysis`."""
    import cv2

    amp = np.asarray(info.amplitude[0])  # first channel group
    h, w = amp.shape
    gains = np.asarray(info.gain[0])
    log_amp = np.log1p(amp)
    panel = cv2.cvtColor(cv2.resize(((log_amp - log_amp.min()) / max(np.ptp(log_amp), 1e-6) * 255).astype(np.uint8),
                                    (size, size), interpolation=cv2.INTER_NEAREST), cv2.COLOR_GRAY2RGB)
    scale = size / w
    top = max(float(np.abs(gains).max()), 1e-6)
    for ring in range(1, len(gains)):
        colour = _gain_colour(gains[ring] / top)
        radius = (ring + 0.5) * scale
        cv2.circle(panel, (size // 2, size // 2), int(round(radius)), colour, 1, lineType=cv2.LINE_AA)
    bar_h = 70
    bars = np.full((bar_h, size, 3), 255, np.uint8)
    width = size / len(gains)
    for ring, g in enumerate(gains):
        hgt = int(abs(g) / top * (bar_h - 14))
        x0, x1 = int(ring * width) + 1, int((ring + 1) * width) - 1
        cv2.rectangle(bars, (x0, bar_h - 12 - hgt), (x1, bar_h - 12), _gain_colour(g / top), -1)
        cv2.putText(bars, str(ring), (x0, bar_h - 2), cv2.FONT_HERSHEY_PLAIN, 0.7, (0, 0, 0), 1)
    nyquist = 0.5 / stride
    cv2.putText(bars, f"ring {len(gains) - 1} = {nyquist:.3f} cyc/px", (4, 10), cv2.FONT_HERSHEY_PLAIN, 0.8, (0, 0, 0), 1)
    return np.concatenate([panel, bars], 0)


def _gain_colour(x: float) -> tuple[int, int, int]:
    x = float(np.clip(x, -1, 1))
    return (int(255 * max(x, 0)), 60, int(255 * (1 - max(x, 0))))


def save_mask_png(prob: np.ndarray, original_hw: tuple[int, int], path: Path) -> Path:
    import cv2

    h, w = original_hw
    big = cv2.resize(prob.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    cv2.imwrite(str(path), (big * 255).clip(0, 255).astype(np.uint8))
    return path
