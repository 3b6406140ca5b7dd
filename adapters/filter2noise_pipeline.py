"""The CT tab's work without any UI: fit a slice, measure it, parse regions, run baselines."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from adapters import filter2noise as f2n
from adapters.filter2noise_io import CTSlice
from studio.errors import BadInput

METRIC_RANGE_HU = (-1024.0, 3071.0)
DEFAULT_ITERATIONS = 100
MAX_ITERATIONS = 2000


@dataclass
class Session:
    """One user's denoised slice; lives in a per-session `gr.State`, never in a module global."""

    slice: CTSlice
    state: f2n.FilterState
    reference: np.ndarray | None = None
    seconds: float = 0.0
    device: str = "CPU"
    losses: list[float] = field(default_factory=list)
    settings: dict = field(default_factory=dict)

    @property
    def noisy_hu(self) -> np.ndarray:
        return self.slice.hu

    @property
    def denoised_hu(self) -> np.ndarray:
        return self.state.denoised_hu


def check_settings(iterations, edge_weight) -> f2n.FitSettings:
    try:
        iterations = int(iterations)
        edge_weight = float(edge_weight)
    except (TypeError, ValueError):
        raise BadInput("Iterations and the loss weight must be numbers.") from None
    if not 1 <= iterations <= MAX_ITERATIONS:
        raise BadInput(f"Iterations must be between 1 and {MAX_ITERATIONS}.")
    if not np.isfinite(edge_weight) or not 0 <= edge_weight <= 5000:
        raise BadInput("The edge loss weight must be between 0 and 5000.")
    return f2n.FitSettings(iterations=iterations, edge_weight=edge_weight)


def check_reference(reference: CTSlice | None, noisy: CTSlice) -> np.ndarray | None:
    if reference is None:
        return None
    if reference.hu.shape != noisy.hu.shape:
        raise BadInput(f"The reference is {reference.hu.shape[1]}x{reference.hu.shape[0]} but the slice is "
                       f"{noisy.hu.shape[1]}x{noisy.hu.shape[0]}; they must match pixel for pixel.")
    return reference.hu


def fit_slice(ct: CTSlice, settings: f2n.FitSettings, on_step=None, device="cpu", init_state=None) -> tuple[f2n.FilterState, list[float]]:
    result = f2n.fit(ct.hu, settings, init_state=init_state, on_step=on_step, device=device)
    return f2n.apply_model(result.model, ct.hu, device=device), result.losses


def reference_metrics(result_hu: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    from adapters.filter2noise_sim import psnr_ssim

    return psnr_ssim(result_hu, reference, METRIC_RANGE_HU)


def metrics_markdown(session: Session) -> str:
    if session.reference is None:
        return ("No reference image: PSNR/SSIM need one. Mark a region of uniform tissue (brush or box) and "
                "press **Measure region** for noise SD and CNR.")
    rows = [("Noisy input", session.noisy_hu), ("Filter2Noise", session.denoised_hu)]
    lines = [f"PSNR and SSIM against the reference over {METRIC_RANGE_HU[0]:.0f}..{METRIC_RANGE_HU[1]:.0f} HU "
             f"(data range {METRIC_RANGE_HU[1] - METRIC_RANGE_HU[0]:.0f} HU):", "",
             "| Image | PSNR (dB) | SSIM |", "|---|---|---|"]
    for name, image in rows:
        p, s = reference_metrics(image, session.reference)
        lines.append(f"| {name} | {p:.2f} | {s:.4f} |")
    return "\n".join(lines)


def region_from_box(box: str, shape: tuple[int, int]) -> np.ndarray | None:
    """``"x0,y0,x1,y1"`` in pixels (x = column, end exclusive) -> mask; empty text -> None."""
    if box is None or not str(box).strip():
        return None
    try:
        x0, y0, x1, y1 = (int(round(float(v))) for v in str(box).replace(" ", "").split(","))
    except ValueError:
        raise BadInput("A box is four numbers x0,y0,x1,y1 in pixels, e.g. 40,40,90,80.") from None
    h, w = shape
    x0, x1 = sorted((max(0, x0), min(w, x1)))
    y0, y1 = sorted((max(0, y0), min(h, y1)))
    if x1 <= x0 or y1 <= y0:
        raise BadInput(f"The box is empty inside the {w}x{h} slice.")
    mask = np.zeros(shape, bool)
    mask[y0:y1, x0:x1] = True
    return mask


def region_from_editor(editor, shape: tuple[int, int]) -> np.ndarray | None:
    """The painted mask: alpha of the first layer of a `gr.ImageEditor` value (numpy or dict)."""
    if not editor or not isinstance(editor, dict):
        return None
    layers = editor.get("layers") or []
    if not layers or layers[0] is None:
        return None
    layer = np.asarray(layers[0])
    if layer.ndim != 3 or layer.shape[2] < 4:
        return None
    mask = layer[..., 3] > 0
    if not mask.any():
        return None
    if mask.shape != tuple(shape):
        from PIL import Image

        mask = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((shape[1], shape[0]), Image.NEAREST)) > 0
    return mask


