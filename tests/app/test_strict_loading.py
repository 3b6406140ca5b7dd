"""Weights load strictly (a key or shape mismatch is an error naming the file's role, never a random
model), and a model that cannot load is a plain sentence in its own tab while the app builds."""
from __future__ import annotations

import gradio as gr
import pytest
import torch

from adapters.common.weights import WeightMismatch, load_strict
from studio import loader
from studio.registry import paper_spec


def test_load_strict_names_the_role_and_refuses_missing_extra_and_reshaped_keys():
    layer = torch.nn.Linear(4, 2)
    good = {k: v.clone() for k, v in layer.state_dict().items()}
    with pytest.raises(WeightMismatch, match=r"The exit adapter weights do not match the model \(1 missing, 1 unexpected"):
        load_strict(layer, {"weight": good["weight"], "typo.bias": good["bias"]}, role="exit adapter")
    with pytest.raises(WeightMismatch, match="size mismatch for weight"):
        load_strict(layer, {"weight": torch.zeros(2, 5), "bias": good["bias"]}, role="exit adapter")
    before = layer.weight.detach().clone()
    with pytest.raises(WeightMismatch):
        load_strict(layer, {"bias": good["bias"]}, role="exit adapter")
    assert torch.equal(layer.weight, before)  # nothing half-loaded
    assert load_strict(layer, good, role="exit adapter") is layer


def test_kangaroo_adapter_file_with_wrong_keys_is_an_error_not_a_random_model(tmp_path):
    from adapters.kangaroo.modeling import load_adapters, save_adapters
    from adapters.kangaroo.testing import tiny_bundle

    bundle = tiny_bundle()
    good = tmp_path / "kangaroo_adapter.safetensors"
    save_adapters(good, bundle.adapters)
    assert set(load_adapters(good, bundle.model)) == set(bundle.adapters)
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(good), framework="pt") as handle:
        meta = handle.metadata()
    renamed = {k.replace("self_attn", "attention"): v for k, v in load_file(str(good)).items()}
    bad = tmp_path / "renamed.safetensors"
    save_file(renamed, str(bad), metadata=meta)
    with pytest.raises(WeightMismatch, match=r"Kangaroo exit adapter \(layer \d, renamed.safetensors\)") as caught:
        load_adapters(bad, bundle.model)
    assert str(tmp_path) not in str(caught.value)


def test_fgsa_adapter_with_wrong_keys_is_an_error():
    from adapters.fgsa.loading import attach
    from adapters.fgsa.testing import tiny_bundle

    bundle = tiny_bundle()
    state = bundle.adapter.adapter_state_dict()
    config = bundle.adapter.config.to_dict()
    first = next(iter(state))
    state[first + "_typo"] = state.pop(first)
    with pytest.raises(WeightMismatch, match="FGSA adapter weights do not match"):
        attach(bundle.adapter.backbone, state, config, model_class=type(bundle.adapter))


def test_loader_tells_a_weight_mismatch_and_a_damaged_file_in_words():
    assert loader.describe_failure(WeightMismatch("The FGSA adapter weights do not match the model (1 missing).")) \
        == "The FGSA adapter weights do not match the model (1 missing)"
    from safetensors.torch import load

    try:
        load(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    except Exception as exc:  # noqa: BLE001 - whatever safetensors raises for a damaged header
        assert loader.describe_failure(exc) == "a weight file is damaged or incomplete"
    assert loader.describe_failure(OSError("/srv/x is not a directory")) == "a file the model needs is missing or unreadable"


@pytest.fixture
def fresh_models():
    loader.MODELS.clear()
    yield
    loader.MODELS.clear()


def test_an_empty_local_directory_is_a_plain_sentence_in_that_tab(fresh_models, monkeypatch, tmp_path):
    import tabs.kangaroo as kangaroo_tab

    monkeypatch.setenv("STUDIO_SOURCE_KANGAROO", "local")
    monkeypatch.setenv("STUDIO_LOCAL_DIR_KANGAROO", str(tmp_path))
    with pytest.raises(gr.Error) as caught:
        kangaroo_tab.run(*kangaroo_tab.EXAMPLES[0][:6])
    message = str(caught.value)
    assert "The local model directory for kangaroo (STUDIO_LOCAL_DIR_KANGAROO) is empty" in message
    assert str(tmp_path) not in message and "unexpectedly" not in message


def test_a_bogus_studio_wide_source_leaves_the_app_building_and_each_tab_saying_so(fresh_models, monkeypatch):
    import app
    import tabs.fgsa as fgsa_tab
    from tabs.about import about_rows

    monkeypatch.setenv("STUDIO_MODEL_SOURCE", "bogus")
    app.build_demo()  # the whole app still builds
    assert len(about_rows()) >= 1  # and the About tab still answers
    with pytest.raises(gr.Error, match="Unknown model source 'bogus' for fgsa: choose one of bundled, hub, local"):
        fgsa_tab.run(*fgsa_tab.EXAMPLES[0])
    monkeypatch.setenv("STUDIO_SOURCE_FGSA", "bundled")  # one tab set right works while the others are wrong
    assert loader.MODELS.get(paper_spec("fgsa")).source == "bundled"
