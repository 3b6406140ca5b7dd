"""About: what every tab is, what it freezes, how big its adapter is and where its model comes from."""
from __future__ import annotations

import gradio as gr

from studio.loader import MODELS, requested_source
from studio.registry import TabInfo
from studio.ui import format_count

INFO = TabInfo(
    key="about",
    title="About",
    paper="",
    paper_url="",
    frozen_model="",
    adapter="",
    description=(
        "Adapter Studio: each tab loads a frozen pretrained model plus a lightweight adapter from a "
        "recent paper. Off a Space every tab runs on small models this repository trains itself "
        "(`bundled`); on a GPU Space they use the papers' real models (`hub`)."
    ),
    api_names=("about",),
)

HEADERS = ["Tab", "Paper", "Frozen model", "Adapter adds", "Adapter params", "Frozen params", "Adapter / frozen", "Model source"]


def source_text(info: TabInfo) -> str:
    if info.spec is None:
        return "none (trained per input)"
    loaded = MODELS.loaded(info.spec.key)
    if loaded is None:
        return f"{requested_source(info.spec)} (not loaded yet)"
    text = f"{loaded.source} ({loaded.location})"
    if loaded.notice:
        text += f" (asked for {loaded.requested}: fell back)"
    return text


def about_rows() -> list[list[str]]:
    """One row per model tab; parameter counts come from weight headers or loaded models."""
    from tabs import model_tabs

    rows = []
    for tab in model_tabs():
        info: TabInfo = tab.INFO
        adapter, frozen = info.param_counts() if info.param_counts else (0, 0)
        ratio = f"{100 * adapter / frozen:.2f}%" if frozen else "n/a (nothing frozen)"
        paper = f"[{info.paper}]({info.paper_url})" if info.paper_url else info.paper
        rows.append([info.title, paper, info.frozen_model, info.adapter, format_count(adapter), format_count(frozen), ratio, source_text(info)])
    return rows


def about_table() -> str:
    """The About table as Markdown (also the `/about` API endpoint)."""
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    for row in about_rows():
        lines.append("| " + " | ".join(cell.replace("|", "/") if not cell.startswith("[") else cell for cell in row) + " |")
    return "\n".join(lines)


def build() -> None:
    gr.Markdown(f"# Adapter Studio\n{INFO.description}")
    table = gr.Markdown(about_table(), elem_id="about-table")
    refresh = gr.Button("Refresh", elem_id="about-run", size="sm")
    refresh.click(about_table, inputs=None, outputs=table, api_name="about")
    gr.Markdown(
        "Model sources: set `STUDIO_MODEL_SOURCE=bundled|hub|local` (or per tab "
        "`STUDIO_SOURCE_<KEY>`); `local` reads `STUDIO_LOCAL_DIR_<KEY>` or `STUDIO_LOCAL_ROOT/<key>`.",
        elem_classes="studio-params",
    )
