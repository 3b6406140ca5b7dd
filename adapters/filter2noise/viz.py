"""Pictures for the CT tab (numpy + Pillow only): windowed slices and sigma maps drawn on fixed,
labelled colour scales, so the same colour means the same sigma on every image (never a per-image
min-max stretch, which makes a flat map look structured)."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

WINDOWS = {
    "Soft tissue (W400 / L40)": (400.0, 40.0),
    "Lung (W1500 / L-600)": (1500.0, -600.0),
    "Bone (W2000 / L300)": (2000.0, 300.0),
    "Brain (W80 / L40)": (80.0, 40.0),
}
CUSTOM = "Custom"
RESIDUAL_HALF_RANGE_HU = 150.0

# viridis at nine evenly spaced points; interpolated linearly in between
_VIRIDIS = np.array([(68, 1, 84), (71, 44, 122), (59, 81, 139), (44, 113, 142), (33, 144, 141),
                     (39, 173, 129), (92, 200, 99), (170, 220, 50), (253, 231, 37)], np.float64)


def window_values(name: str, width: float | None = None, level: float | None = None) -> tuple[float, float]:
    if name in WINDOWS:
        return WINDOWS[name]
    if width is None or level is None or not np.isfinite(width) or not np.isfinite(level) or width <= 0:
        raise ValueError("A custom window needs a positive width and a level in HU.")
    return float(width), float(level)


def windowed(hu: np.ndarray, width: float, level: float) -> np.ndarray:
    lo = level - width / 2.0
    return (np.clip((np.asarray(hu, np.float64) - lo) / width, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def residual_image(noisy_hu: np.ndarray, denoised_hu: np.ndarray) -> np.ndarray:
    """What was removed, grey = 0 HU, black/white = -/+ RESIDUAL_HALF_RANGE_HU."""
    return windowed(np.asarray(noisy_hu) - np.asarray(denoised_hu), 2 * RESIDUAL_HALF_RANGE_HU, 0.0)


def colormap(values: np.ndarray, vmin: float, vmax: float) -> np.ndarray:
    t = np.clip((np.asarray(values, np.float64) - vmin) / (vmax - vmin), 0.0, 1.0) * (len(_VIRIDIS) - 1)
    i = np.minimum(t.astype(int), len(_VIRIDIS) - 2)
    frac = (t - i)[..., None]
    return (_VIRIDIS[i] * (1 - frac) + _VIRIDIS[i + 1] * frac + 0.5).astype(np.uint8)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def sigma_panel(values: np.ndarray, title: str, unit: str, vmin: float, vmax: float, display: int = 256) -> Image.Image:
    """One map with its fixed colour bar, tick labels, and the map's own min and max."""
    h, w = values.shape
    scale = display / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    img = Image.fromarray(colormap(values, vmin, vmax)).resize(size, Image.NEAREST)
    bar_w, pad, top = 14, 8, 34
    canvas = Image.new("RGB", (size[0] + bar_w + 70, size[1] + top + 8), "white")
    canvas.paste(img, (pad // 2, top))
    draw = ImageDraw.Draw(canvas)
    font, small = _font(13), _font(11)
    draw.text((pad // 2, 2), title, fill="black", font=font)
    draw.text((pad // 2, 18), f"min {values.min():.3g}  max {values.max():.3g} {unit}", fill="black", font=small)
    x0 = size[0] + pad
    ramp = colormap(np.linspace(vmax, vmin, size[1])[:, None].repeat(bar_w, 1), vmin, vmax)
    canvas.paste(Image.fromarray(ramp), (x0, top))
    for frac in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = top + round((1 - frac) * (size[1] - 1))
        draw.line([(x0 + bar_w, y), (x0 + bar_w + 3, y)], fill="black")
        draw.text((x0 + bar_w + 5, y - 6), f"{vmin + frac * (vmax - vmin):.3g}", fill="black", font=small)
    draw.text((x0, top + size[1] - 2), unit, fill="black", font=small)
    return canvas


def sigma_figure(stage_sigmas: list[np.ndarray], spacing_mm: tuple[float, float], xy_max_mm: float,
                 r_max_hu: float, hu_per_unit: float) -> np.ndarray:
    """A grid: one row per stage, columns sigma_x (mm), sigma_y (mm), sigma_range (HU)."""
    rows = []
    for stage, s in enumerate(stage_sigmas, start=1):
        panels = [
            sigma_panel(s[0] * spacing_mm[1], f"stage {stage}: sigma_x", "mm", 0.0, xy_max_mm),
            sigma_panel(s[1] * spacing_mm[0], f"stage {stage}: sigma_y", "mm", 0.0, xy_max_mm),
            sigma_panel(s[2] * hu_per_unit, f"stage {stage}: sigma_range", "HU", 0.0, r_max_hu),
        ]
        rows.append(panels)
    width = sum(p.width for p in rows[0])
    header = 28  # room for the image label Gradio overlays at the top-left
    height = header + sum(r[0].height for r in rows)
    sheet = Image.new("RGB", (width, height), "white")
    y = header
    for panels in rows:
        x = 0
        for p in panels:
            sheet.paste(p, (x, y))
            x += p.width
        y += panels[0].height
    return np.asarray(sheet)
