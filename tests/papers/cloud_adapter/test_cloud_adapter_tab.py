"""Cloud-Adapter tab on the bundled model: an upload smaller than a tile is enlarged and, without
simulated clouds, has no mask to score; a larger upload is tiled; a huge one is refused."""
from __future__ import annotations

import gradio as gr
import numpy as np
import pytest
import torch
from PIL import Image

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def bundled(monkeypatch):
    monkeypatch.setenv("STUDIO_MODEL_SOURCE", "bundled")


def _png(tmp_path, h, w, name="tile.png"):
    rng = np.random.default_rng(0)
    path = tmp_path / name
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
    return str(path)


def test_small_upload_without_clouds_is_enlarged_and_has_no_mask(tmp_path):
    import tabs.cloud_adapter as tab

    out = tab.run(tab.UPLOAD, _png(tmp_path, 60, 80), False, 0.3, 0.9, 0.5, 10, 0, 1.0)
    clouded, on, off, metrics, context, update, mask_file, status = out
    assert "Enlarged from 80x60 to 149x112" in status and "Done in" in status and "2 tile(s)" in status
    assert "No known mask" in metrics
    mask = np.asarray(Image.open(mask_file))
    assert mask.shape == (112, 149) and mask.max() <= 3


def test_clouded_upload_is_scored_per_class(tmp_path):
    import tabs.cloud_adapter as tab

    out = tab.run(tab.UPLOAD, _png(tmp_path, 112, 112), True, 0.5, 0.9, 0.5, 12, 3, 1.0)
    assert "mIoU" in out[3] and "Adapter off: frozen backbone + head" in out[3]


def test_an_upload_larger_than_the_limit_is_refused(tmp_path):
    import tabs.cloud_adapter as tab

    with pytest.raises(gr.Error, match="too large"):
        tab.run(tab.UPLOAD, _png(tmp_path, 1100, 200), False, 0.3, 0.9, 0.5, 10, 0, 1.0)
