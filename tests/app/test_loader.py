"""The shared model loader: sources, hub parts, caching, locking, LRU bound, hub fallback, hub
layout offline."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from adapters.common.contract import HubPart, PaperSpec
from adapters.common.weights import count_safetensors_params, read_bundled, resolve_file, save_bundled
from studio import loader
from studio.loader import ModelCache, ModelSourceError
from tests.hub_layout import install_in_hub_cache

REPO = Path(__file__).resolve().parents[2]


def spec(key="tiny", hub=(HubPart("frozen", "org/tiny-frozen", "tiny frozen model"),
                          HubPart("adapter", "org/tiny-adapter", "tiny adapter"))):
    return PaperSpec(key=key, title="Tiny", paper="p", paper_url="https://example.org", official_code="",
                     frozen_model="f", adapter="a", real="r", description="d", hub=tuple(hub))


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """A bundled model directory for key 'tiny' and a fake `adapters.tiny.loading` that records calls."""
    monkeypatch.setattr(loader, "ASSETS", tmp_path)
    weights = {"adapter.weight": torch.arange(6.0).reshape(2, 3), "frozen.weight": torch.ones(4, 5)}
    save_bundled(tmp_path / "tiny", weights, {"hidden": 3})
    for name in list(os.environ):
        if name.startswith("STUDIO_") and any(w in name for w in ("SOURCE", "LOCAL", "HUB", "MAX_LOADED")):
            monkeypatch.delenv(name)
    monkeypatch.delenv("SPACE_ID", raising=False)
    calls = SimpleNamespace(bundled=[], hub=[])

    def load_bundled(directory):
        calls.bundled.append(directory)
        tensors, config = read_bundled(directory)
        return SimpleNamespace(tensors=tensors, config=config, origin="bundled", param_counts=lambda: (6, 20))

    def load_hub(parts):
        calls.hub.append(dict(parts))
        return SimpleNamespace(origin="hub", parts=dict(parts), param_counts=lambda: (1, 2))

    module = SimpleNamespace(load_bundled=load_bundled, load_hub=load_hub, header_param_counts=lambda d: (6, 20))
    monkeypatch.setattr(loader, "loading_module", lambda s: module)
    return SimpleNamespace(dir=tmp_path / "tiny", calls=calls, module=module)


def test_bundled_roundtrip_and_header_counts(tiny):
    tensors, config = read_bundled(tiny.dir)
    assert config == {"hidden": 3}
    assert torch.equal(tensors["adapter.weight"], torch.arange(6.0).reshape(2, 3))
    path = tiny.dir / "model.safetensors"
    assert count_safetensors_params(path) == 26
    assert count_safetensors_params(path, ("adapter.",)) == 6


def test_default_source_is_bundled_off_a_space_and_hub_on_one(tiny, monkeypatch):
    s = spec()
    assert loader.requested_source(s) == "bundled"
    monkeypatch.setenv("SPACE_ID", "someone/adapter-studio")
    assert loader.requested_source(s) == "hub"
    monkeypatch.setenv("STUDIO_MODEL_SOURCE", "local")
    assert loader.requested_source(s) == "local"
    monkeypatch.setenv("STUDIO_SOURCE_TINY", "bundled")  # per-tab setting wins
    assert loader.requested_source(s) == "bundled"
    monkeypatch.setenv("STUDIO_SOURCE_TINY", "cloud")
    with pytest.raises(ModelSourceError, match="Unknown model source 'cloud'"):
        loader.requested_source(s)


def test_hub_parts_are_passed_by_role_and_each_can_be_overridden(tiny, monkeypatch):
    monkeypatch.setenv("STUDIO_MODEL_SOURCE", "hub")
    monkeypatch.setenv("STUDIO_HUB_TINY_ADAPTER", "me/my-adapter")
    loaded = ModelCache().get(spec())
    assert loaded.source == "hub" and loaded.notice is None
    assert tiny.calls.hub == [{"frozen": "org/tiny-frozen", "adapter": "me/my-adapter"}]
    assert loaded.location == "org/tiny-frozen, me/my-adapter"


def test_an_unpublished_part_makes_the_hub_unavailable_before_any_load(tiny, monkeypatch):
    monkeypatch.setenv("STUDIO_MODEL_SOURCE", "hub")
    s = spec(hub=(HubPart("frozen", "org/big", "big frozen model"),
                  HubPart("adapter", None, "tiny adapter for the big model", unpublished="nobody trained one")))
    reason = loader.hub_unavailable(s)
    assert "no tiny adapter for the big model is published" in reason and "STUDIO_HUB_TINY_ADAPTER" in reason
    loaded = ModelCache().get(s)
    assert tiny.calls.hub == [] and loaded.source == "bundled" and loaded.requested == "hub"
    assert "nobody trained one" in loaded.notice and "Using the bundled model" in loaded.notice
    assert "unavailable" in loader.source_status(s)


def test_loads_once_even_under_concurrent_requests(tiny, monkeypatch):
    original = tiny.module.load_bundled

    def slow(directory):
        time.sleep(0.3)
        return original(directory)

    monkeypatch.setattr(tiny.module, "load_bundled", slow)
    cache = ModelCache()
    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.get(spec()))) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(tiny.calls.bundled) == 1
    assert len(results) == 6 and all(r is results[0] for r in results)
    assert results[0].source == "bundled" and results[0].notice is None and results[0].location == "assets/tiny"
    assert cache.loaded("tiny") is results[0]


def test_max_loaded_models_drops_the_least_recently_used(tiny, tmp_path, monkeypatch):
    for key in ("one", "two", "three"):
        save_bundled(tmp_path / key, {"w": torch.zeros(2)}, {})
    monkeypatch.setenv("STUDIO_MAX_LOADED_MODELS", "2")
    cache = ModelCache()
    one, two, three = spec("one"), spec("two"), spec("three")
    cache.get(one)
    cache.get(two)
    cache.get(one)  # "one" is now the most recently used
    cache.get(three)
    assert cache.loaded("two") is None and cache.loaded("one") and cache.loaded("three")
    cache.get(two)
    assert len(tiny.calls.bundled) == 4 and cache.loaded("one") is None


def test_unreachable_hub_falls_back_to_bundled_with_a_plain_message(tiny, monkeypatch):
    def hub_loader(parts):
        from huggingface_hub.errors import LocalEntryNotFoundError

        raise LocalEntryNotFoundError("Cannot find the requested files in the disk cache and outgoing traffic has been disabled.")

    monkeypatch.setattr(tiny.module, "load_hub", hub_loader)
    monkeypatch.setenv("STUDIO_MODEL_SOURCE", "hub")
    loaded = ModelCache().get(spec())
    assert loaded.source == "bundled" and loaded.requested == "hub" and loaded.value.origin == "bundled"
    assert "Could not load org/tiny-frozen, org/tiny-adapter from the Hugging Face Hub" in loaded.notice
    assert "cannot be reached" in loaded.notice and "using the bundled model instead" in loaded.notice
    assert "Traceback" not in loaded.notice


def test_local_source_gives_each_part_its_subdirectory(tiny, tmp_path, monkeypatch):
    local = tmp_path / "elsewhere"
    (local / "base").mkdir(parents=True)
    s = spec(hub=(HubPart("frozen", "org/f", "f", local_subdir="base"), HubPart("adapter", "org/a", "a")))
    monkeypatch.setenv("STUDIO_SOURCE_TINY", "local")
    with pytest.raises(ModelSourceError, match="STUDIO_LOCAL_DIR_TINY"):
        ModelCache().get(s)
    monkeypatch.setenv("STUDIO_LOCAL_DIR_TINY", str(local))
    loaded = ModelCache().get(s)
    assert loaded.source == "local" and str(local) not in loaded.location
    assert tiny.calls.hub == [{"frozen": str(local / "base"), "adapter": str(local)}]
    with pytest.raises(FileNotFoundError, match="missing.json is missing"):
        resolve_file(str(local), "missing.json")


def test_a_broken_local_directory_is_a_plain_error(tiny, tmp_path, monkeypatch):
    def broken(parts):
        raise OSError("no config.json in /srv/secret/path")

    monkeypatch.setattr(tiny.module, "load_hub", broken)
    monkeypatch.setenv("STUDIO_SOURCE_TINY", "local")
    monkeypatch.setenv("STUDIO_LOCAL_DIR_TINY", str(tmp_path))
    with pytest.raises(ModelSourceError) as caught:
        ModelCache().get(spec())
    message = str(caught.value)
    assert "could not be loaded (a file the model needs is missing or unreadable)" in message and "/srv" not in message


def test_missing_bundled_weights_name_the_fix(tiny):
    with pytest.raises(ModelSourceError, match="bundled weights for ghost are missing"):
        ModelCache().get(spec("ghost"))


def test_param_counts_come_from_headers_until_loaded(tiny):
    s = spec()
    loader.MODELS.clear("tiny")
    assert loader.param_counts(s) == (6, 20)


HUB_SNIPPET = r"""
import json, sys
from adapters.common.weights import resolve_file
print(json.load(open(resolve_file(sys.argv[1], "config.json")))["hidden"])
"""


def test_hub_id_resolves_through_hf_hub_download_from_a_hub_layout_cache(tmp_path):
    """The real `hf_hub_download` path, offline: a cache in hub layout answers for the hub id."""
    files = tmp_path / "files"
    files.mkdir()
    (files / "config.json").write_text('{"hidden": 7}')
    cache = tmp_path / "hub-cache"
    install_in_hub_cache(cache, "studio-test/tiny", files)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(cache), PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", HUB_SNIPPET, "studio-test/tiny"], env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["7"]


def test_a_wrapped_hub_error_is_still_described_plainly():
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        try:
            raise LocalEntryNotFoundError("outgoing traffic has been disabled")
        except LocalEntryNotFoundError as inner:
            raise OSError("Error no file named diffusion_pytorch_model.bin found in /srv/x") from inner
    except OSError as outer:
        assert loader.describe_failure(outer) == "the Hugging Face Hub cannot be reached from this machine"
    assert loader.describe_failure(KeyError("x")) == "KeyError"


def test_a_part_this_repository_ships_comes_from_its_assets_on_every_source(tiny, tmp_path, monkeypatch):
    s = spec(hub=(HubPart("frozen", "org/real-model", "real frozen model"),
                  HubPart("adapter", None, "adapter trained here", bundled=True)))
    assert loader.hub_unavailable(s) is None
    monkeypatch.setenv("STUDIO_MODEL_SOURCE", "hub")
    loaded = ModelCache().get(s)
    assert tiny.calls.hub == [{"frozen": "org/real-model", "adapter": str(tiny.dir)}]
    assert loaded.location == "org/real-model, assets/tiny"
    monkeypatch.setenv("STUDIO_MODEL_SOURCE", "local")
    monkeypatch.setenv("STUDIO_LOCAL_DIR_TINY", str(tmp_path))
    ModelCache().get(s)
    assert tiny.calls.hub[-1] == {"frozen": str(tmp_path), "adapter": str(tiny.dir)}
    monkeypatch.setenv("STUDIO_HUB_TINY_ADAPTER", "me/other-adapter")
    assert loader.hub_parts(s)["adapter"] == "me/other-adapter"
