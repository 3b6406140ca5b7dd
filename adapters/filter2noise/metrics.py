"""What the CT tab measures and keeps per session, in the web process (no device work): the
session record, the reference check and PSNR/SSIM, region parsing (brush or box) and region noise
statistics, and the baselines' captions."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from adapters.common.contract import Progress
from adapters.common.errors import BadInput
from adapters.filter2noise import modeling as f2n
from adapters.filter2noise.config import BASELINE_BUDGET_S, BASELINE_ZS_CROP, BASELINE_ZS_ITERATIONS, BaselinesRequest
from adapters.filter2noise.io import CTSlice

if TYPE_CHECKING:
    from adapters.filter2noise.inference import BaselinesResult

METRIC_RANGE_HU = (-1024.0, 3071.0)
MIN_MEASURE_PIXELS = 16  # fewer pixels give no usable noise SD (and a CNR that explodes)


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
    last_region: np.ndarray | None = None  # the region of the last edit: drawn, and measured when none is marked

    @property
    def noisy_hu(self) -> np.ndarray:
        return self.slice.hu

    @property
    def denoised_hu(self) -> np.ndarray:
        return self.state.denoised_hu


@dataclass
class SeriesSession:
    """One user's denoised series (per-session `gr.State`): the source slices and the result."""

    series: object  # adapters.filter2noise.series.CTSeries
    denoised: np.ndarray  # (n, H, W) HU
    seconds: float = 0.0

    @property
    def noisy(self) -> np.ndarray:
        return np.stack([s.hu for s in self.series.slices])


CLEAN_NOISE_HU = 10.0  # below this estimated noise a slice is treated as already clean
LITTLE_CHANGE_HU = 0.5  # a mean absolute change below this is "did almost nothing"


def noise_feedback(noisy_hu: np.ndarray, denoised_hu: np.ndarray | None = None) -> str:
    """One sentence on the estimated noise (HU) before and after, saying plainly when there was
    little to remove (a clean slice gives a flat residual and dark sigma maps, which is correct)."""
    before = f2n.estimate_noise_hu(noisy_hu)
    if denoised_hu is None:
        text = f"Estimated noise {before:.1f} HU."
        return text + (" It looks clean already: little to remove." if before < CLEAN_NOISE_HU else "")
    after = f2n.estimate_noise_hu(denoised_hu)
    change = float(np.mean(np.abs(np.asarray(noisy_hu, np.float64) - denoised_hu)))
    text = f"Estimated noise {before:.1f} HU before, {after:.1f} HU after; mean change {change:.2f} HU."
    if before < CLEAN_NOISE_HU or change < LITTLE_CHANGE_HU:
        text += (f" **Estimated noise {before:.1f} HU: little to remove.** The slice already looks clean, so the "
                 "residual is nearly flat and the sigma maps stay dark.")
    return text


def check_reference(reference: CTSlice | None, noisy: CTSlice) -> np.ndarray | None:
    if reference is None:
        return None
    if reference.hu.shape != noisy.hu.shape:
        raise BadInput(f"The reference is {reference.hu.shape[1]}x{reference.hu.shape[0]} but the slice is "
                       f"{noisy.hu.shape[1]}x{noisy.hu.shape[0]}; they must match pixel for pixel.")
    return reference.hu


