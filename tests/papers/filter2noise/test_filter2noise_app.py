"""The CT tab through its handlers and through the running app's API (gradio_client)."""
from __future__ import annotations

import numpy as np
import pydicom
import pytest

from adapters.common.errors import BadInput
from adapters.filter2noise.io import load_slice
from adapters.filter2noise.metrics import pick_region, region_from_editor
from adapters.filter2noise.modeling import estimate_noise_hu

ASSETS = __import__("pathlib").Path(__file__).resolve().parents[3] / "assets" / "filter2noise"
WINDOW = "Soft tissue (W400 / L40)"


def test_painted_mask_is_the_alpha_of_the_first_layer():
    layer = np.zeros((20, 30, 4), np.uint8)
    layer[5:9, 10:20, 3] = 255
    value = {"background": np.zeros((20, 30, 4), np.uint8), "layers": [layer], "composite": None}
    mask = region_from_editor(value, (20, 30))
    assert mask.sum() == 40 and mask[5:9, 10:20].all()
    # a box overrides the brush; neither gives a clear message
    assert pick_region(value, "0,0,3,2", (20, 30)).sum() == 6
    with pytest.raises(BadInput, match="Mark a region first"):
        pick_region({"background": None, "layers": [], "composite": None}, "", (20, 30))
    with pytest.raises(BadInput, match="four numbers"):
        pick_region(None, "1,2,3", (20, 30))


def _path(value):
    return value if isinstance(value, str) else value["path"] if isinstance(value, dict) else value[0]


