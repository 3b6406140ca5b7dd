"""The shared model loader: sources, caching, locking, hub fallback, hub layout offline."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from studio import loader
from studio.loader import ModelCache, ModelSourceError, ModelSpec, count_safetensors_params, read_bundled, save_bundled
from tests.hub_layout import install_in_hub_cache

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def tiny_assets(tmp_path, monkeypatch):
    """A bundled model directory for key 'tiny', with ASSETS pointed at tmp_path."""
    monkeypatch.setattr(loader, "ASSETS", tmp_path)
    weights = {"adapter.weight": torch.arange(6.0).reshape(2, 3), "frozen.weight": torch.ones(4, 5)}
    save_bundled(tmp_path / "tiny", weights, {"hidden": 3})
    for name in list(os.environ):
        if name.startswith("STUDIO_") and ("SOURCE" in name or "LOCAL" in name or "HUB_ID" in name):
            monkeypatch.delenv(name)
    monkeypatch.delenv("SPACE_ID", raising=False)
    return tmp_path / "tiny"


def bundled_loader(directory):
    tensors, config = read_bundled(directory)
    return {"tensors": tensors, "config": config, "from": "bundled"}


def test_bundled_roundtrip_and_header_counts(tiny_assets):
    tensors, config = read_bundled(tiny_assets)
    assert config == {"hidden": 3}
    assert torch.equal(tensors["adapter.weight"], torch.arange(6.0).reshape(2, 3))
    path = tiny_assets / "model.safetensors"
    assert count_safetensors_params(path) == 26
    assert count_safetensors_params(path, ("adapter.",)) == 6


def test_default_source_is_bundled_off_a_space_and_hub_on_one(tiny_assets, monkeypatch):
    spec = ModelSpec("tiny", hub_id="org/tiny", load_bundled=bundled_loader)
    assert loader.requested_source(spec) == "bundled"
    monkeypatch.setenv("SPACE_ID", "someone/adapter-studio")
    assert loader.requested_source(spec) == "hub"
    monkeypatch.setenv("STUDIO_MODEL_SOURCE", "local")
    assert loader.requested_source(spec) == "local"
    monkeypatch.setenv("STUDIO_SOURCE_TINY", "bundled")  # per-model setting wins
    assert loader.requested_source(spec) == "bundled"
    monkeypatch.setenv("STUDIO_SOURCE_TINY", "cloud")
    with pytest.raises(ModelSourceError, match="Unknown model source 'cloud'"):
        loader.requested_source(spec)


def test_loads_once_even_under_concurrent_requests(tiny_assets):
    calls = []

    def slow_loader(directory):
        calls.append(threading.get_ident())
        time.sleep(0.3)
        return bundled_loader(directory)

    cache = ModelCache()
    spec = ModelSpec("tiny", load_bundled=slow_loader)
    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.get(spec))) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert len(results) == 6 and all(r is results[0] for r in results)
    assert results[0].source == "bundled" and results[0].notice is None
    assert cache.loaded("tiny") is results[0]


def test_unreachable_hub_falls_back_to_bundled_with_a_plain_message(tiny_assets, monkeypatch):
    def hub_loader(repo):
        from huggingface_hub.errors import LocalEntryNotFoundError

        raise LocalEntryNotFoundError("Cannot find the requested files in the disk cache and outgoing traffic has been disabled.")

    monkeypatch.setenv("STUDIO_MODEL_SOURCE", "hub")
    loaded = ModelCache().get(ModelSpec("tiny", hub_id="org/tiny", load_bundled=bundled_loader, load_hub=hub_loader))
    assert loaded.source == "bundled" and loaded.requested == "hub"
    assert loaded.value["from"] == "bundled"
    assert "Could not load 'org/tiny' from the Hugging Face Hub" in loaded.notice
    assert "cannot be reached" in loaded.notice and "using the bundled model instead" in loaded.notice
    assert "Traceback" not in loaded.notice


def test_local_source_uses_the_hub_loader_on_a_directory(tiny_assets, tmp_path, monkeypatch):
    local = tmp_path / "elsewhere"
    save_bundled(local, {"w": torch.zeros(3)}, {"kind": "local"})
    seen = []

    def hub_loader(repo_or_dir):
        seen.append(repo_or_dir)
        return read_bundled(Path(loader.resolve_file(repo_or_dir, "model.json")).parent)

    monkeypatch.setenv("STUDIO_SOURCE_TINY", "local")
    spec = ModelSpec("tiny", hub_id="org/tiny", load_bundled=bundled_loader, load_hub=hub_loader)
    with pytest.raises(ModelSourceError, match="STUDIO_LOCAL_DIR_TINY"):
        ModelCache().get(spec)
    monkeypatch.setenv("STUDIO_LOCAL_DIR_TINY", str(local))
    loaded = ModelCache().get(spec)
    assert loaded.source == "local" and seen == [str(local)]
    assert loaded.value[1] == {"kind": "local"}
    with pytest.raises(FileNotFoundError, match="missing.json is missing"):
        loader.resolve_file(str(local), "missing.json")


def test_missing_bundled_weights_name_the_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(loader, "ASSETS", tmp_path)
    with pytest.raises(ModelSourceError, match="bundled weights for ghost are missing"):
        ModelCache().get(ModelSpec("ghost", load_bundled=bundled_loader))


HUB_SNIPPET = r"""
import json, sys
from studio.loader import ModelCache, ModelSpec, resolve_file
def load_hub(repo):
    return json.load(open(resolve_file(repo, "config.json")))
loaded = ModelCache().get(ModelSpec("tiny", hub_id=sys.argv[1], load_hub=load_hub))
print(loaded.source, loaded.location, loaded.value["hidden"])
"""


def test_hub_id_resolves_through_hf_hub_download_from_a_hub_layout_cache(tmp_path):
    """The real `hf_hub_download` path, offline: a cache in hub layout answers for the hub id."""
    files = tmp_path / "files"
    files.mkdir()
    (files / "config.json").write_text('{"hidden": 7}')
    cache = tmp_path / "hub-cache"
    install_in_hub_cache(cache, "studio-test/tiny", files)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(cache), STUDIO_MODEL_SOURCE="hub", PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", HUB_SNIPPET, "studio-test/tiny"], env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["hub", "studio-test/tiny", "7"]
