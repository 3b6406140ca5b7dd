"""Honest feedback on the slice and region edits that stay: the noise estimate before and after,
the clean-slice sentence, fixed vs auto sigma scales, the preview before Denoise, the edited
region drawn until reset and measured when nothing new is marked, window fields that follow."""
from __future__ import annotations

import numpy as np
import pytest

from adapters.filter2noise import modeling as f2n
from adapters.filter2noise.io import CTSlice
from adapters.filter2noise.metrics import Session, noise_feedback
from adapters.filter2noise.viz import REGION_COLOUR, SIGMA_SCALES, sigma_figure, with_outline

ASSETS = __import__("pathlib").Path(__file__).resolve().parents[3] / "assets" / "filter2noise"
WINDOW = "Soft tissue (W400 / L40)"


def _session(noise=40.0, side=48):
    rng = np.random.default_rng(0)
    clean = np.zeros((side, side), np.float32)
    clean[side // 4:3 * side // 4, side // 4:3 * side // 4] = 60
    noisy = clean + rng.normal(0, noise, clean.shape).astype(np.float32)
    state = f2n.apply_model(f2n.fit(noisy, f2n.FitSettings(iterations=2)).model, noisy)
    return Session(CTSlice(noisy), state)


def test_noise_is_estimated_before_and_after_and_a_clean_slice_is_called_clean():
    from adapters.filter2noise.io import load_slice

    clean = load_slice(ASSETS / "CT_small.dcm").hu  # the shipped slice: normal dose
    text = noise_feedback(clean, clean + 0.01)
    assert "little to remove" in text and "Estimated noise 5.6 HU" in text
    noisy = load_slice(ASSETS / "CT_small_I0_5e3.dcm").hu
    denoised = clean  # a result with the noise gone
    text = noise_feedback(noisy, denoised)
    assert "little to remove" not in text and "54.7 HU before, 5.6 HU after" in text
    assert "little to remove" in noise_feedback(clean) and "little to remove" not in noise_feedback(noisy)


def test_sigma_maps_fixed_or_auto_scaled():
    flat = np.full((3, 16, 16), 1.0, np.float32)
    ramp = flat.copy()
    ramp[:, :, 8:] = 1.05
    fixed = [sigma_figure([m], (1.0, 1.0), 3.0, 400.0, 4095.0) for m in (flat, ramp)]
    auto = [sigma_figure([m], (1.0, 1.0), 3.0, 400.0, 4095.0, auto=True) for m in (flat, ramp)]
    # fixed: a 5% step is a faint change; auto: the same step spans the whole colour bar
    row = 28 + 34 + 100  # inside the first panel's map
    fixed_step = np.abs(fixed[1][row, 20].astype(int) - fixed[1][row, 240].astype(int)).max()
    auto_step = np.abs(auto[1][row, 20].astype(int) - auto[1][row, 240].astype(int)).max()
    assert fixed_step <= 10 < 60 < auto_step
    assert np.isfinite(auto[0].astype(float)).all()  # a flat map does not divide by zero
    import tabs.filter2noise as tab

    session = _session()
    assert not np.array_equal(tab.sigma_view(SIGMA_SCALES[0], session), tab.sigma_view(SIGMA_SCALES[1], session))


def test_the_edited_region_is_drawn_until_reset_and_measured_without_marking_again():
    import tabs.filter2noise as tab

    session = _session()
    out = tab.edit_region(None, "10,10,30,30", 2.0, WINDOW, 400, 40, False, session)
    (noisy_img, denoised_img), editor, session = out[0], out[3], out[-1]
    red = np.all(denoised_img == REGION_COLOUR, axis=-1)
    assert red[10, 10:30].all() and red[29, 10:30].all() and red[10:30, 10].all() and not red[15:25, 15:25].any()
    assert red.sum() == 4 * 20 - 4 and np.array_equal(editor["background"], denoised_img)
    assert noisy_img.ndim == 2  # the noisy side is untouched
    table = tab.measure_region({"background": None, "layers": [], "composite": None}, "", session)
    assert "Region: 400 pixels" in table
    out = tab.reset_region(WINDOW, 400, 40, False, session)
    assert not np.all(out[0][1] == REGION_COLOUR, axis=-1).any() and out[-1].last_region is None
    with pytest.raises(Exception, match="Mark a region first"):
        tab.measure_region(None, "", out[-1])


def test_outline_of_two_applies_covers_both_regions():
    mask = np.zeros((20, 20), bool)
    mask[2:6, 2:6] = True
    mask[10:18, 10:18] = True
    rgb = with_outline(np.zeros((20, 20), np.uint8), mask)
    red = np.all(rgb == REGION_COLOUR, axis=-1)
    assert red[2, 2] and red[10, 17] and not red[4, 4] and not red[0, 0]


def test_window_fields_follow_the_preset_and_typing_switches_to_custom():
    import tabs.filter2noise as tab

    width, level = tab.preset_fields("Brain (W80 / L40)")
    assert width["value"] == 80 and level["value"] == 40
    assert tab.to_custom("Brain (W80 / L40)")["value"] == "Custom"


def test_preview_on_upload_shows_the_slice_and_its_noise_before_any_training():
    import tabs.filter2noise as tab
    from studio import device

    with device.recording_calls() as calls:
        (left, right), text = tab.preview(str(ASSETS / "CT_small_I0_5e3.dcm"), None, WINDOW, 400, 40)
    assert not calls and left.shape == (128, 128) and np.array_equal(left, right)
    assert "Preview: 128x128 px" in text and "Estimated noise 54.7 HU" in text and "Denoise" in text
    (_, _), text = tab.preview(str(ASSETS / "CT_small.dcm"), None, WINDOW, 400, 40)
    assert "little to remove" in text
