"""The tab registry: an ordered list of tab modules.

A tab module exposes ``INFO`` (a `studio.registry.TabInfo`), ``build()`` (lays out its components
inside the `gr.Tab` the app opens for it, with the pieces from `studio.shell`), and, for a paper
tab, ``run`` (the handler behind its Run button), ``EXAMPLES`` (rows of ``run``'s inputs; the
first one is what the browser test clicks) and ``BAD_INPUTS`` (rows ``run`` must refuse, with the
words it must say). Importing a tab stays cheap: models load lazily inside handlers.
``STUDIO_TABS=key,key`` builds a subset (About is always built).
"""
from __future__ import annotations

import importlib
from types import ModuleType

from studio import settings

TAB_MODULES: list[str] = [
    "tabs.about",
    "tabs.filter2noise",
    "tabs.fgsa",
    "tabs.i2v",
    "tabs.kangaroo",
    "tabs.cloud_adapter",
    "tabs.codeberter",
    "tabs.mma",
    "tabs.glare",
    "tabs.vispec",
    "tabs.das",
    "tabs.study",
]


def all_tabs() -> list[ModuleType]:
    return [importlib.import_module(name) for name in TAB_MODULES]


def registered_tabs() -> list[ModuleType]:
    """The tabs this process builds, in order (``STUDIO_TABS`` may pick a subset)."""
    chosen = settings.selected_tabs()
    if chosen is None:
        return all_tabs()
    # tab modules are named after their keys; only the chosen ones are imported
    known = {name.rsplit(".", 1)[1] for name in TAB_MODULES}
    unknown = sorted(set(chosen) - known)
    if unknown:
        raise SystemExit(f"STUDIO_TABS names unknown tabs {unknown}; known: {sorted(known)}")
    return [importlib.import_module(name) for name in TAB_MODULES
            if name.rsplit(".", 1)[1] in ("about", *chosen)]


def model_tabs() -> list[ModuleType]:
    """Every registered tab that wraps a paper (all but About)."""
    return [tab for tab in registered_tabs() if tab.INFO.paper is not None]
