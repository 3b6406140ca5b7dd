"""Filter2Noise adapter: the explicit filter, training on one slice, sigma maps and the region edit."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from adapters.filter2noise import modeling as f2n
from adapters.filter2noise.data import psnr_ssim, shepp_logan_hu, simulate_low_dose


def direct_bilateral(x, sx, sy, sr, radius):
    """The definition, one pixel at a time, with reflection at the borders."""
    h, w = x.shape
    out = np.zeros_like(x, dtype=np.float64)
    padded = np.pad(x.astype(np.float64), radius, mode="reflect")
    for i in range(h):
        for j in range(w):
            num = den = 0.0
            for dy in range(-radius, radius + 1):
                for dx in range(-radius, radius + 1):
                    v = padded[i + radius + dy, j + radius + dx]
                    wgt = np.exp(-dx * dx / (2 * sx[i, j] ** 2) - dy * dy / (2 * sy[i, j] ** 2)
                                 - (v - x[i, j]) ** 2 / (2 * sr[i, j] ** 2))
                    num += wgt * v
                    den += wgt
            out[i, j] = num / den
    return out


@pytest.fixture(scope="module")
def phantom():
    hu = shepp_logan_hu(96)
    noisy, reference = simulate_low_dose(hu, photons=5e3, pixel_mm=2.0, views=180, seed=1)
    return noisy, reference


@pytest.fixture(scope="module")
def trained(phantom):
    torch.set_num_threads(1)
    noisy, _ = phantom
    result = f2n.fit(noisy, f2n.FitSettings(iterations=80, crop=96, seed=0))
    return result, f2n.apply_model(result.model, noisy)


@pytest.mark.parametrize("grad", [False, True])
def test_filter_matches_direct_definition(grad):
    rng = np.random.default_rng(0)
    x = rng.random((13, 17)).astype(np.float32)
    sx = (0.4 + 3 * rng.random(x.shape)).astype(np.float32)  # some above the radius: truncated, not clamped
    sy = (0.4 + 2 * rng.random(x.shape)).astype(np.float32)
    sr = (0.05 + 0.3 * rng.random(x.shape)).astype(np.float32)
    t = [torch.from_numpy(a)[None, None] for a in (x, sx, sy, sr)]
    if grad:
        t[1].requires_grad_(True)
    out = f2n.bilateral(*t, radius=3)
    expected = direct_bilateral(x, sx, sy, sr, 3)
    np.testing.assert_allclose(out.detach()[0, 0].numpy(), expected, atol=2e-6)
    # and it does smooth: the output is not the input
    assert np.abs(expected - x).mean() > 0.01


def test_any_size_and_only_predictors_train():
    model = f2n.Filter2Noise()
    x = torch.rand(1, 1, 37, 53)
    out, sigmas = model(x, return_sigmas=True)
    assert out.shape == x.shape and all(s.shape == (1, 3, 37, 53) for s in sigmas)
    # the filter itself has no parameters: everything trainable is in the sigma predictors
    assert sum(p.numel() for p in model.predictors.parameters()) == f2n.count_parameters(model) > 0
    noisy = (np.random.default_rng(0).normal(40, 30, (37, 53))).astype(np.float32)
    before = noisy.copy()
    result = f2n.fit(noisy, f2n.FitSettings(iterations=2, crop=32))
    assert np.array_equal(noisy, before)  # the slice is never modified
    changed = [not torch.equal(a, b) for a, b in zip(model.state_dict().values(), result.model.state_dict().values())]
    assert any(changed)


def test_training_lowers_loss_and_improves_psnr(phantom, trained):
    noisy, reference = phantom
    result, state = trained
    first, last = np.mean(result.losses[:8]), np.mean(result.losses[-8:])
    assert last < 0.95 * first
    psnr_noisy = psnr_ssim(noisy, reference)[0]
    psnr_out, ssim_out = psnr_ssim(state.denoised_hu, reference)
    assert psnr_out > psnr_noisy + 3.0, (psnr_noisy, psnr_out)
    assert ssim_out > psnr_ssim(noisy, reference)[1]


def test_sigma_maps_vary_where_the_image_does(phantom, trained):
    _, reference = phantom
    _, state = trained
    from scipy import ndimage

    grad = np.hypot(ndimage.sobel(reference, 0), ndimage.sobel(reference, 1))
    inside = ndimage.binary_erosion(reference > -500, iterations=3)
    edges = inside & (grad > np.percentile(grad[inside], 90))
    flat = inside & ndimage.binary_erosion(grad < np.percentile(grad[inside], 40), iterations=2)
    stats = f2n.sigma_map_stats(state, 0, edges, flat)
    # a filter that adapts smooths flat tissue harder than edges in intensity
    assert stats["sigma_r_hu"]["flat_mean"] > 1.1 * stats["sigma_r_hu"]["edge_mean"], stats["sigma_r_hu"]
    assert stats["sigma_r_hu"]["cv"] > 0.05


def test_region_edit_is_exact_local_and_resettable(trained):
    _, state = trained
    h, w = state.multiplier.shape
    region = np.zeros((h, w), bool)
    region[30:50, 20:45] = True
    region[60:64, 70:72] = True  # two separate blobs
    edited = f2n.set_region_factor(state, region, 2.5)
    for stage in range(len(state.base_sigmas)):
        np.testing.assert_array_equal(edited.sigmas(stage)[:, region], state.base_sigmas[stage][:, region] * np.float32(2.5))
        np.testing.assert_array_equal(edited.sigmas(stage)[:, ~region], state.base_sigmas[stage][:, ~region])
    # the fast windowed re-render equals a full re-render with the edited maps
    np.testing.assert_allclose(edited.denoised_unit, f2n.render(edited)[-1], atol=1e-6)
    # nothing farther than the kernel radius (Chebyshev) from the region moves, bit for bit
    reach = f2n._dilate(region, state.locality_radius)
    diff = edited.denoised_unit != state.denoised_unit
    assert diff.any() and not (diff & ~reach).any()
    assert diff[region].mean() > 0.5  # and inside the region it really does change
    assert state.locality_radius == f2n.RADIUS
    # painting the same factor again does not compound; another factor replaces it
    again = f2n.set_region_factor(edited, region, 2.5)
    np.testing.assert_array_equal(again.denoised_unit, edited.denoised_unit)
    half = f2n.set_region_factor(edited, region, 0.5)
    np.testing.assert_array_equal(half.multiplier[region], np.float32(0.5))
    # reset restores the trained result exactly
    np.testing.assert_array_equal(f2n.reset_edits(half).denoised_unit, state.denoised_unit)
    with pytest.raises(ValueError):
        f2n.set_region_factor(state, region, 0.0)
