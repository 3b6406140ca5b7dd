"""Baselines for the CT denoising tab, all on HU slices: OpenCV's bilateral filter (fixed or
grid-searched against a reference), BM3D with its noise level estimated from the image, and ZS-N2N
(Mansour & Heckel, 2023) re-implemented from its paper."""
from __future__ import annotations

import time
from typing import Callable, Iterable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from adapters.filter2noise.modeling import HU_RANGE, estimate_noise_hu, hu_to_unit, pair_downsample, unit_to_hu


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
                     ranges_in_noise: Iterable[float] = (0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 6.0)) -> tuple[np.ndarray, dict]:
    """The global (sigma_space, sigma_range) pair that scores best against the reference: an upper
    bound for any bilateral filter with one setting per image."""
    noise = estimate_noise_hu(hu)
    best = (-np.inf, None, None)
    for s in spaces:
        for k in ranges_in_noise:
            out = opencv_bilateral(hu, s, k * noise)
            score = metric(out, reference)
            if score > best[0]:
                best = (score, out, {"sigma_space_px": s, "sigma_range_hu": k * noise})
    return best[1], best[2]


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
           on_step: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, dict]:
    """Zero-shot Noise2Noise: residual and consistency MSE losses on the pair-downsampled slice."""
    torch.manual_seed(seed)
    start = time.perf_counter()
    x = torch.as_tensor(hu_to_unit(np.asarray(hu, np.float32)))[None, None]
    h, w = x.shape[-2:]
    x_even = F.pad(x, (0, w % 2, 0, h % 2), mode="replicate")
    net = ZSN2NNet()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=max(iterations // 2, 1), gamma=0.5)

    def denoise(t):
        return t - net(t)

    for i in range(iterations):
        d1, d2 = pair_downsample(x_even)
        res = 0.5 * (F.mse_loss(d1 - net(d1), d2) + F.mse_loss(d2 - net(d2), d1))
        full1, full2 = pair_downsample(denoise(x_even))
        cons = 0.5 * (F.mse_loss(denoise(d1), full1) + F.mse_loss(denoise(d2), full2))
        loss = res + cons
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if on_step is not None:
            on_step(i + 1, iterations)
    with torch.no_grad():
        out = denoise(x)[0, 0].numpy()
    return unit_to_hu(out).astype(np.float32), {"iterations": iterations, "seconds": time.perf_counter() - start}
