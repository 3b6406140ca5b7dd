"""Baselines under a time budget: the stated estimate, the deadline, skipping what cannot fit,
and cancelling through the progress callback."""
from __future__ import annotations

import time

import numpy as np
import pytest

from adapters.common.errors import BadInput
from adapters.filter2noise import baselines as base
from adapters.filter2noise.config import BaselinesRequest
from adapters.filter2noise.inference import baselines


@pytest.fixture(autouse=True, scope="module")
def _optimizer_imports_warm():
    """Torch imports its compiler package on the first optimizer, BM3D and SSIM their modules (seconds,
    cold, once per process): not part of what a deadline here measures."""
    import bm3d  # noqa: F401
    import skimage.metrics  # noqa: F401
    import torch

    torch.optim.Adam([torch.zeros(1, requires_grad=True)])


def _slice(side=64, seed=0):
    rng = np.random.default_rng(seed)
    clean = np.zeros((side, side), np.float32)
    clean[side // 4:3 * side // 4, side // 4:3 * side // 4] = 100
    return clean, clean + rng.normal(0, 30, clean.shape).astype(np.float32)


def test_zs_n2n_on_crops_stops_at_its_deadline_and_says_how_far_it_got():
    _, noisy = _slice(96)
    start = time.perf_counter()
    out, info = base.zs_n2n(noisy, 100_000, crop=32, deadline=start + 1.0)
    elapsed = time.perf_counter() - start
    assert elapsed < 3.0 and 0 < info["iterations"] < 100_000 and info["crop"] == 32  # + one iteration and the apply
    assert out.shape == noisy.shape  # applied to the whole slice
    _, info = base.zs_n2n(noisy, 4, crop=500)  # a crop larger than the slice trains on the whole slice
    assert info["crop"] is None and info["iterations"] == 4


def test_the_run_finishes_within_its_budget_and_names_what_it_bounded():
    clean, noisy = _slice(64)
    budget = 6.0
    start = time.perf_counter()
    result = baselines(None, BaselinesRequest(noisy, clean, zs_iterations=100_000, time_budget_s=budget, zs_crop=32))
    elapsed = time.perf_counter() - start
    assert elapsed <= budget + 1.5, elapsed  # + the last ZS-N2N iteration and the apply
    zs = next(item for item in result.images if item.name.startswith("ZS-N2N"))
    assert "stopped at the time budget" in zs.note and "random 32x32 crops" in zs.note
    assert result.budget_s == budget and not result.skipped
    assert zs.hu.shape == noisy.shape and np.isfinite(zs.hu).all()


def test_a_baseline_whose_estimate_does_not_fit_is_skipped_with_its_estimate():
    clean, noisy = _slice(64)
    plan = base.estimate_seconds(noisy.shape, 5, 32, True)
    budget = plan["bilateral"] + plan["oracle"] + 0.5 * plan["bm3d"]  # BM3D cannot fit
    result = baselines(None, BaselinesRequest(noisy, clean, zs_iterations=5, time_budget_s=budget, zs_crop=32))
    assert not any("BM3D" in item.name for item in result.images)
    assert any(line.startswith("BM3D") and "skipped" in line and "needs about" in line for line in result.skipped)


def test_a_library_call_that_cannot_stop_itself_is_killed_at_its_deadline():
    start = time.perf_counter()
    with pytest.raises(base.OutOfTime):
        base.run_until(time.sleep, (30,), start + 0.5)
    assert time.perf_counter() - start < 3
    _, noisy = _slice(32)
    image, params = base.run_until(base.bm3d_estimated, (noisy,), time.perf_counter() + 60)
    assert image.shape == noisy.shape and params["sigma_hu"] > 0

    def cancel():
        raise BadInput("The baselines were cancelled.")

    with pytest.raises(BadInput, match="cancelled"):
        base.run_until(time.sleep, (30,), time.perf_counter() + 30, poll=cancel, interval=0.1)
    assert time.perf_counter() - start < 10


def test_estimates_scale_with_the_slice_and_the_512_slice_fits_the_tab_budget():
    from adapters.filter2noise.config import BASELINE_BUDGET_S, BASELINE_ZS_CROP, BASELINE_ZS_ITERATIONS

    small = sum(base.estimate_seconds((128, 128), BASELINE_ZS_ITERATIONS, BASELINE_ZS_CROP, True).values())
    large = sum(base.estimate_seconds((512, 512), BASELINE_ZS_ITERATIONS, BASELINE_ZS_CROP, True).values())
    assert small < large < BASELINE_BUDGET_S


def test_cancel_raises_from_the_progress_callback_and_stops_the_work():
    clean, noisy = _slice(64)
    calls = []

    def progress(fraction, text):
        calls.append(text)
        if text.startswith("ZS-N2N: iteration"):
            raise BadInput("The baselines were cancelled.")

    start = time.perf_counter()
    with pytest.raises(BadInput, match="cancelled"):
        baselines(None, BaselinesRequest(noisy, None, zs_iterations=100_000, time_budget_s=60, zs_crop=32),
                  progress=progress)
    assert time.perf_counter() - start < 20 and calls[-1] == "ZS-N2N: iteration 1 of 100000"


def test_the_tab_states_the_estimate_and_cancels_by_session(monkeypatch):
    from adapters.filter2noise import modeling as f2n
    from adapters.filter2noise.io import CTSlice
    from adapters.filter2noise.metrics import Session
    from tabs import filter2noise as tab

    clean, noisy = _slice(64)
    state = f2n.apply_model(f2n.fit(noisy, f2n.FitSettings(iterations=2)).model, noisy)
    label = tab.baselines_label(Session(CTSlice(noisy), state, clean, 1.0))
    assert "on this 64x64 slice" in label and "about" in label and "at most 90 s" in label
    forwarded = []
    progress = tab._CancellableProgress(lambda f, desc=None: forwarded.append(desc), "abc")
    progress(0.1, "step")
    tab.cancel_baselines(type("R", (), {"session_hash": "abc"})())
    with pytest.raises(BadInput, match="cancelled"):
        progress(0.2, "next")
    progress(0.3, "a later run is not affected")
    assert forwarded == ["step", "a later run is not affected"]
