"""The standard pieces of a paper tab, so that the browser test's contract is code, not habit:
``#<key>-run`` (the main button), ``#<key>-status`` (where "Done in" appears), ``#<key>-examples``,
the parameter line, the one line on what is real, the figures accordion and the lanes model runs
go in (``heavy`` for minutes of work, ``quick`` for seconds, side by side)."""
from __future__ import annotations

from typing import Any, Callable, Sequence

import gradio as gr

from adapters.common import figures as _figures
from studio import settings
from studio.loader import bundled_dir, param_counts
from studio.registry import TabInfo
from studio.ui import params_markdown

HEAVY = dict(concurrency_id=settings.HEAVY, concurrency_limit=settings.HEAVY_CONCURRENCY)
QUICK = dict(concurrency_id=settings.QUICK, concurrency_limit=settings.QUICK_CONCURRENCY)
LIGHT = dict(concurrency_limit=settings.LIGHT_CONCURRENCY)
LANES = {"heavy": HEAVY, "quick": QUICK}


class Shell:
    def __init__(self, info: TabInfo):
        if info.paper is None:
            raise ValueError("Shell is for paper tabs")
        self.info = info
        self.key = info.key
        self.paper = info.paper

    # --- header -----------------------------------------------------------------------------
    def params_text(self, note: str = "") -> str:
        return params_markdown(*param_counts(self.paper)) + (f" {note}" if note else "")

    def header(self, params_note: str = "") -> gr.Markdown:
        """The parameter line and the line on what is real; returns the parameter line (it can be
        refreshed after a run, when the loaded model's own counts are known)."""
        params = gr.Markdown(self.params_text(params_note), elem_classes="studio-params", elem_id=f"{self.key}-params")
        gr.Markdown(f"**What is real here:** {self.paper.real}", elem_classes="studio-real", elem_id=f"{self.key}-real")
        return params

    # --- standard components ----------------------------------------------------------------
    def run_button(self, label: str = "Run") -> gr.Button:
        return gr.Button(label, variant="primary", elem_id=f"{self.key}-run")

    def status(self) -> gr.Markdown:
        return gr.Markdown(elem_id=f"{self.key}-status", elem_classes="studio-status")

    def examples(self, rows: Sequence[Sequence[Any]], inputs: Sequence[gr.components.Component], label: str) -> gr.Examples | None:
        if not rows:
            return None
        return gr.Examples([list(r) for r in rows], inputs=list(inputs), elem_id=f"{self.key}-examples", label=label)

    def figures(self, title: str = "Measured figures of the bundled model", only: Sequence[str] | None = None,
                open: bool = False) -> gr.Markdown:
        try:
            text = _figures.figures_markdown(_figures.load(bundled_dir(self.paper)), only=only)
        except (OSError, ValueError) as exc:
            text = f"The figures file could not be read ({type(exc).__name__})."
        with gr.Accordion(title, open=open, elem_id=f"{self.key}-figures"):
            return gr.Markdown(text)

    def session_state(self) -> gr.State:
        """Per-session state that expires with the retention time and is freed when the session closes."""
        return gr.State(None, time_to_live=settings.retention_seconds())

    # --- events -----------------------------------------------------------------------------
    def on_run(self, button: gr.Button, fn: Callable, inputs, outputs, api_name: str | None = None,
               params: gr.Markdown | None = None, params_note: str = "", lane: str = "heavy"):
        """Wire the main run (the tab's main api_name) in its lane: ``heavy`` for runs of minutes,
        ``quick`` for runs of seconds, which must not wait behind them; refresh the parameter line after."""
        event = button.click(fn, inputs, outputs, api_name=api_name or self.info.main_api, **LANES[lane])
        if params is not None:
            event = event.then(lambda: self.params_text(params_note), None, params, queue=False,
                               api_visibility="private")
        return event

    def heavy(self, trigger, fn: Callable, inputs, outputs, api_name: str):
        return trigger(fn, inputs, outputs, api_name=api_name, **HEAVY)

    def light(self, trigger, fn: Callable, inputs, outputs, **kwargs):
        """A cheap re-render (no model run): its own slots, so it never waits behind a model run."""
        return trigger(fn, inputs, outputs, **LIGHT, **kwargs)
