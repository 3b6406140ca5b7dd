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


REGION_COLOUR = (255, 48, 48)
SIGMA_SCALES = ("Fixed (comparable across images)", "Auto (this image's min..max)")


def with_outline(grey: np.ndarray, region: np.ndarray | None) -> np.ndarray:
    """RGB copy of a windowed slice with the region's boundary drawn (1 px inside it)."""
    rgb = np.repeat(np.asarray(grey, np.uint8)[..., None], 3, axis=2)
    if region is None or not region.any():
        return rgb
    from scipy.ndimage import binary_erosion

    edge = region & ~binary_erosion(region, border_value=0)
    rgb[edge] = REGION_COLOUR
    return rgb


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


def _auto_range(values: np.ndarray) -> tuple[float, float]:
    lo, hi = float(values.min()), float(values.max())
    if hi - lo < 1e-6 * max(1.0, abs(hi)):  # a flat map: a narrow band around its value, not a stretch of noise
        pad = max(1e-3, 0.01 * abs(hi))
        return lo - pad, hi + pad
    return lo, hi


def sigma_figure(stage_sigmas: list[np.ndarray], spacing_mm: tuple[float, float], xy_max_mm: float,
                 r_max_hu: float, hu_per_unit: float, auto: bool = False) -> np.ndarray:
    """A grid: one row per stage, columns sigma_x (mm), sigma_y (mm), sigma_range (HU). Fixed scales
    (0..the predictor's bound) by default; ``auto`` stretches each map over its own min..max
    (shows structure, not comparable across images; each panel's bar says which)."""
    rows = []
    for stage, s in enumerate(stage_sigmas, start=1):
        maps = [(s[0] * spacing_mm[1], "sigma_x", "mm", xy_max_mm), (s[1] * spacing_mm[0], "sigma_y", "mm", xy_max_mm),
                (s[2] * hu_per_unit, "sigma_range", "HU", r_max_hu)]
        panels = []
        for values, name, unit, vmax in maps:
            lo, hi = _auto_range(values) if auto else (0.0, vmax)
            title = f"stage {stage}: {name}" + (" (auto scale)" if auto else "")
            panels.append(sigma_panel(values, title, unit, lo, hi))
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
