"""The camouflage and image-to-video tabs' reader-study kinds on their real bundled models: every
variant of a bundled case is made by the tab's own device entry, the adapter's variant differs from
the baseline's, and each display draws what it says."""
from __future__ import annotations

import numpy as np
import pytest

from studio.device import configure_threads
from studio.study import reading
from studio.study.design import StudyDesign
from studio.study.fgsa import FGSA
from studio.study.fgsa import WINDOWS as FGSA_WINDOWS
from studio.study.fgsa import display as fgsa_display
from studio.study.i2v import I2V
from studio.study.i2v import WINDOWS as I2V_WINDOWS
from studio.study.i2v import display as i2v_display
from studio.study.store import StudyStore


def test_the_mask_displays_draw_the_mask_over_the_same_picture():
    picture = np.full((20, 20, 3), 0.5, np.float32)
    prob = np.zeros((20, 20), np.float32)
    prob[5:15, 5:15] = 0.9
    pixels = np.dstack([picture, prob])
    outline = fgsa_display(pixels, FGSA_WINDOWS[0])
    yellow = np.all(outline == [255, 230, 0], axis=-1)
    assert yellow[5, 5:15].all() and yellow[14, 5:15].all() and not yellow[9, 9] and not yellow[0, 0]
    assert np.all(fgsa_display(pixels, FGSA_WINDOWS[3]) == 128)
    tinted = fgsa_display(pixels, FGSA_WINDOWS[1])
    assert tinted[10, 10, 0] > 180 > tinted[10, 10, 1] and np.all(tinted[0, 0] == 128)
    assert fgsa_display(pixels, FGSA_WINDOWS[2])[10, 10, 0] == 230


def test_the_video_displays_show_every_frame_or_the_change():
    video = np.zeros((8, 4, 4, 3), np.float32)
    for f in range(8):
        video[f, :, :] = f / 7
    grid = i2v_display(video, I2V_WINDOWS[0])
    assert grid.shape == (4 * 2 + 2, 4 * 4 + 3 * 2, 3)
    assert grid[0, 0, 0] == 0 and grid[-1, -1, 0] == 255  # first frame top left, last bottom right
    three = i2v_display(video, I2V_WINDOWS[1])
    assert three.shape == (4, 3 * 4 + 2 * 2, 3) and three[0, 6, 0] == round(4 / 7 * 255)
    change = i2v_display(video, I2V_WINDOWS[2])
    assert change[0, 0, 0] == 128 and change[-1, -1, 0] == 255


@pytest.mark.slow
@pytest.mark.parametrize("kind, question", [(FGSA, "coverage"), (I2V, "motion")])
def test_a_study_of_each_kind_is_made_by_the_tab_and_read_blinded(tmp_path, kind, question):
    configure_threads()  # one thread, as the app runs: two threads on a shared 2-core box are many times slower
    reading.register(kind)
    store = StudyStore(str(tmp_path / "studies.sqlite"))
    settings = kind.settings_from(None, "moving right" if kind.text_setting else None)
    cases = kind.bundled_cases(2, 0)
    design = StudyDesign(name="Kinds", kind=kind.key, variants=tuple(v.key for v in kind.variants),
                         criteria=(question,), preference=True, source={"type": "bundled", "count": 2, "crop": 0},
                         settings=settings)
    code, _, _ = reading.create_study(store, kind, design, cases)
    variants = reading.variants_of(store, kind, code, store.study(code)[2][0])
    first, second = (variants[v.key] for v in kind.variants)
    # the adapter changes what the reader sees: masks (probability channel) or videos differ
    assert np.abs(first - second).mean() > 0.01
    item = reading.next_item(store, code, "R1", kind.windows[0])
    assert item.total == 2 and len(item.images) == 2 and all(image.dtype == np.uint8 for image in item.images)
    names = " ".join(v.name for v in kind.variants)
    assert not any(word in item.letters for word in names.split())
