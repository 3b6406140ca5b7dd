"""The Reader study tab's handlers refuse what they cannot use with a plain sentence, before any
device work, and unblind for the study owner only."""
from __future__ import annotations

from pathlib import Path

import gradio as gr
import pytest

from studio import device
from studio.study import reading
from studio.study.store import StudyStore
from tabs import study as tab

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "filter2noise"
QUESTIONS = ["Noise", "Diagnostic acceptability"]


def create_row(**changes):
    row = dict(name="A study", kind_title=tab.CT.title, source=tab.SOURCES[0], files=None, count=10,
               crop="64 px tiles", iterations=10, criteria=QUESTIONS, preference=True, keep_images=False)
    row.update(changes)
    return row


@pytest.mark.parametrize("changes, words", [
    (dict(name="  "), "Give the study a name"),
    (dict(criteria=[], preference=False), "at least one question"),
    (dict(source=tab.SOURCES[1]), "Upload the cases"),
    (dict(source=tab.SOURCES[1], files=[str(ASSETS / "MODEL_CARD.template.md")]), "not a file the CT tab can read"),
    (dict(count=41), "1 to 40 bundled cases"),
    (dict(crop="Whole slice"), "pick a crop size for more cases"),
    (dict(iterations=5), "between 10 and 500"),
    (dict(source=tab.SOURCES[1], files=["SERIES"], crop="Whole slice", iterations=500), "would take about"),
])
def test_create_refuses_bad_settings_before_device_work(tmp_path, monkeypatch, changes, words):
    monkeypatch.setenv("STUDIO_STUDY_DB", str(tmp_path / "s.sqlite"))
    if changes.get("files") == ["SERIES"]:  # 40 whole 256 px slices at 500 iterations: over the time limit
        import numpy as np

        np.save(tmp_path / "series.npy", np.repeat(np.load(ASSETS / "phantom_I0_1e4.npy")[None], 40, axis=0))
        changes = dict(changes, files=[str(tmp_path / "series.npy")])
    with device.recording_calls() as calls, pytest.raises(gr.Error) as caught:
        tab.create(**create_row(**changes))
    assert words in str(caught.value.message) and "/tmp" not in str(caught.value.message)
    assert not calls


def test_the_preparation_time_is_stated_before_it_starts():
    text = tab.estimate_text(tab.CT.title, tab.SOURCES[0], 10, "64 px tiles", 100)
    seconds = float(text.split("takes about ")[1].split(" s")[0])
    assert 10 * 3 < seconds < 10 * 8 and "limit" not in text
    longer = tab.estimate_text(tab.CT.title, tab.SOURCES[0], 10, "64 px tiles", 400)
    assert float(longer.split("takes about ")[1].split(" s")[0]) > 3 * seconds


def test_a_series_upload_gives_one_case_per_frame(tmp_path):
    import numpy as np

    from studio.study import ct

    stack = np.stack([np.load(ASSETS / "phantom_I0_1e4.npy")[i * 8:i * 8 + 64, :64] for i in range(5)])
    np.save(tmp_path / "series.npy", stack)
    cases = ct.load_cases(str(tmp_path / "series.npy"), 32)
    assert len(cases) == 5 and all(c.shape == (32, 32) for c in cases)
    assert np.array_equal(cases[2], stack[2, 16:48, 16:48])


def test_reading_needs_a_known_study_and_a_reader_code_and_results_need_the_owner_key(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_STUDY_DB", str(tmp_path / "s.sqlite"))
    from tests.study.test_study_core import FAKE, _bundled, design

    code, owner, _ = reading.create_study(StudyStore(), FAKE, design(), _bundled(10, 16))
    for args, words in (((" ", "R1"), "Enter the study code"), (("nope", "R1"), "No study has that code"),
                        ((code, "Dr No"), "reader code")):
        with pytest.raises(gr.Error, match=words):
            tab.start(*args, "plain", tab.VIEWS[0])
    # a display another kind offers falls back to this kind's own, and the reader's list follows the study
    out = tab.start(code, "R1", "Mask alone", tab.VIEWS[0])
    *out, window = out
    assert window["choices"] == ["plain"] and window["value"] == "plain"
    assert "Case 1 of 10" in out[0] and out[-1]["letters"] == tuple("ABCD")
    # another window redraws the same case's images and leaves the ticked ratings alone
    redrawn = tab.rewindow("plain", tab.VIEWS[0], out[-1])
    assert len(redrawn) == tab.MAX_VARIANTS + 2 and redrawn[-1]["case"] == out[-1]["case"]
    assert tab.rewindow("plain", tab.VIEWS[0], None) == [gr.skip()] * (tab.MAX_VARIANTS + 2)
    with pytest.raises(gr.Error, match="owner only"):
        tab.results(code, "not the key")
    text, plot, files = tab.results(code, owner)
    assert "No ratings yet" in text and plot is None and files == []


def test_each_kind_brings_its_own_questions_case_sizes_files_and_settings():
    from studio.study.fgsa import FGSA
    from studio.study.i2v import I2V

    kinds = tab._kinds()
    assert {tab.CT.title, FGSA.title, I2V.title} <= set(kinds)
    questions, crops, files, number, text, count = tab.kind_controls(FGSA.title)
    assert questions["choices"] == ["How much of the hidden object the mask covers", "Background left unmarked",
                                    "Boundary follows the object's outline"]
    assert crops["choices"] == ["Whole image"] and number["visible"] is False and text["visible"] is False
    assert ".npy" not in files["file_types"] and "held-out scenes" in count["label"]
    questions, crops, files, number, text, count = tab.kind_controls(I2V.title)
    assert "Motion as asked" in questions["choices"] and text["visible"] and text["value"] == "the scene moves right slowly"
    questions, crops, files, number, text, count = tab.kind_controls(tab.CT.title)
    assert "Noise" in questions["choices"] and number["visible"] and number["value"] == 100 and "64 px tiles" in crops["choices"]
    # the estimate for FGSA's scenes is stated without making them
    assert "about 20 s" in tab.estimate_text(FGSA.title, tab.SOURCES[0], 10, "Whole image", 0, None)


@pytest.mark.parametrize("changes, words", [
    (dict(crop="64 px tiles"), "Pick a case size: Whole image"),
    (dict(criteria=["Noise"], preference=False), "at least one question"),
])
def test_a_camouflage_study_refuses_what_its_kind_does_not_have(tmp_path, monkeypatch, changes, words):
    from studio.study.fgsa import FGSA

    monkeypatch.setenv("STUDIO_STUDY_DB", str(tmp_path / "s.sqlite"))
    with device.recording_calls() as calls, pytest.raises(gr.Error, match=words):
        tab.create(**create_row(**{"kind_title": FGSA.title, "crop": "Whole image", **changes}))
    assert not calls


def test_a_video_study_needs_a_prompt(tmp_path, monkeypatch):
    from studio.study.i2v import I2V

    monkeypatch.setenv("STUDIO_STUDY_DB", str(tmp_path / "s.sqlite"))
    for text in ("", "x" * 500, "moving\x00right"):
        with device.recording_calls() as calls, pytest.raises(gr.Error, match="Prompt for every case"):
            tab.create(**create_row(kind_title=I2V.title, crop="Whole image", text=text,
                                    criteria=["Motion as asked"]))
        assert not calls
