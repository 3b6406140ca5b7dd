"""The CT tab's work without any UI: fit a slice, measure it, parse regions, run baselines.

Device entries (plain data in and out, see `adapters.filter2noise.config`): `run` trains the sigma
predictor on one slice and returns its `FilterState` (numpy sigma maps and stage outputs, so the
region edits re-render without the predictor, in the web process); `baselines` runs OpenCV's
bilateral filter, BM3D and ZS-N2N on the slice. What the tab measures afterwards, in the web
process, is in `adapters.filter2noise.metrics`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from adapters.common.contract import Progress
from adapters.filter2noise import modeling as f2n
from adapters.filter2noise.config import (  # noqa: F401  (re-exported for the tab)
    DEFAULT_ITERATIONS,
    MAX_ITERATIONS,
    BaselinesRequest,
    DenoiseRequest,
    check_settings,
)


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


def baselines(bundle, request: BaselinesRequest, *, device="cpu", progress: Progress = None) -> BaselinesResult:
    """Device entry: each baseline on the slice, timed (they run on the CPU as before)."""
    from adapters.filter2noise import baselines as base
    from adapters.filter2noise import metrics

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
            lambda: base.oracle_bilateral(noisy, reference, lambda a, r: metrics.reference_metrics(a, r)[0]))
    add("BM3D (noise estimated)", lambda: base.bm3d_estimated(noisy))
    add(f"ZS-N2N ({request.zs_iterations} iterations)", lambda: base.zs_n2n(noisy, request.zs_iterations, on_step=zs_step))
    return BaselinesResult(tuple(images))

