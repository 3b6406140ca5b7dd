"""The tab registry: an ordered list of tab modules.

A tab module exposes `INFO` (a `studio.registry.TabInfo`) and `build()`, which lays out its
components inside the `gr.Tab` the app opens for it and wires events with `api_name`s. The About
tab comes first and reads every other tab's `INFO`. Importing a tab must stay cheap: models load
lazily inside handlers, never at import.
"""
from __future__ import annotations

import importlib
from types import ModuleType

TAB_MODULES: list[str] = [
    "tabs.about",
    "tabs.filter2noise",
    "tabs.fgsa",
    "tabs.i2v",
    "tabs.kangaroo",
]


def registered_tabs() -> list[ModuleType]:
    return [importlib.import_module(name) for name in TAB_MODULES]


def model_tabs() -> list[ModuleType]:
    """Every tab that wraps a paper's model (all but About)."""
    return [tab for tab in registered_tabs() if tab.INFO.spec is not None or tab.INFO.param_counts is not None]
