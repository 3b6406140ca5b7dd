"""About: what every tab is, what it freezes, how big its adapter is and where its model comes from."""
from __future__ import annotations

import gradio as gr

from studio import settings
from studio.loader import param_counts, source_status
from studio.registry import TabInfo
from studio.ui import format_count

INFO = TabInfo(
    key="about",
    title="About",
    api_names=("about",),
    description=(
        "Adapter Studio: each tab loads a frozen pretrained model plus a lightweight adapter from a "
        "recent paper. Off a Space every tab runs on the bundled models (`bundled`); on a GPU Space "
        "they use the papers' real models (`hub`)."
    ),
)

HEADERS = ["Tab", "Paper", "Frozen model", "Adapter adds", "Adapter params", "Frozen params", "Adapter / frozen",
           "Model source", "Hub parts (override)"]
# two tables, so neither is too wide to read: what each tab is, then where its models come from
FIRST = HEADERS.index("Model source")


def _cell(text: str) -> str:
    return text.replace("|", "/").replace("\n", " ")


def hub_parts_text(paper) -> str:
    if not paper.hub:
        return "none (nothing pretrained)"
    parts = []
    for part in paper.hub:
        repo = (f"this repository's `assets/{paper.key}`" if part.bundled else
                f"`{part.repo}`" if part.repo else "**unpublished**")
        parts.append(f"{part.role}: {repo} ({settings.hub_override_name(paper.key, part.role)})")
    return "; ".join(parts)


def about_rows() -> list[list[str]]:
    """One row per paper tab; parameter counts from weight headers or the loaded models."""
    from tabs import model_tabs

    rows = []
    for tab in model_tabs():
        paper = tab.INFO.paper
        adapter, frozen = param_counts(paper)
        ratio = f"{100 * adapter / frozen:.2f}%" if frozen else "n/a (nothing frozen)"
        rows.append([tab.INFO.title, f"[{_cell(paper.paper)}]({paper.paper_url})", _cell(paper.frozen_model),
                     _cell(paper.adapter), format_count(adapter), format_count(frozen), ratio,
                     _cell(source_status(paper)), hub_parts_text(paper)])
    return rows


def _markdown(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def about_table() -> str:
    """The About tables as Markdown (also the `/about` API endpoint)."""
    rows = about_rows()
    return (_markdown(HEADERS[:FIRST], [r[:FIRST] for r in rows]) + "\n\n**Where the models come from**\n\n"
            + _markdown(["Tab", *HEADERS[FIRST:]], [[r[0], *r[FIRST:]] for r in rows]))


def build() -> None:
    gr.Markdown(f"# Adapter Studio\n{INFO.description}")
    # a callable value is computed again on every page load: the table is current without Refresh
    table = gr.Markdown(about_table, elem_id="about-table")
    refresh = gr.Button("Refresh", elem_id="about-run", size="sm")
    refresh.click(about_table, inputs=None, outputs=table, api_name="about")
    gr.Markdown(
        "Model sources: `STUDIO_MODEL_SOURCE=bundled|hub|local` (or per tab `STUDIO_SOURCE_<KEY>`); "
        "`local` reads `STUDIO_LOCAL_DIR_<KEY>` or `STUDIO_LOCAL_ROOT/<key>`; "
        "`STUDIO_HUB_<KEY>_<ROLE>` points one hub part at another repository. "
        "A tab whose hub stack has an unpublished part uses its bundled model and says why.",
        elem_classes="studio-params",
    )
