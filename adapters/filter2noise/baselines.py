"""Baselines for the CT denoising tab, all on HU slices: OpenCV's bilateral filter (fixed or
grid-searched against a reference), BM3D with its noise level estimated from the image, and ZS-N2N
(Mansour & Heckel, 2023) re-implemented from its paper.

On a shared CPU these cost from milliseconds (bilateral) to many minutes (ZS-N2N on a full 512²
slice), so the tab runs them under a time budget: `estimate_seconds` gives the cost for a slice
from per-pixel rates measured here, and ZS-N2N can train on random crops and stop at a deadline."""
from __future__ import annotations

import time
from typing import Callable, Iterable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from adapters.filter2noise.modeling import HU_RANGE, estimate_noise_hu, hu_to_unit, pair_downsample, unit_to_hu

# Seconds on one CPU thread of the shared development machine, per pixel of the slice (ZS-N2N: per
# crop pixel and iteration), measured by `bench/filter2noise.py` (bounded-baselines rows) and rounded up
SECONDS_PER_PIXEL = {"bilateral": 2e-7, "oracle": 3e-5, "bm3d": 2e-4, "zs_apply": 5e-6}
ZS_SECONDS_PER_CROP_PIXEL_ITERATION = 1.5e-5
FIXED_SECONDS = {"bilateral": 0.05, "oracle": 0.5, "bm3d": 2.0, "zs_n2n": 0.5}  # per call, whatever the size


def estimate_seconds(shape: tuple[int, int], zs_iterations: int, zs_crop: int | None,
                     with_reference: bool) -> dict[str, float]:
    """Expected seconds per baseline on a slice of ``shape`` (the tab states their sum)."""
    pixels = float(shape[0] * shape[1])
    crop_pixels = pixels if zs_crop is None else float(min(zs_crop, shape[0]) * min(zs_crop, shape[1]))
    out = {"bilateral": SECONDS_PER_PIXEL["bilateral"] * pixels}
    if with_reference:
        out["oracle"] = SECONDS_PER_PIXEL["oracle"] * pixels
    out["bm3d"] = SECONDS_PER_PIXEL["bm3d"] * pixels
    out["zs_n2n"] = ZS_SECONDS_PER_CROP_PIXEL_ITERATION * crop_pixels * zs_iterations + SECONDS_PER_PIXEL["zs_apply"] * pixels
    return {key: seconds + FIXED_SECONDS[key] for key, seconds in out.items()}


def opencv_bilateral(hu: np.ndarray, sigma_space_px: float, sigma_range_hu: float, radius: int | None = None) -> np.ndarray:
    import cv2

    d = 2 * (radius if radius is not None else int(np.ceil(2 * sigma_space_px))) + 1
    out = cv2.bilateralFilter(np.ascontiguousarray(hu, np.float32), d, float(sigma_range_hu), float(sigma_space_px),
                              borderType=cv2.BORDER_REFLECT_101)
    return out.astype(np.float32)


def bilateral_from_noise(hu: np.ndarray) -> tuple[np.ndarray, dict]:
    """A bilateral filter set from the estimated noise alone (what a user gets without a reference)."""
    noise = estimate_noise_hu(hu)
    params = {"sigma_space_px": 1.5, "sigma_range_hu": 2.0 * noise}
    return opencv_bilateral(hu, **params), params


def oracle_bilateral(hu: np.ndarray, reference: np.ndarray, metric: Callable[[np.ndarray, np.ndarray], float],
                     spaces: Iterable[float] = (0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0),
                     ranges_in_noise: Iterable[float] = (0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 6.0),
                     on_step: Callable[[int, int], None] | None = None,
                     deadline: float | None = None) -> tuple[np.ndarray, dict]:
    """The global (sigma_space, sigma_range) pair that scores best against the reference: an upper
    bound for any bilateral filter with one setting per image. At ``deadline`` the search stops
    with the best setting so far (``settings_tried`` says how many of the grid)."""
    noise = estimate_noise_hu(hu)
    grid = [(s, k) for s in spaces for k in ranges_in_noise]
    best = (-np.inf, None, None)
    tried = 0
    for i, (s, k) in enumerate(grid, start=1):
        if deadline is not None and i > 1 and time.perf_counter() >= deadline:
            break
        tried = i
        out = opencv_bilateral(hu, s, k * noise)
        score = metric(out, reference)
        if score > best[0]:
            best = (score, out, {"sigma_space_px": s, "sigma_range_hu": k * noise})
        if on_step is not None:
            on_step(i, len(grid))
    return best[1], {**best[2], "settings_tried": tried, "settings": len(grid)}


class OutOfTime(Exception):
    """A bounded baseline did not finish before its deadline (it was stopped)."""


def _child(conn, fn, args):
    try:
        conn.send(("ok", fn(*args)))
    except Exception as exc:  # reported to the parent by name only
        conn.send(("error", type(exc).__name__))
    finally:
        conn.close()


