"""The hub source, offline: a paper with an unpublished part downloads nothing at all (a counting
stub stands in for every hub download function) and says why; overriding the part makes it
available; a published stack that cannot be reached falls back to the bundled model with a plain
notice and no server path."""
from __future__ import annotations

import sys

import pytest

from studio import loader, settings
from tests.contract.conftest import spec_of


@pytest.fixture
def counted_downloads(monkeypatch):
    import diffusers  # noqa: F401  (import the libraries first so their own references are patched)
    import huggingface_hub
    import transformers  # noqa: F401

    calls = []

    def stub(*args, **kwargs):
        calls.append((args, kwargs))
        raise huggingface_hub.errors.LocalEntryNotFoundError("offline (counting stub)")

    originals = {huggingface_hub.hf_hub_download, huggingface_hub.snapshot_download}
    for module in list(sys.modules.values()):
        for name in ("hf_hub_download", "snapshot_download", "cached_file", "cached_files"):
            if module is not None and getattr(module, name, None) in originals:
                monkeypatch.setattr(module, name, stub)
    # no HF_HUB_OFFLINE: offline mode could short-circuit before a download function is called, and
    # then "no download was started" would prove nothing. The stub refuses every call instead.
    return calls


def test_an_unpublished_part_means_no_download_and_a_reason(key, counted_downloads, monkeypatch):
    spec = spec_of(key)
    monkeypatch.setenv(f"STUDIO_SOURCE_{key.upper()}", "hub")
    reason = loader.hub_unavailable(spec)
    if not spec.hub:
        assert reason is None
        loaded = loader.ModelCache().get(spec)
        assert loaded.source == "bundled" and not counted_downloads
        return
    unpublished = [p for p in spec.hub if p.repo is None and not p.bundled]
    if not unpublished:
        assert reason is None
        pytest.skip(f"{key}: every hub part is published")
    assert reason and unpublished[0].what in reason
    assert settings.hub_override_name(key, unpublished[0].role) in reason
    loaded = loader.ModelCache().get(spec)
    assert loaded.source == "bundled" and loaded.requested == "hub"
    assert "unavailable" in loaded.notice and "/" + "tmp" not in loaded.notice
    assert counted_downloads == [], f"{key}: {len(counted_downloads)} download(s) started for an unavailable stack"
    monkeypatch.setenv(settings.hub_override_name(key, unpublished[0].role), "someone/published-adapter")
    assert loader.hub_unavailable(spec) is None


def test_an_unreachable_published_stack_falls_back_with_a_plain_notice(key, counted_downloads, monkeypatch):
    spec = spec_of(key)
    if not spec.hub:
        pytest.skip(f"{key}: nothing pretrained")
    monkeypatch.setenv(f"STUDIO_SOURCE_{key.upper()}", "hub")
    for part in spec.hub:
        if part.repo is None and not part.bundled:
            monkeypatch.setenv(settings.hub_override_name(key, part.role), "someone/published-part")
    loaded = loader.ModelCache().get(spec)
    assert loaded.source == "bundled" and loaded.notice
    assert "cannot be reached" in loaded.notice or "not found" in loaded.notice
    assert counted_downloads, f"{key}: the hub loader never asked the hub"


def test_no_frozen_model_download_starts_when_any_other_part_is_unpublished(key, counted_downloads, monkeypatch):
    """Every paper's real hub loader, with its adapter (or another non-frozen part) made unpublished:
    the hub source is refused before the frozen model is fetched."""
    import dataclasses

    spec = spec_of(key)
    others = [p for p in spec.hub if p.role != "frozen"]
    if not others:
        pytest.skip(f"{key}: no hub parts besides the frozen model")
    monkeypatch.setenv(f"STUDIO_SOURCE_{key.upper()}", "hub")
    for part in others:
        monkeypatch.delenv(settings.hub_override_name(key, part.role), raising=False)
        gone = dataclasses.replace(part, repo=None, bundled=False, unpublished="withheld for this test")
        hub = tuple(gone if p is part else p for p in spec.hub)
        loaded = loader.ModelCache().get(dataclasses.replace(spec, hub=hub))
        assert loaded.source == "bundled" and "withheld for this test" in loaded.notice
    assert counted_downloads == [], f"{key}: {len(counted_downloads)} download(s) started for an unavailable stack"
