"""What a tab tells the studio about itself (no gradio import, so the About tab, tests and the
bench can read it without building any UI)."""
from __future__ import annotations

import importlib
from dataclasses import dataclass

from adapters.common.contract import PaperSpec


@dataclass(frozen=True)
class TabInfo:
    key: str  # elem_ids, api_names, adapters/<key>, assets/<key> derive from it
    title: str
    api_names: tuple[str, ...]  # every public endpoint; the first is the tab's main run
    paper: PaperSpec | None = None  # None for tabs that wrap no paper (About)
    description: str = ""
    # CSS selector the browser test waits on after the first example (default: the status line)
    browser_result: str | None = None

    @property
    def main_api(self) -> str:
        return self.api_names[0]


def tab_info(paper: PaperSpec, api_names: tuple[str, ...], browser_result: str | None = None) -> TabInfo:
    return TabInfo(key=paper.key, title=paper.title, api_names=api_names, paper=paper,
                   description=paper.description, browser_result=browser_result)


def paper_spec(key: str) -> PaperSpec:
    """The spec in ``adapters/<key>/__init__.py`` (strings only: cheap)."""
    return importlib.import_module(f"adapters.{key}").SPEC
