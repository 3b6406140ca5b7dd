"""The CT tab's work without any UI: fit a slice, measure it, parse regions, run baselines.

Device entries (plain data in and out, see `adapters.filter2noise.config`): `run` trains the sigma
predictor on one slice and returns its `FilterState` (numpy sigma maps and stage outputs, so the
region edits re-render without the predictor, in the web process); `baselines` runs OpenCV's
bilateral filter, BM3D and ZS-N2N on the slice. Everything else here is light and runs where it is
called: checks, region parsing, metrics and their Markdown.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from adapters.common.contract import Progress
from adapters.common.errors import BadInput
from adapters.filter2noise import modeling as f2n
from adapters.filter2noise.config import (  # noqa: F401  (re-exported for the tab)
    DEFAULT_ITERATIONS,
    MAX_ITERATIONS,
    BaselinesRequest,
    DenoiseRequest,
    check_settings,
)
from adapters.filter2noise.io import CTSlice

METRIC_RANGE_HU = (-1024.0, 3071.0)
MIN_MEASURE_PIXELS = 16  # fewer pixels give no usable noise SD (and a CNR that explodes)


@dataclass(frozen=True)
class DenoiseResult:
    state: f2n.FilterState
    losses: tuple[float, ...]
    iterations: int


@dataclass(frozen=True)
class BaselineImage:
    name: str
    hu: np.ndarray
    seconds: float


@dataclass(frozen=True)
class BaselinesResult:
    images: tuple[BaselineImage, ...]


def gpu_seconds(entry: str, request) -> int:
    """ZeroGPU time to reserve: training scales with iterations and slice size."""
    if entry == "run":
        return int(min(120, 10 + request.settings.iterations * request.hu.size / 2.0e6))
    return int(min(300, 30 + request.zs_iterations * request.noisy_hu.size / 3.0e5))


def run(bundle, request: DenoiseRequest, *, device="cpu", progress: Progress = None) -> DenoiseResult:
    """Train a fresh sigma predictor on the slice (the paper's self-supervised loss) and apply it."""
    settings = request.settings

    def on_step(i, n):
        if progress is not None and (i == 1 or i % 5 == 0 or i == n):
            progress(i / n, f"Training on this slice: iteration {i} of {n}")

    if progress is not None:
        progress(0.0, "Training the sigma predictor on this slice")
    result = f2n.fit(request.hu, settings, config=bundle.config, init_state=bundle.init_state, on_step=on_step,
                     device=device)
    state = f2n.apply_model(result.model, request.hu, device=device)
    return DenoiseResult(state, tuple(float(v) for v in result.losses), int(settings.iterations))


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


def region_markdown(stats: dict) -> str:
    lines = [f"Region: {stats['pixels']} pixels; CNR against a ring 4-12 px around it ({stats['ring_pixels']} px).", "",
             "| Image | Mean (HU) | Noise SD (HU) | CNR |", "|---|---|---|---|"]
    for name in ("noisy", "denoised"):
        e = stats[name]
        cnr = f"{e['cnr']:.2f}" if "cnr" in e else "n/a"
        lines.append(f"| {name} | {e['mean']:.1f} | {e['sd']:.1f} | {cnr} |")
    return "\n".join(lines)


def baselines(bundle, request: BaselinesRequest, *, device="cpu", progress: Progress = None) -> BaselinesResult:
    """Device entry: each baseline on the slice, timed (they run on the CPU as before)."""
    from adapters.filter2noise import baselines as base

    noisy, reference = request.noisy_hu, request.reference_hu
    images = []

    def add(name, fn):
        start = time.perf_counter()
        image, params = fn()
        images.append(BaselineImage(name, np.asarray(image, np.float32), time.perf_counter() - start))

    def zs_step(i, n):
        if progress is not None and i % 10 == 0:
            progress(i / n, f"ZS-N2N: iteration {i} of {n}")

    if progress is not None:
        progress(0.0, "Running the baselines")
    add("OpenCV bilateral (sigma from estimated noise)", lambda: base.bilateral_from_noise(noisy))
    if reference is not None:
        add("OpenCV bilateral, grid-searched against the reference (upper bound)",
            lambda: base.oracle_bilateral(noisy, reference, lambda a, r: reference_metrics(a, r)[0]))
    add("BM3D (noise estimated)", lambda: base.bm3d_estimated(noisy))
    add(f"ZS-N2N ({request.zs_iterations} iterations)", lambda: base.zs_n2n(noisy, request.zs_iterations, on_step=zs_step))
    return BaselinesResult(tuple(images))


def baselines_request(session: Session, zs_iterations: int = 200) -> BaselinesRequest:
    return BaselinesRequest(np.asarray(session.noisy_hu, np.float32), session.reference, int(zs_iterations))


def baseline_captions(session: Session, result: BaselinesResult) -> list[tuple[str, np.ndarray, str]]:
    """(name, HU image, caption) for Filter2Noise and each baseline, with PSNR/SSIM when a reference exists."""
    results = []
    for item in result.images:
        caption = f"{item.name}: {item.seconds:.1f} s"
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


def run_baselines(session: Session, zs_iterations: int = 200, progress: Progress = None) -> list[tuple[str, np.ndarray, str]]:
    """The baselines in this process (tests, scripts): `baselines` then `baseline_captions`."""
    return baseline_captions(session, baselines(None, baselines_request(session, zs_iterations), progress=progress))
