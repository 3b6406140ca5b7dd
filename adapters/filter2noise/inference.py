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
    SeriesRequest,
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
    note: str = ""  # what was bounded, if anything


@dataclass(frozen=True)
class BaselinesResult:
    images: tuple[BaselineImage, ...]
    skipped: tuple[str, ...] = ()  # one sentence per baseline left out (its estimate did not fit the budget)
    budget_s: float = 0.0
    estimate_s: float = 0.0


@dataclass(frozen=True)
class SeriesResult:
    denoised: np.ndarray  # (n, H, W) HU, float32
    seconds: float
    train_seconds: float
    trained_on: tuple[int, ...]  # slice indices the predictor was trained on (every one when per slice)
    shared: bool


def gpu_seconds(entry: str, request) -> int:
    """ZeroGPU time to reserve: training scales with iterations and slice size."""
    if entry == "run":
        return int(min(120, 10 + request.settings.iterations * request.hu.size / 2.0e6))
    if entry == "run_series":
        fits = 1 if request.shared else request.volume.shape[0]
        return int(min(600, 10 + fits * request.settings.iterations * 0.05 + request.volume.size / 2.0e5))
    return int(min(300, 30 + request.time_budget_s))


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


def training_slices(n: int, count: int) -> tuple[int, ...]:
    """``count`` slice indices spread evenly through a series of ``n`` (middle first for one)."""
    count = max(1, min(count, n))
    if count == 1:
        return (n // 2,)
    return tuple(sorted({int(round(v)) for v in np.linspace(0, n - 1, count + 2)[1:-1]}))


def run_series(bundle, request: SeriesRequest, *, device="cpu", progress: Progress = None) -> SeriesResult:
    """Denoise every slice. Shared: one predictor trained on a few slices tiled side by side (random
    crops rarely straddle two), applied to each slice. Per slice: a fresh predictor per slice."""
    volume, settings = request.volume, request.settings
    n = volume.shape[0]
    start = time.perf_counter()

    def say(fraction, text):
        if progress is not None:
            progress(fraction, text)

    def fit_on(image, label, lo, hi):
        def on_step(i, total):
            if i == 1 or i % 10 == 0 or i == total:
                say(lo + (hi - lo) * i / total, f"{label}: iteration {i} of {total}")

        return f2n.fit(image, settings, config=bundle.config, init_state=bundle.init_state, on_step=on_step,
                       device=device).model

    out = np.empty_like(volume, dtype=np.float32)
    if request.shared:
        chosen = training_slices(n, request.train_slices)
        model = fit_on(np.concatenate([volume[i] for i in chosen], axis=1),
                       f"Training once on slices {', '.join(str(i + 1) for i in chosen)}", 0.0, 0.5)
        train_seconds = time.perf_counter() - start
        for i in range(n):
            out[i] = f2n.apply_model(model, volume[i], device=device).denoised_hu
            say(0.5 + 0.5 * (i + 1) / n, f"Applying to slice {i + 1} of {n}")
    else:
        chosen = tuple(range(n))
        for i in range(n):
            model = fit_on(volume[i], f"Slice {i + 1} of {n}", i / n, (i + 1) / n)
            out[i] = f2n.apply_model(model, volume[i], device=device).denoised_hu
        train_seconds = time.perf_counter() - start
    return SeriesResult(out, time.perf_counter() - start, train_seconds, chosen, bool(request.shared))


def baselines(bundle, request: BaselinesRequest, *, device="cpu", progress: Progress = None) -> BaselinesResult:
    """Device entry: each baseline on the slice, timed, within ``request.time_budget_s`` (they run
    on the CPU). Cheap ones first; each gets a share of the time left in proportion to its estimate
    (what one finishes early passes on). A baseline whose minimum does not fit is skipped; the grid
    search and ZS-N2N stop at their deadline with what they have; BM3D (one library call) runs in a
    child process that is killed at its deadline. Everything is said in the result. ``progress`` is
    called at least every half second, so a caller can cancel by raising from it."""
    from adapters.filter2noise import baselines as base
    from adapters.filter2noise import metrics

    noisy, reference = request.noisy_hu, request.reference_hu
    budget = float(request.time_budget_s)
    plan = base.estimate_seconds(noisy.shape, request.zs_iterations, request.zs_crop, reference is not None)
    start = time.perf_counter()
    deadline = start + budget
    images, skipped = [], []
    pending = dict(plan)  # estimates of the baselines not run yet

    def report(text, fraction=None):
        if progress is not None:
            progress(min(1.0, (time.perf_counter() - start) / budget) if fraction is None else fraction, text)

    def add(key, name, fn, note=None, minimum=None):
        """``fn(own_deadline)`` -> (image, params); ``note(params)`` says what was bounded."""
        left = deadline - time.perf_counter()
        share = left * plan[key] / sum(pending.values())
        del pending[key]
        needs = plan[key] if minimum is None else minimum
        if needs > left:
            skipped.append(f"{name}: skipped, it needs about {needs:.0f} s on this slice and {max(left, 0):.0f} s of "
                           f"the {budget:.0f} s budget were left.")
            return
        report(f"{name} (about {plan[key]:.0f} s)")
        t0 = time.perf_counter()
        try:
            image, params = fn(t0 + max(share, needs))
        except base.OutOfTime:
            skipped.append(f"{name}: stopped after {time.perf_counter() - t0:.0f} s, its share of the {budget:.0f} s "
                           "budget (the machine is slower than estimated now); no result.")
            return
        images.append(BaselineImage(name, np.asarray(image, np.float32), time.perf_counter() - t0,
                                    note(params) if note else ""))

    def oracle_step(i, n):
        if i % 8 == 0:
            report(f"Bilateral grid search: setting {i} of {n}")

    def zs_step(i, n):
        if i == 1 or i % 10 == 0:
            report(f"ZS-N2N: iteration {i} of {n}")

    def oracle_note(params):
        if params["settings_tried"] < params["settings"]:
            return (f"grid stopped at the time budget after {params['settings_tried']} of {params['settings']} "
                    "settings")
        return ""

    def zs_note(params):
        crop = f"trained on random {params['crop']}x{params['crop']} crops, " if params["crop"] else ""
        cut = (f"; stopped at the time budget after {params['iterations']} of {params['planned_iterations']} "
               "iterations" if params["iterations"] < params["planned_iterations"] else "")
        return f"{crop}{params['iterations']} iterations{cut}"

    report(f"Running the baselines (about {sum(plan.values()):.0f} s, at most {budget:.0f} s)", 0.0)
    add("bilateral", "OpenCV bilateral (sigma from estimated noise)", lambda until: base.bilateral_from_noise(noisy))
    if reference is not None:
        add("oracle", "OpenCV bilateral, grid-searched against the reference (upper bound)",
            lambda until: base.oracle_bilateral(noisy, reference, lambda a, r: metrics.reference_metrics(a, r)[0],
                                                on_step=oracle_step, deadline=until), oracle_note,
            minimum=plan["oracle"] / 20)
    add("bm3d", "BM3D (noise estimated)",
        lambda until: base.run_until(base.bm3d_estimated, (noisy,), until, poll=lambda: report("BM3D")))
    apply_s = base.SECONDS_PER_PIXEL["zs_apply"] * noisy.size
    crop_text = f", {request.zs_crop}² crops" if request.zs_crop else ""
    add("zs_n2n", f"ZS-N2N ({request.zs_iterations} iterations{crop_text})",
        lambda until: base.zs_n2n(noisy, request.zs_iterations, on_step=zs_step, crop=request.zs_crop,
                                  deadline=until - 2 * apply_s - 0.5), zs_note,
        minimum=apply_s + plan["zs_n2n"] * min(1.0, 10 / max(request.zs_iterations, 1)))
    return BaselinesResult(tuple(images), tuple(skipped), budget, float(sum(plan.values())))
