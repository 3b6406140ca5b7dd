"""The shared image reader: conversions and plain refusals."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from adapters.common.errors import BadInput
from adapters.common.imaging import read_rgb_image


def test_conversions(tmp_path):
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:10, :, 3] = 255  # top half opaque red, bottom half transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    rgb = read_rgb_image(tmp_path / "a.png")
    assert rgb.shape == (20, 30, 3) and rgb.dtype == np.uint8
    assert (rgb[:10] == [200, 0, 0]).all() and (rgb[10:] == 255).all()
    deep = (np.arange(400, dtype=np.uint16).reshape(20, 20) * 100)
    Image.fromarray(deep).save(tmp_path / "d.png")
    grey = read_rgb_image(tmp_path / "d.png")
    assert grey[0, 0].tolist() == [0, 0, 0] and grey[-1, -1].tolist() == [255, 255, 255]
    assert (grey[..., 0] == grey[..., 2]).all()


@pytest.mark.parametrize("make, message", [
    (lambda p: None, "No image was given"),
    (lambda p: str(p / "missing.png"), "could not be found"),
    (lambda p: (p / "x.png").write_text("not a png") and p / "x.png", "'x.png' is not an image we can read"),
    (lambda p: Image.new("RGB", (8, 40)).save(p / "t.png") or p / "t.png", "8x40 pixels: too small"),
    (lambda p: Image.new("1", (9000, 20)).save(p / "w.png") or p / "w.png", "9000x20 pixels: too large"),
])
def test_refusals(tmp_path, make, message):
    with pytest.raises(BadInput, match=message):
        read_rgb_image(make(tmp_path))


def test_file_size_limit(tmp_path):
    Image.new("RGB", (64, 64)).save(tmp_path / "s.png")
    with pytest.raises(BadInput, match="the limit is 0 MB"):
        read_rgb_image(tmp_path / "s.png", max_file_bytes=10)
