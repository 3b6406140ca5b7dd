"""The GLARE tab's own pieces: an upload smaller than a tile is enlarged and said so, an elongated one
is refused in plain words, example windows carry real labels, and the measured curve is drawn."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from adapters.common.errors import BadInput


def test_small_upload_is_enlarged_and_elongated_one_refused(tmp_path):
    from tabs import glare

    small = tmp_path / "small.png"
    Image.fromarray(np.full((60, 80, 3), 120, np.uint8)).save(small)
    image, labels, note = glare._image(glare.UPLOAD, str(small))
    assert labels is None and min(image.shape[:2]) == 112 and "Enlarged from 80x60" in note
    assert image.dtype == np.float32 and 0 <= image.min() <= image.max() <= 1
    long = tmp_path / "long.png"
    Image.fromarray(np.zeros((40, 400, 3), np.uint8)).save(long)
    with pytest.raises(BadInput, match="too elongated"):
        glare._image(glare.UPLOAD, str(long))


def test_example_windows_hold_real_labels_of_several_classes():
    from adapters.glare.data import WINDOW_ROWS, heldout_window

    for i in range(len(WINDOW_ROWS)):
        rgb, labels = heldout_window(i)
        assert rgb.shape[:2] == labels.shape and rgb.shape[2] == 3
        assert (labels > 0).sum() > 100 and len(np.unique(labels[labels > 0])) >= 2


def test_curve_is_drawn_with_its_spread(tmp_path):
    from adapters.glare import viz

    curve = {"frozen": {"fractions": [0.01, 0.05, 0.2, 1.0], "mean": [0.16, 0.2, 0.21, 0.21], "sd": [0.02, 0.01, 0.01, 0.0], "seeds": 3},
             "global": {"fractions": [0.01, 0.05, 0.2, 1.0], "mean": [0.18, 0.21, 0.2, 0.2], "sd": [0.03, 0.02, 0.01, 0.0], "seeds": 3}}
    path = viz.curve_png(curve, tmp_path / "curve.png")
    picture = np.asarray(Image.open(path).convert("RGB"))
    assert picture.shape[0] > 200 and picture.shape[1] > 300
    assert viz.curve_png({}, tmp_path / "none.png") is None
