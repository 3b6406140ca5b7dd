"""The series mode in Debian's chromium: 20 DICOM slices uploaded in the Series section denoise
with a progress bar, the closing note gives seconds per slice, the slice slider scrolls and the
series zip is offered for download."""
from __future__ import annotations

import re

import pytest

from tests.browser.tabs import open_tab
from tests.browser.test_browser import page, screenshot  # noqa: F401  (the shared browser page fixture)

pytestmark = [pytest.mark.browser, pytest.mark.e2e]


def test_a_20_slice_series_denoises_and_exports_in_the_browser(page, tmp_path):  # noqa: F811
    from adapters.filter2noise.data import neighbour_slices, simulate_low_dose
    from adapters.filter2noise.io import load_slice, pydicom_test_file
    from adapters.filter2noise.testing import write_dicom_series

    ct = load_slice(pydicom_test_file("CT_small.dcm"))
    noisy = [simulate_low_dose(c, 5e3, pixel_mm=ct.spacing_mm[1], seed=i)[0]
             for i, c in enumerate(neighbour_slices(ct.hu, 20))]
    paths = write_dicom_series(tmp_path / "series", noisy)
    open_tab(page, "CT denoising (Filter2Noise)")
    page.get_by_text("Series: denoise every slice of a series").click()
    page.locator("#filter2noise-series-files input[type=file]").set_input_files([str(p) for p in paths])
    page.wait_for_timeout(1500)
    page.locator("#filter2noise-series-run").click()
    # the progress bar shows while the slices are denoised
    page.locator("#tab-filter2noise .progress-text, #tab-filter2noise .eta-bar").first.wait_for(timeout=60_000)
    page.wait_for_function(
        "id => (document.getElementById(id)?.innerText || '').includes('per slice')"
        " || document.querySelector('.toast-body.error') !== null",
        arg="filter2noise-series-status", timeout=300_000)
    status = page.locator("#filter2noise-series-status").inner_text()
    screenshot(page, "filter2noise-series")
    assert "20 slices of 128x128 px" in status, status
    assert re.search(r"\d+\.\d\d s per slice", status)
    page.wait_for_function("() => document.getElementById('tab-filter2noise').innerText.includes('denoised_series_dicom')",
                           timeout=30_000)
    assert page.locator("#filter2noise-series-index input[type=number]").input_value() == "11"
    page.set_viewport_size({"width": 390, "height": 900})  # a phone: the section still reads
    page.wait_for_timeout(1000)
    screenshot(page, "filter2noise-series-390px")
    page.set_viewport_size({"width": 1400, "height": 1000})
