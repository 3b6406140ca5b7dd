"""The app shell: registry, About table, named endpoints, first page."""
from __future__ import annotations

import urllib.request

import pytest

import tabs
from studio.loader import param_counts
from studio.registry import TabInfo


def test_registry_is_ordered_with_about_first_and_complete_infos():
    modules = tabs.registered_tabs()
    assert modules[0].INFO.key == "about"
    keys = [m.INFO.key for m in modules]
    assert len(keys) == len(set(keys))
    for module in modules:
        info = module.INFO
        assert isinstance(info, TabInfo) and callable(module.build)
        assert info.title and info.description and info.api_names
        if info.key not in ("about", "study"):  # the two tabs that wrap no paper
            assert info.paper is not None and info.paper.key == info.key
            adapter, frozen = param_counts(info.paper)
            assert adapter > 0 and frozen >= 0


def test_about_table_lists_every_model_tab_with_counts_and_source():
    from tabs.about import HEADERS, about_rows, about_table

    rows = about_rows()
    assert len(rows) == len(tabs.model_tabs())
    for row, tab in zip(rows, tabs.model_tabs()):
        assert row[0] == tab.INFO.title and len(row) == len(HEADERS)
        assert row[HEADERS.index("Model source")].split()[0] in {"bundled", "hub", "local"}
        assert "/tmp" not in " ".join(row) and "/work" not in " ".join(row)
    first, second = about_table().split("**Where the models come from**")
    assert first.strip().count("\n") == len(rows) + 1 and second.strip().count("\n") == len(rows) + 1
    assert "| Tab | Model source | Hub parts (override) |" in second


def test_demo_builds_one_tab_per_registered_module():
    import app

    config = app.demo.get_config_file()
    tab_ids = [c["props"].get("elem_id") for c in config["components"] if c.get("type") == "tabitem"]
    assert tab_ids == [f"tab-{m.INFO.key}" for m in tabs.registered_tabs()]


def test_studio_tabs_builds_a_subset_and_refuses_unknown_keys(monkeypatch):
    monkeypatch.setenv("STUDIO_TABS", "kangaroo")
    assert [m.INFO.key for m in tabs.registered_tabs()] == ["about", "kangaroo"]
    monkeypatch.setenv("STUDIO_TABS", "kangaroo,nope")
    with pytest.raises(SystemExit, match="nope"):
        tabs.registered_tabs()


@pytest.mark.e2e
def test_every_tab_action_is_a_named_endpoint(studio_client, studio_server):
    with urllib.request.urlopen(studio_server, timeout=10) as response:
        assert response.status == 200 and b"Adapter Studio" in response.read()
    endpoints = set(studio_client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    for module in tabs.registered_tabs():
        for name in module.INFO.api_names:
            assert f"/{name}" in endpoints, f"{module.INFO.key}: /{name} missing from {sorted(endpoints)}"


@pytest.mark.e2e
def test_about_endpoint_returns_the_table(studio_client):
    table = studio_client.predict(api_name="/about")
    assert table.startswith("| Tab | Paper | Frozen model")
    for tab in tabs.model_tabs():
        assert tab.INFO.title in table
