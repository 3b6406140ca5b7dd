"""Faults stay in their tab: a bad source setting or a damaged weight file gives that tab a plain
sentence, while the app still builds and the other tabs still load."""
from __future__ import annotations

import shutil

import gradio as gr
import pytest

from studio import loader
from studio.registry import paper_spec


@pytest.fixture
def assets_copy(tmp_path, monkeypatch):
    for key in ("fgsa", "filter2noise"):
        shutil.copytree(loader.ASSETS / key, tmp_path / key)
    monkeypatch.setattr(loader, "ASSETS", tmp_path)
    loader.MODELS.clear()
    yield tmp_path
    loader.MODELS.clear()


def test_a_damaged_weight_file_is_a_plain_error_in_its_tab_only(assets_copy, monkeypatch):
    import app
    import tabs.fgsa as fgsa_tab

    monkeypatch.setenv("STUDIO_MODEL_SOURCE", "bundled")
    weights = assets_copy / "fgsa" / "adapter.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 3])
    assert loader.param_counts(paper_spec("fgsa")) == (0, 0)  # the header is unreadable: no crash
    app.build_demo()  # the whole app still builds
    with pytest.raises(gr.Error) as caught:
        fgsa_tab.run(*fgsa_tab.EXAMPLES[0])
    message = str(caught.value)
    assert "bundled weights for fgsa could not be loaded" in message and str(assets_copy) not in message
    assert loader.MODELS.get(paper_spec("filter2noise")).source == "bundled"  # another tab is unaffected


def test_a_bad_source_setting_is_a_plain_error_in_its_tab_only(assets_copy, monkeypatch):
    import app
    import tabs.fgsa as fgsa_tab

    monkeypatch.setenv("STUDIO_SOURCE_FGSA", "bogus")
    app.build_demo()
    with pytest.raises(gr.Error, match="Unknown model source 'bogus' for fgsa"):
        fgsa_tab.run(*fgsa_tab.EXAMPLES[0])
    assert loader.MODELS.get(paper_spec("filter2noise")).source == "bundled"
    assert "Unknown model source" in loader.source_status(paper_spec("fgsa"))