def run_until(fn: Callable, args: tuple, deadline: float, poll: Callable[[], None] | None = None,
              interval: float = 0.5):
    """``fn(*args)`` in a forked child process, killed at ``deadline`` (`OutOfTime`): for library
    calls that cannot stop themselves (BM3D is one C call of minutes on a large slice). ``poll``
    runs every ``interval`` seconds while waiting; an exception from it (a cancel) kills the child too.
    Where fork is unavailable it runs in this process, unbounded."""
    import multiprocessing as mp

    if "fork" not in mp.get_all_start_methods():
        return fn(*args)
    ctx = mp.get_context("fork")
    parent, child_end = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_child, args=(child_end, fn, args), daemon=True)
    child.start()
    child_end.close()
    try:
        while not parent.poll(max(0.0, min(interval, deadline - time.perf_counter()))):
            if time.perf_counter() >= deadline:
                raise OutOfTime()
            if poll is not None:
                poll()
        status, value = parent.recv()
    except EOFError:
        raise RuntimeError("the baseline's worker process ended without a result") from None
    finally:
        if child.is_alive():
            child.kill()
        child.join(timeout=5)
        parent.close()
    if status != "ok":
        raise RuntimeError(f"the baseline failed ({value})")
    return value


def bm3d_estimated(hu: np.ndarray) -> tuple[np.ndarray, dict]:
    """BM3D on unit intensities with sigma from scikit-image's wavelet noise estimate."""
    import bm3d
    from skimage.restoration import estimate_sigma

    x = hu_to_unit(np.asarray(hu, np.float64))
    sigma = float(estimate_sigma(x))
    out = bm3d.bm3d(x, sigma_psd=sigma, stage_arg=bm3d.BM3DStages.ALL_STAGES)
    return unit_to_hu(np.asarray(out, np.float32)), {"sigma_hu": sigma * HU_RANGE}


class ZSN2NNet(nn.Module):
    """ZS-N2N's two-layer network; it predicts the noise, the image is input minus it."""

    def __init__(self, width: int = 48):
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.conv3 = nn.Conv2d(width, 1, 1)

    def forward(self, x):
        y = F.leaky_relu(self.conv1(x), 0.2)
        y = F.leaky_relu(self.conv2(y), 0.2)
        return self.conv3(y)


def zs_n2n(hu: np.ndarray, iterations: int = 1000, lr: float = 1e-3, seed: int = 0,
           on_step: Callable[[int, int], None] | None = None, crop: int | None = None,
           deadline: float | None = None, threads: int | None = 1) -> tuple[np.ndarray, dict]:
    """See `_zs_n2n`; runs with ``threads`` torch CPU threads (small crops gain nothing from more,
    and on a shared machine more are slower), restoring the previous setting."""
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _zs_n2n(hu, iterations, lr, seed, on_step, crop, deadline)
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)


def _zs_n2n(hu: np.ndarray, iterations: int, lr: float, seed: int, on_step: Callable[[int, int], None] | None,
            crop: int | None, deadline: float | None) -> tuple[np.ndarray, dict]:
    """Zero-shot Noise2Noise: residual and consistency MSE losses on the pair-downsampled slice.

    ``crop``: train each iteration on a random crop of that side (even) instead of the whole slice,
    so an iteration costs the same on any slice; the network is convolutional and is applied to the
    whole slice afterwards. ``deadline`` (a `time.perf_counter()` value): stop training there; the
    iterations actually run are returned."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    x = torch.as_tensor(hu_to_unit(np.asarray(hu, np.float32)))[None, None]
    h, w = x.shape[-2:]
    x_whole = F.pad(x, (0, w % 2, 0, h % 2), mode="replicate")
    side = None if crop is None else 2 * (int(crop) // 2)
    if side is not None and side >= min(x_whole.shape[-2:]):
        side = None
    net = ZSN2NNet()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=max(iterations // 2, 1), gamma=0.5)

    def denoise(t):
        return t - net(t)

    done = 0
    for i in range(iterations):
        if deadline is not None and time.perf_counter() >= deadline:
            break
        if side is None:
            x_even = x_whole
        else:
            top = 2 * int(rng.integers(0, (x_whole.shape[-2] - side) // 2 + 1))
            left = 2 * int(rng.integers(0, (x_whole.shape[-1] - side) // 2 + 1))
            x_even = x_whole[..., top:top + side, left:left + side]
        d1, d2 = pair_downsample(x_even)
        res = 0.5 * (F.mse_loss(d1 - net(d1), d2) + F.mse_loss(d2 - net(d2), d1))
        full1, full2 = pair_downsample(denoise(x_even))
        cons = 0.5 * (F.mse_loss(denoise(d1), full1) + F.mse_loss(denoise(d2), full2))
        loss = res + cons
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        done = i + 1
        if on_step is not None:
            on_step(done, iterations)
    with torch.no_grad():
        out = denoise(x)[0, 0].numpy()
    return unit_to_hu(out).astype(np.float32), {"iterations": done, "planned_iterations": iterations,
                                                "crop": side, "seconds": time.perf_counter() - start}