@pytest.mark.e2e
def test_api_denoise_edit_reset_and_bad_input(studio_client, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    ct = ASSETS / "CT_small_I0_5e3.dcm"
    reference = np.load(ASSETS / "CT_small_reference.npy")
    out = studio_client.predict(handle_file(str(ct)), None, None, WINDOW, 400, 40, 30, 400, False,
                                api_name="/filter2noise_denoise")
    slider, residual, sigmas, editor, metrics, edits, downloads, status = out
    assert "Done in" in status and "30 iterations" in status
    assert "No reference image" in metrics
    files = {p.rsplit(".", 1)[-1]: p for p in (_path(d) for d in downloads)}
    assert set(files) == {"dcm", "npy", "png"}
    noisy = load_slice(ct).hu
    denoised = np.load(files["npy"])
    assert denoised.shape == noisy.shape
    assert estimate_noise_hu(denoised) < 0.6 * estimate_noise_hu(noisy)
    # closer to the noiseless reference than the input was (RMSE in HU)
    rmse = lambda a: float(np.sqrt(np.mean((a - reference) ** 2)))
    assert rmse(denoised) < 0.75 * rmse(noisy), (rmse(denoised), rmse(noisy))
    dicom = pydicom.dcmread(files["dcm"])
    assert str(dicom.PatientName) == "ANONYMOUS^PATIENT" and dicom.PatientIdentityRemoved == "YES"
    np.testing.assert_allclose(load_slice(files["dcm"]).hu, np.rint(denoised), atol=0.51)

    out = studio_client.predict(None, "40,40,80,80", 3.0, WINDOW, 400, 40, False, api_name="/filter2noise_edit")
    edited = np.load([p for p in (_path(d) for d in out[6]) if p.endswith(".npy")][0])
    changed = edited != denoised
    assert changed[40:80, 40:80].mean() > 0.5
    outside = np.ones_like(changed)
    outside[40 - 5:80 + 5, 40 - 5:80 + 5] = False
    assert not changed[outside].any()
    assert "x3 on 1600 px" in out[5]

    out = studio_client.predict(WINDOW, 400, 40, False, api_name="/filter2noise_reset")
    reset = np.load([p for p in (_path(d) for d in out[6]) if p.endswith(".npy")][0])
    np.testing.assert_array_equal(reset, denoised)

    # the string "false" through the API is False: the DICOM stays de-identified; junk is refused
    for spelling in ("false", "False", "0", "no"):
        out = studio_client.predict(WINDOW, 400, 40, spelling, api_name="/filter2noise_reset")
        dicom = pydicom.dcmread([p for p in (_path(d) for d in out[6]) if p.endswith(".dcm")][0])
        assert dicom.PatientIdentityRemoved == "YES" and "de-identified" in out[7], spelling
    with pytest.raises(AppError, match="must be yes or no"):
        studio_client.predict(WINDOW, 400, 40, "maybe", api_name="/filter2noise_reset")

    for name, message in (("notes.txt", "Invalid file type"), ("notes.png", "not a file the CT tab can read"),
                          ("notes.dcm", "corrupt or truncated")):
        bad = tmp_path / name
        bad.write_text("not an image")
        with pytest.raises(AppError, match=message):
            studio_client.predict(handle_file(str(bad)), None, None, WINDOW, 400, 40, 10, 400, False,
                                  api_name="/filter2noise_denoise")


@pytest.mark.e2e
def test_api_series_denoises_scrolls_and_exports_one_series(studio_client, tmp_path):
    import zipfile

    from gradio_client import handle_file

    from adapters.filter2noise.testing import write_dicom_series

    base = load_slice(ASSETS / "CT_small_I0_5e3.dcm").hu
    paths = write_dicom_series(tmp_path / "in", [base + 20 * i for i in range(3)])
    out = studio_client.predict([handle_file(str(p)) for p in paths], None, WINDOW, 400, 40, 10, 250.0, "false",
                                api_name="/filter2noise_series")
    view, index, download, status = out
    assert "3 slices of 128x128 px" in status and "s per slice" in status and "de-identified" in status
    with zipfile.ZipFile(_path(download)) as z:
        z.extractall(tmp_path / "out")
    back = [pydicom.dcmread(tmp_path / "out" / f"slice_{i:04d}.dcm") for i in (1, 2, 3)]
    assert [int(b.InstanceNumber) for b in back] == [1, 2, 3] and len({b.SeriesInstanceUID for b in back}) == 1
    assert all(b.PatientIdentityRemoved == "YES" for b in back)
    first = studio_client.predict(1, WINDOW, 400, 40, api_name="/filter2noise_series_slice")
    last = studio_client.predict(3, WINDOW, 400, 40, api_name="/filter2noise_series_slice")
    assert _path(first[0]) != _path(last[0])


def test_sigma_colours_are_fixed_not_stretched_per_image():
    from adapters.filter2noise.viz import colormap

    narrow = np.array([[1.0, 1.02]])
    wide = np.array([[1.0, 3.0]])
    # the same sigma gets the same colour whatever else is in the map, and a 2% spread stays subtle
    np.testing.assert_array_equal(colormap(narrow, 0, 3)[0, 0], colormap(wide, 0, 3)[0, 0])
    assert np.abs(colormap(narrow, 0, 3)[0, 0].astype(int) - colormap(narrow, 0, 3)[0, 1]).max() <= 6


def test_baselines_run_and_are_scored_against_the_reference():
    from adapters.filter2noise import modeling as f2n
    from adapters.filter2noise.io import CTSlice
    from adapters.filter2noise.metrics import Session, run_baselines

    rng = np.random.default_rng(0)
    reference = np.zeros((48, 48), np.float32)
    reference[12:36, 12:36] = 100
    noisy = reference + rng.normal(0, 30, reference.shape).astype(np.float32)
    state = f2n.apply_model(f2n.fit(noisy, f2n.FitSettings(iterations=3)).model, noisy)
    results = run_baselines(Session(CTSlice(noisy), state, reference, 1.0), zs_iterations=3)
    names = [name for name, _, _ in results]
    assert names[0] == "Filter2Noise" and any("BM3D" in n for n in names) and any("upper bound" in n for n in names)
    for _name, image, caption in results:
        assert image.shape == noisy.shape and "PSNR" in caption
    oracle = next(image for name, image, _ in results if "upper bound" in name)
    assert np.sqrt(np.mean((oracle - reference) ** 2)) < 0.8 * np.sqrt(np.mean((noisy - reference) ** 2))


def test_a_box_outside_the_slice_is_refused_naming_the_slice_size():
    assert pick_region(None, "120,120,300,300", (128, 128)).sum() == 8 * 8  # clipped to the slice
    assert pick_region(None, "30,20,10,5", (128, 128)).sum() == 20 * 15  # corners in any order
    for box in ("200,200,300,300", "-50,-50,-10,-10", "0,130,50,160", "300,10,200,40"):
        with pytest.raises(BadInput, match="lies outside the 128x128 slice"):
            pick_region(None, box, (128, 128))
    with pytest.raises(BadInput, match="empty inside the 128x128 slice"):
        pick_region(None, "10,10,10,40", (128, 128))


def _session(shape=(48, 48)):
    from adapters.filter2noise import modeling as f2n
    from adapters.filter2noise.io import CTSlice
    from adapters.filter2noise.metrics import Session

    noisy = np.random.default_rng(0).normal(0, 20, shape).astype(np.float32)
    state = f2n.apply_model(f2n.fit(noisy, f2n.FitSettings(iterations=2)).model, noisy)
    return Session(CTSlice(noisy), state)


def test_measuring_needs_a_region_big_enough_for_a_noise_estimate():
    import gradio as gr

    import tabs.filter2noise as tab
    from adapters.filter2noise.metrics import MIN_MEASURE_PIXELS, region_stats

    session = _session()
    for box, pixels in (("10,10,11,11", 1), ("10,10,13,15", 15)):
        with pytest.raises(gr.Error, match=f"The region has {pixels} pixels?; a noise estimate needs at least 16"):
            tab.measure_region(None, box, session)
    region = np.zeros((48, 48), bool)
    region[10:14, 10:14] = True  # 16 px: enough
    stats = region_stats(session, region)
    assert stats["pixels"] == MIN_MEASURE_PIXELS and stats["noisy"]["cnr"] < 100
    assert "CNR" in tab.measure_region(None, "10,10,14,14", session)
    with pytest.raises(gr.Error, match="lies outside the 48x48 slice"):
        tab.measure_region(None, "100,100,120,120", session)


def test_every_iteration_count_trains_including_the_slider_minimum():
    """OneCycleLR divided by zero at exactly 10 iterations (its warm-up ended at step 0)."""
    import torch

    from adapters.filter2noise import modeling as f2n
    from adapters.filter2noise.config import MAX_ITERATIONS

    for n in list(range(1, 41)) + [100, MAX_ITERATIONS]:
        p = torch.nn.Parameter(torch.zeros(1))
        optimizer = torch.optim.AdamW([p], lr=1e-3)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-3, total_steps=n,
                                                        pct_start=f2n.warmup_fraction(n))
        for _ in range(n):
            optimizer.step()
            scheduler.step()
    assert f2n.warmup_fraction(100) == 0.1 and f2n.warmup_fraction(10) == 0.2
    noisy = np.random.default_rng(1).normal(0, 20, (32, 32)).astype(np.float32)
    result = f2n.fit(noisy, f2n.FitSettings(iterations=10))
    assert len(result.losses) == 10 and all(np.isfinite(result.losses))


def test_an_oversized_brush_layer_is_refused_from_its_header_before_decoding(tmp_path, monkeypatch):
    import gradio as gr
    from gradio.components.image_editor import EditorData
    from gradio.data_classes import FileData
    from PIL import Image

    from tabs.filter2noise import bound_editor_layers
    from tests.papers.filter2noise.test_filter2noise_bounds import huge_png

    editor = bound_editor_layers(gr.ImageEditor(type="numpy", image_mode="RGBA"))
    decoded = []
    monkeypatch.setattr(Image.Image, "load", lambda self: decoded.append(self.size))
    big = huge_png(tmp_path / "layer.png", side=5000)
    with pytest.raises(gr.Error, match="5000x5000 pixels.*up to 2048x2048"):
        editor.preprocess(EditorData(background=None, layers=[FileData(path=str(big))], composite=None))
    assert not decoded
    monkeypatch.undo()
    small = tmp_path / "small.png"
    Image.new("RGBA", (30, 20), (255, 0, 0, 255)).save(small)
    value = editor.preprocess(EditorData(background=None, layers=[FileData(path=str(small))], composite=None))
    assert value["layers"][0].shape == (20, 30, 4)
