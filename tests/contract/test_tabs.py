"""Every paper tab: its first example crosses the device boundary as pickled plain data, its bad
inputs are refused with a plain sentence before any device work, and its bundled model loads with
the parameter counts its file headers promise."""
from __future__ import annotations

import gradio as gr
import pytest

from studio import device
from studio.loader import MODELS, bundled_dir, loading_module
from tests.contract.conftest import spec_of


def test_tab_declares_the_contract(key, tab):
    info = tab.INFO
    assert info.paper is spec_of(key) and info.key == key
    assert info.api_names and callable(tab.run) and callable(tab.build)
    assert tab.EXAMPLES and tab.BAD_INPUTS
    paper = info.paper
    assert paper.paper and paper.paper_url.startswith("http") and paper.frozen_model and paper.adapter and paper.real


def test_bundled_model_loads_and_header_counts_equal_loaded_counts(key, monkeypatch):
    monkeypatch.setenv("STUDIO_MODEL_SOURCE", "bundled")
    spec = spec_of(key)
    headers = loading_module(spec).header_param_counts(bundled_dir(spec))
    loaded = MODELS.get(spec)
    assert loaded.source == "bundled" and loaded.notice is None
    assert tuple(loaded.value.param_counts()) == tuple(headers)
    assert headers[0] > 0


def test_first_example_runs_through_the_pickled_device_boundary(key, tab, monkeypatch):
    monkeypatch.setenv("STUDIO_MODEL_SOURCE", "bundled")
    monkeypatch.setenv("STUDIO_CHECK_BOUNDARY", "1")
    with device.recording_calls() as calls:
        out = tab.run(*tab.EXAMPLES[0])
    assert calls, f"{key}: the first example made no device call"
    assert all(pickled for *_, pickled in calls)
    text = " ".join(str(o) for o in (out if isinstance(out, (tuple, list)) else [out]))
    assert "Done in" in text


@pytest.mark.parametrize("index", range(4))
def test_bad_inputs_are_refused_before_device_work(key, tab, index, monkeypatch):
    monkeypatch.setenv("STUDIO_MODEL_SOURCE", "bundled")
    if index >= len(tab.BAD_INPUTS):
        pytest.skip("fewer bad-input rows")
    row, words = tab.BAD_INPUTS[index]
    with device.recording_calls() as calls, pytest.raises(gr.Error) as caught:
        tab.run(*row)
    assert words in str(caught.value.message if hasattr(caught.value, "message") else caught.value)
    assert not calls, f"{key}: device work ran before the input was refused"
    assert "/tmp" not in str(caught.value) and "Traceback" not in str(caught.value)