def pick_region(editor, box, shape) -> np.ndarray:
    mask = region_from_box(box, shape)
    if mask is None:
        mask = region_from_editor(editor, shape)
    if mask is None:
        raise BadInput("Mark a region first: paint on the image with the brush, or type a box x0,y0,x1,y1.")
    return mask


def region_stats(session: Session, region: np.ndarray, inner: int = 4, outer: int = 12) -> dict:
    """Noise SD inside the region and CNR against a ring 4..12 pixels around it, noisy vs denoised."""
    from scipy.ndimage import binary_dilation

    ring = binary_dilation(region, iterations=outer) & ~binary_dilation(region, iterations=inner)
    out = {"pixels": int(region.sum()), "ring_pixels": int(ring.sum())}
    for name, image in (("noisy", session.noisy_hu), ("denoised", session.denoised_hu)):
        sd = float(image[region].std())
        entry = {"mean": float(image[region].mean()), "sd": sd}
        if ring.any():
            entry["cnr"] = abs(entry["mean"] - float(image[ring].mean())) / max(sd, 1e-6)
        out[name] = entry
    return out


def region_markdown(stats: dict) -> str:
    lines = [f"Region: {stats['pixels']} pixels; CNR against a ring 4-12 px around it ({stats['ring_pixels']} px).", "",
             "| Image | Mean (HU) | Noise SD (HU) | CNR |", "|---|---|---|---|"]
    for name in ("noisy", "denoised"):
        e = stats[name]
        cnr = f"{e['cnr']:.2f}" if "cnr" in e else "n/a"
        lines.append(f"| {name} | {e['mean']:.1f} | {e['sd']:.1f} | {cnr} |")
    return "\n".join(lines)


def run_baselines(session: Session, zs_iterations: int = 200, on_step=None) -> list[tuple[str, np.ndarray, str]]:
    """(name, HU image, caption) for each baseline, timed, with PSNR/SSIM when a reference exists."""
    from adapters import filter2noise_baselines as base

    noisy = session.noisy_hu
    results = []

    def add(name, fn):
        start = time.perf_counter()
        image, params = fn()
        seconds = time.perf_counter() - start
        caption = f"{name}: {seconds:.1f} s"
        if session.reference is not None:
            p, s = reference_metrics(image, session.reference)
            caption += f", PSNR {p:.2f} dB, SSIM {s:.4f}"
        results.append((name, image, caption))

    add("OpenCV bilateral (sigma from estimated noise)", lambda: base.bilateral_from_noise(noisy))
    if session.reference is not None:
        add("OpenCV bilateral, grid-searched against the reference (upper bound)",
            lambda: base.oracle_bilateral(noisy, session.reference, lambda a, r: reference_metrics(a, r)[0]))
    add("BM3D (noise estimated)", lambda: base.bm3d_estimated(noisy))
    add(f"ZS-N2N ({zs_iterations} iterations)", lambda: base.zs_n2n(noisy, zs_iterations, on_step=on_step))
    p_ours = ""
    if session.reference is not None:
        p, s = reference_metrics(session.denoised_hu, session.reference)
        p_ours = f", PSNR {p:.2f} dB, SSIM {s:.4f}"
    results.insert(0, ("Filter2Noise", session.denoised_hu, f"Filter2Noise (this run): {session.seconds:.1f} s{p_ours}"))
    return results