def reference_metrics(result_hu: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    from adapters.filter2noise.data import psnr_ssim

    return psnr_ssim(result_hu, reference, METRIC_RANGE_HU)


def region_from_box(box: str, shape: tuple[int, int]) -> np.ndarray | None:
    """``"x0,y0,x1,y1"`` in pixels (x = column, end exclusive) -> mask; empty text -> None."""
    if box is None or not str(box).strip():
        return None
    try:
        x0, y0, x1, y1 = (int(round(float(v))) for v in str(box).replace(" ", "").split(","))
    except ValueError:
        raise BadInput("A box is four numbers x0,y0,x1,y1 in pixels, e.g. 40,40,90,80.") from None
    h, w = shape
    (x0, x1), (y0, y1) = sorted((x0, x1)), sorted((y0, y1))  # order first, then clip to the slice
    if x1 <= x0 or y1 <= y0:
        raise BadInput(f"The box is empty inside the {w}x{h} slice.")
    if x1 <= 0 or y1 <= 0 or x0 >= w or y0 >= h:
        raise BadInput(f"The box {x0},{y0},{x1},{y1} lies outside the {w}x{h} slice: x must be within 0..{w} "
                       f"and y within 0..{h} pixels.")
    x0, x1, y0, y1 = max(0, x0), min(w, x1), max(0, y0), min(h, y1)
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


def pick_region(editor, box, shape, last: np.ndarray | None = None) -> np.ndarray:
    """The box if typed, else the painted mask, else ``last`` (the region last applied)."""
    mask = region_from_box(box, shape)
    if mask is None:
        mask = region_from_editor(editor, shape)
    if mask is None and last is not None and last.shape == tuple(shape) and last.any():
        mask = last
    if mask is None:
        raise BadInput("Mark a region first: paint on the image with the brush, or type a box x0,y0,x1,y1.")
    return mask


def region_stats(session: Session, region: np.ndarray, inner: int = 4, outer: int = 12) -> dict:
    """Noise SD inside the region and CNR against a ring 4..12 pixels around it, noisy vs denoised."""
    from scipy.ndimage import binary_dilation

    pixels = int(np.count_nonzero(region))
    if pixels < MIN_MEASURE_PIXELS:
        raise BadInput(f"The region has {pixels} pixel{'s' if pixels != 1 else ''}; a noise estimate needs at least "
                       f"{MIN_MEASURE_PIXELS} (e.g. a 4x4 box). Mark a larger region of uniform tissue.")
    ring = binary_dilation(region, iterations=outer) & ~binary_dilation(region, iterations=inner)
    out = {"pixels": int(region.sum()), "ring_pixels": int(ring.sum())}
    for name, image in (("noisy", session.noisy_hu), ("denoised", session.denoised_hu)):
        sd = float(image[region].std())
        entry = {"mean": float(image[region].mean()), "sd": sd}
        if ring.any():
            entry["cnr"] = abs(entry["mean"] - float(image[ring].mean())) / max(sd, 1e-6)
        out[name] = entry
    return out


def baselines_request(session: Session, zs_iterations: int = BASELINE_ZS_ITERATIONS,
                      time_budget_s: float = BASELINE_BUDGET_S) -> BaselinesRequest:
    return BaselinesRequest(np.asarray(session.noisy_hu, np.float32), session.reference, int(zs_iterations),
                            float(time_budget_s))


def baselines_estimate(session: Session, zs_iterations: int = BASELINE_ZS_ITERATIONS) -> float:
    """Seconds the baselines are expected to take on this session's slice (what the button states)."""
    from adapters.filter2noise.baselines import estimate_seconds

    return float(sum(estimate_seconds(session.noisy_hu.shape, zs_iterations, BASELINE_ZS_CROP,
                                      session.reference is not None).values()))


def baseline_captions(session: Session, result: BaselinesResult) -> list[tuple[str, np.ndarray, str]]:
    """(name, HU image, caption) for Filter2Noise and each baseline, with PSNR/SSIM when a reference exists."""
    results = []
    for item in result.images:
        caption = f"{item.name}: {item.seconds:.1f} s" + (f" ({item.note})" if item.note else "")
        if session.reference is not None:
            p, s = reference_metrics(item.hu, session.reference)
            caption += f", PSNR {p:.2f} dB, SSIM {s:.4f}"
        results.append((item.name, item.hu, caption))
    p_ours = ""
    if session.reference is not None:
        p, s = reference_metrics(session.denoised_hu, session.reference)
        p_ours = f", PSNR {p:.2f} dB, SSIM {s:.4f}"
    results.insert(0, ("Filter2Noise", session.denoised_hu, f"Filter2Noise (this run): {session.seconds:.1f} s{p_ours}"))
    return results


def run_baselines(session: Session, zs_iterations: int = BASELINE_ZS_ITERATIONS, progress: Progress = None,
                  time_budget_s: float = BASELINE_BUDGET_S) -> list[tuple[str, np.ndarray, str]]:
    """The baselines in this process (tests, scripts): `baselines` then `baseline_captions`."""
    from adapters.filter2noise.inference import baselines

    request = baselines_request(session, zs_iterations, time_budget_s)
    return baseline_captions(session, baselines(None, request, progress=progress))
