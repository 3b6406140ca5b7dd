"""Inference for the FGSA tab, without gradio: reading images safely, running the adapter and the
frozen baseline, the ring-gain edit, and the pictures (overlay, spectrum with rings, attention)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from adapters.fgsa import FGSAttn, band_of_rings, ring_gains_from_bands
from adapters.fgsa_model import FGSABundle
from studio.errors import BadInput
from studio.imaging import read_rgb_image

BAND_NAMES = ("DC", "low", "mid-low", "mid-high", "high")
PRESETS = {
    "reset": (1.0, 1.0, 1.0, 1.0, 1.0),
    "low-pass": (1.0, 1.0, 1.0, 0.0, 0.0),
    "high-pass": (0.0, 0.0, 1.0, 1.0, 1.0),
    "band-stop": (1.0, 1.0, 0.0, 0.0, 1.0),
}
MIN_SIDE = 16
MAX_PIXELS = 40_000_000
MAX_FILE_BYTES = 50 * 1024 * 1024
DISPLAY = 256


# --- input -------------------------------------------------------------------------------------


def read_rgb(path: str | Path) -> np.ndarray:
    """H x W x 3 uint8 RGB from an image file (`studio.imaging.read_rgb_image`: conversions and
    size limits); a flat image is refused too, since there is nothing to segment in it."""
    rgb = read_rgb_image(path, min_side=MIN_SIDE, max_pixels=MAX_PIXELS, max_file_bytes=MAX_FILE_BYTES)
    if int(rgb.max()) - int(rgb.min()) < 2:
        raise BadInput("The image is one flat colour (for example all black): there is nothing to segment.")
    return rgb


def read_mask(path: str | Path | None, size: int) -> np.ndarray | None:
    """An optional ground-truth mask as 0/1 at the model's size (nearest neighbour)."""
    if path is None or str(path) == "":
        return None
    import cv2

    rgb = read_rgb_any(path)
    gray = rgb.mean(-1)
    return (cv2.resize(gray, (size, size), interpolation=cv2.INTER_NEAREST) > 127).astype(np.float32)


