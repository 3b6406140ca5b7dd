"""FGSA tab: bad input, the handlers on the bundled model, the band lever, and the API."""
from __future__ import annotations

from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import torch
from PIL import Image

from adapters.common.errors import BadInput

torch.set_num_threads(1)
ASSETS = Path(__file__).resolve().parents[3] / "assets" / "fgsa"
needs_weights = pytest.mark.skipif(not (ASSETS / "adapter.safetensors").is_file(), reason="bundled FGSA weights missing")


def _save(tmp_path, name, array, mode=None):
    path = tmp_path / name
    Image.fromarray(array, mode=mode).save(path) if mode else Image.fromarray(array).save(path)
    return path


def _noise(h, w, c=3, seed=0):
    rng = np.random.default_rng(seed)
    shape = (h, w, c) if c else (h, w)
    return rng.integers(0, 255, shape, dtype=np.uint8)


def test_read_rgb_converts_and_rejects(tmp_path):
    from adapters.fgsa.io import read_rgb

    gray = read_rgb(_save(tmp_path, "gray.png", _noise(40, 30, c=0)))
    assert gray.shape == (40, 30, 3) and np.array_equal(gray[..., 0], gray[..., 2])
    rgba = _noise(32, 32, c=4)
    rgba[..., 3] = 0
    rgba[:16, :, 3] = 255
    out = read_rgb(_save(tmp_path, "rgba.png", rgba))
    assert out.shape == (32, 32, 3)
    assert (out[16:] == 255).all() and np.array_equal(out[:16], rgba[:16, :, :3])  # transparent -> white
    sixteen = np.asarray(Image.fromarray(_noise(20, 20)).convert("I;16"))
    assert read_rgb(_save(tmp_path, "deep.png", _noise(20, 20, c=0).astype(np.uint16) * 200)).shape == (20, 20, 3)
    del sixteen

    (tmp_path / "text.png").write_text("this is not an image")
    with pytest.raises(BadInput, match="not an image we can read"):
        read_rgb(tmp_path / "text.png")
    with pytest.raises(BadInput, match="at least 16 pixels"):
        read_rgb(_save(tmp_path, "tiny.png", _noise(8, 40)))
    with pytest.raises(BadInput, match="flat colour"):
        read_rgb(_save(tmp_path, "black.png", np.zeros((64, 64, 3), np.uint8)))
    Image.new("1", (7000, 6000)).save(tmp_path / "huge.png")
    with pytest.raises(BadInput, match="megapixels"):
        read_rgb(tmp_path / "huge.png")


@needs_weights
def test_handler_turns_bad_input_into_a_plain_gradio_error(tmp_path):
    import tabs.fgsa as tab

    (tmp_path / "notes.png").write_text("hello")
    with pytest.raises(gr.Error, match="not an image we can read"):
        tab.run(str(tmp_path / "notes.png"), None, "c1", 1, 1, 1, 1, 1, progress=lambda *a, **k: None)
    with pytest.raises(gr.Error, match="between 0 and 4"):
        tab.run(str(ASSETS / "examples" / "00_spectral.png"), None, "c1", 1, 1, 9, 1, 1, progress=lambda *a, **k: None)
    with pytest.raises(gr.Error, match="Run the segmentation first"):
        tab.rerender(None, "c1", 1, 1, 1, 1, 1)


@needs_weights
def test_segment_and_rerender_on_first_example(tmp_path):
    import tabs.fgsa as tab

    example = tab._examples()[0]
    out = tab.run(*example, False, progress=lambda *a, **k: None)
    adapter_img, frozen_img, spectrum, attention, metrics, bands_md, mask_file, status, state = out
    assert adapter_img.shape == (256, 256, 3) and frozen_img.shape == (256, 256, 3)
    assert spectrum.shape[1] == 256 and attention.shape[0] == 192
    assert "Done in" in status and "on CPU" in status
    assert "S-measure" in metrics and "Adapter off" in metrics
    s_values = [float(line.split("|")[2]) for line in metrics.splitlines()[2:]]
    assert all(0 <= v <= 1 for v in s_values) and s_values[0] > 0.6  # the adapter finds the object
    mask = np.asarray(Image.open(mask_file))
    assert mask.shape == (64, 64) and mask.max() > 200 and mask.min() < 50
    assert "rings" in bands_md

    same = tab.rerender(state, example[2], 1, 1, 1, 1, 1)
    np.testing.assert_array_equal(same[0], adapter_img)
    edited = tab.rerender(state, example[2], 0, 0, 0, 0, 0)
    assert np.abs(edited[2].astype(int) - attention.astype(int)).max() > 0  # the attention map moved
    assert "Re-rendered in" in edited[-1]


@needs_weights
def test_suppressing_the_known_bands_degrades_spectral_scenes():
    """On spectral scenes object and background differ only in their frequency band. Zeroing, at
    every FGSAttn site, the user bands that hold those frequencies must visibly break the mask:
    S-measure falls by at least 0.1 and MAE rises by at least 0.03 (the bundled model's figures are
    in the model card: about 0.87 -> 0.59 and 0.06 -> 0.16 over the full held-out set). A band
    that holds no frequency content (DC, inert once the attention's mean is removed) changes
    nothing, and neither does an edit that keeps every learned gain."""
    from adapters.fgsa.data import make_dataset
    from adapters.fgsa.inference import BAND_NAMES, known_band_gains, site_gains
    from adapters.fgsa.loading import load_bundled
    from adapters.fgsa.metrics import sod_metrics

    bundle = load_bundled(ASSETS)
    model = bundle.adapter
    images, masks, _ = make_dataset(2000, 96, ("camouflage", "spectral"), bundle.image_size)
    images, masks = torch.from_numpy(images[1::2]), masks[1::2, 0]  # the spectral half

    def run(gains):
        with torch.no_grad():
            probs = model(images, gains=gains).sigmoid()[:, 0].numpy()
        return probs, sod_metrics(probs, masks, which=("S", "MAE"))

    base_probs, base = run(None)
    known_probs, known = run(known_band_gains(model, None))
    assert base["S"] > 0.8 and base["MAE"] < 0.1
    assert base["S"] - known["S"] >= 0.1, (base, known)
    assert known["MAE"] - base["MAE"] >= 0.03, (base, known)
    assert np.abs(known_probs - base_probs).mean() > 0.05  # the masks themselves change, not only a score
    dc_off = [0.0] + [1.0] * (len(BAND_NAMES) - 1)
    assert run(site_gains(model, "c1", dc_off, all_sites=True))[1]["S"] == pytest.approx(base["S"], abs=2e-3)
    assert run(site_gains(model, "c1", [1.0] * len(BAND_NAMES), all_sites=True))[1]["S"] == pytest.approx(base["S"], abs=1e-9)


@pytest.mark.e2e
@needs_weights
def test_api_returns_a_mask_for_each_example(studio_client):
    from gradio_client import handle_file

    import tabs.fgsa as tab

    for image, mask, site, *bands in tab._examples():
        result = studio_client.predict(handle_file(image), handle_file(mask), site, *bands, False, api_name="/fgsa_segment")
        adapter_img, frozen_img, spectrum, attention, metrics, bands_md, mask_file, status = result
        assert "Done in" in status
        assert "S-measure" in metrics
        predicted = np.asarray(Image.open(mask_file if isinstance(mask_file, str) else mask_file["path"]))
        truth = np.asarray(Image.open(mask).convert("L")) > 127
        assert predicted.shape == truth.shape
        assert predicted.std() > 10  # a mask, not a flat map
        overlay = np.asarray(Image.open(adapter_img))
        assert overlay.shape[:2] == (256, 256)