def read_rgb_any(path) -> np.ndarray:
    """Like read_rgb but accepts flat images (an empty ground truth is valid)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except Exception:
        raise BadInput("The ground-truth mask could not be read; use a PNG mask (white object on black).") from None


def to_model_input(rgb: np.ndarray, size: int) -> torch.Tensor:
    import cv2

    h, w = rgb.shape[:2]
    interp = cv2.INTER_AREA if min(h, w) > size else cv2.INTER_LINEAR
    small = cv2.resize(rgb, (size, size), interpolation=interp)
    return torch.from_numpy(small).permute(2, 0, 1).float().div(255).unsqueeze(0)


# --- running -----------------------------------------------------------------------------------


def site_gains(model, site: str, band_scales, all_sites: bool = False) -> dict[str, torch.Tensor]:
    """Per-ring user gains for one site (or every site) from the band sliders."""
    names = model.site_names() if all_sites else [site]
    gains = {}
    for name in names:
        gains[name] = ring_gains_from_bands(band_scales, model.site(name).n_rings)
    return gains


@dataclass
class Analysis:
    prob: np.ndarray  # S x S in [0, 1]
    seconds: float
    site: dict | None  # FGSAttn intermediates at the chosen site (learned and edited)


@torch.no_grad()
def run_adapter(bundle: FGSABundle, image: torch.Tensor, site: str, band_scales, all_sites: bool = False,
                embedded: torch.Tensor | None = None, device: torch.device | None = None) -> Analysis:
    model = bundle.adapter
    device = device or torch.device("cpu")
    start = time.perf_counter()
    gains = site_gains(model, site, band_scales, all_sites) if site in model.site_names() else None
    probes: dict = {}
    image = image.to(device)
    prob = model(image, gains=gains, probes=probes, embedded=None if embedded is None else embedded.to(device)).sigmoid()
    info = None
    if site in probes and site in model.site_names():
        attn: FGSAttn = model.site(site)
        feat = probes[site]
        learned = attn.analyse(feat)
        edited = attn.analyse(feat, gains[site]) if gains else learned
        info = {k: v[0].float().cpu() for k, v in edited.items() if k != "labels"}
        info["labels"] = edited["labels"].cpu()
        info["learned_attention"] = learned["attention"][0].float().cpu()
        info["user_gain"] = gains[site] if gains else torch.ones(attn.n_rings)
    return Analysis(prob[0, 0].float().cpu().numpy(), time.perf_counter() - start, info)


@torch.no_grad()
def run_frozen(bundle: FGSABundle, image: torch.Tensor, device: torch.device | None = None) -> np.ndarray | None:
    if bundle.frozen_head is None:
        return None
    return bundle.frozen_head(image.to(device or "cpu")).sigmoid()[0, 0].float().cpu().numpy()


@torch.no_grad()
def frozen_embedding(bundle: FGSABundle, image: torch.Tensor, device=None) -> torch.Tensor:
    model = bundle.adapter
    return model.backbone.embed(model.normalise(image.to(device or "cpu")))


# --- pictures ----------------------------------------------------------------------------------


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


def spectrum_panel(info: dict, stride: int, size: int = DISPLAY) -> np.ndarray:
    """Log-magnitude of the pooled map (centred) with every ring's boundary coloured by its gain
    (learned x user; blue = suppressed, red = boosted), and a bar per ring underneath."""
    import cv2

    amp = info["amplitude"][0].numpy()  # first channel group
    h, w = amp.shape
    gains = info["gain"][0].numpy()
    labels = info["labels"].numpy()
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


def site_stride(model, site: str) -> int:
    if site.startswith("c"):
        return 2 ** (int(site[1:]) + 1)
    return model.backbone.patch


def band_table(model, site: str) -> str:
    """Which rings and frequencies each slider controls at this site (Markdown)."""
    n = model.site(site).n_rings
    stride = site_stride(model, site)
    per_ring = 1.0 / (stride * 2 * (n - 1)) if n > 1 else 0
    rows = []
    for name, rings in zip(BAND_NAMES, band_of_rings(n, len(BAND_NAMES))):
        if not rings:
            rows.append(f"{name}: (none at this site)")
            continue
        lo, hi = rings[0] * per_ring, rings[-1] * per_ring
        rows.append(f"{name}: rings {rings[0]}–{rings[-1]} ≈ {lo:.3f}–{hi:.3f} cycles/px")
    return " · ".join(rows)


def save_mask_png(prob: np.ndarray, original_hw: tuple[int, int], path: Path) -> Path:
    import cv2

    h, w = original_hw
    big = cv2.resize(prob.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    cv2.imwrite(str(path), (big * 255).clip(0, 255).astype(np.uint8))
    return path


def bands_covering(model, site: str, band: tuple[float, float]) -> list[int]:
    """Indices of the user bands whose rings hold frequencies in `band` (cycles per image pixel)."""
    n = model.site(site).n_rings
    stride = site_stride(model, site)
    per_ring = 1.0 / (stride * 2 * (n - 1))
    hit = []
    for index, rings in enumerate(band_of_rings(n, len(BAND_NAMES))):
        if any(band[0] <= r * per_ring <= band[1] for r in rings):
            hit.append(index)
    return hit


def known_band_gains(model, site: str | None) -> dict[str, torch.Tensor]:
    """Gains that zero the user bands holding the spectral scenes' object and background
    frequencies, at one site or (None) at every site."""
    from adapters.fgsa_data import BACKGROUND_BAND, OBJECT_BAND

    gains = {}
    for name in ([site] if site else model.site_names()):
        known = set(bands_covering(model, name, OBJECT_BAND)) | set(bands_covering(model, name, BACKGROUND_BAND))
        gains |= site_gains(model, name, [0.0 if i in known else 1.0 for i in range(len(BAND_NAMES))])
    return gains
