"""Kangaroo tab: self-speculative decoding with a double early exit, lossless and timed against
plain greedy decoding in the same request."""
from __future__ import annotations

import html
import json

import gradio as gr

from adapters.kangaroo import SPEC
from adapters.kangaroo.config import (
    DEFAULT_EXIT,
    DEFAULT_GAMMA,
    DEFAULT_MAX_NEW_TOKENS,
    DEFAULT_THRESHOLD,
    EXIT_SLIDER_MAX,
    MAX_GAMMA,
    MAX_NEW_TOKENS,
    MAX_PROMPT_CHARS,
    make_request,
)
from studio.registry import tab_info
from studio.shell import Shell
from studio.ui import call_device, done_markdown, download_path, friendly, get_model, stopwatch

KEY = SPEC.key
INFO = tab_info(SPEC, api_names=("kangaroo_generate",))

# Inline styles, so the colours survive whatever CSS the page or the HTML component applies.
BOX_STYLE = ("white-space:pre-wrap;font-family:ui-monospace,monospace;font-size:0.9em;line-height:1.45;"
             "padding:8px;border-radius:6px;border:1px solid #8884;max-height:420px;overflow:auto")
SPAN_STYLE = {
    "prompt": "opacity:0.6",
    "draft": "background:#2e9d4a40;border-bottom:2px solid #2e9d4a",
    "full": "background:#e8892440;border-bottom:2px solid #e88924",
}
SPAN_TITLE = {"draft": "drafted by layers 1..k + adapter, accepted by the full model", "full": "from the full model"}


def colored_html(prompt: str, pieces: list[str], sources: list[str]) -> str:
    spans = [f'<span class="kg-prompt" style="{SPAN_STYLE["prompt"]}">{html.escape(prompt)}</span>']
    for piece, source in zip(pieces, sources):
        spans.append(f'<span class="kg-{source}" style="{SPAN_STYLE[source]}" title="{SPAN_TITLE[source]}">'
                     f'{html.escape(piece)}</span>')
    return f'<div class="kg-out" style="{BOX_STYLE}">' + "".join(spans) + "</div>"


def stats_markdown(out) -> str:
    greedy = out.greedy
    rows = ["| | Kangaroo + adapter | Kangaroo, bare exit (adapter off) | Plain greedy |", "|---|---|---|---|"]

    def row(label, fn, plain):
        rows.append(f"| {label} | {fn(out.adapter)} | {fn(out.bare)} | {plain} |")

    row("identical to greedy", lambda r: "**yes**" if r.tokens == greedy.tokens else "**no**", "(reference)")
    row("acceptance rate", lambda r: f"{r.acceptance_rate:.0%} ({r.accepted}/{r.drafted})", "n/a")
    row("tokens per verification pass", lambda r: f"{r.tokens_per_pass:.2f}", "1.00")
    row("layer evaluations per token", lambda r: f"{r.layer_evals_per_token:.1f}", f"{out.num_layers}")
    row("wall time", lambda r: f"{r.seconds:.3f} s", f"{greedy.seconds:.3f} s")
    row("speedup over plain greedy", lambda r: f"**{greedy.seconds / r.seconds:.2f}x**", "1.00x")
    return "\n".join(rows)


@friendly("Decoding")
def run(prompt, max_new_tokens, exit_layer, threshold, gamma, progress=gr.Progress()):
    """Returns (coloured output with adapter, coloured output bare exit, stats table, status, JSON file)."""
    with stopwatch() as elapsed:
        loaded = get_model(SPEC)
        bundle = loaded.value
        # Everything is checked here, in the web process, before any device work.
        request = make_request(prompt, max_new_tokens, exit_layer, threshold, gamma, encode=bundle.codec.encode,
                               exits=bundle.adapters, context=bundle.context_length)
        device_run = call_device(KEY, "run", request, progress)
    out = device_run.result
    codec = bundle.codec
    ids = list(out.prompt_ids)
    views = []
    for result in (out.adapter, out.bare):
        views.append(colored_html(prompt, codec.pieces(ids, result.tokens), result.sources))
    adapter, greedy = out.adapter, out.greedy
    identical = "yes" if adapter.tokens == greedy.tokens else "no"
    extra = (f"Kangaroo {adapter.seconds:.2f} s vs plain greedy {greedy.seconds:.2f} s "
             f"({greedy.seconds / adapter.seconds:.2f}x); identical to greedy: {identical}. Model: {loaded.source}.")
    status = done_markdown(elapsed(), device_run.device, extra)
    if loaded.notice:
        status += f"\n\n{loaded.notice}"
    path = download_path("kangaroo_result.json")
    path.write_text(json.dumps({
        "prompt": prompt, "settings": {"max_new_tokens": request.max_new_tokens, "exit_layer": request.exit_layer,
                                       "threshold": request.threshold, "gamma": request.gamma},
        "text": codec.decode(adapter.tokens), "tokens": adapter.tokens, "sources": adapter.sources,
        "greedy_tokens": greedy.tokens, "identical_to_greedy": adapter.tokens == greedy.tokens,
        "seconds": {"kangaroo_adapter": adapter.seconds, "kangaroo_bare_exit": out.bare.seconds, "greedy": greedy.seconds},
        "acceptance_rate": {"adapter": adapter.acceptance_rate, "bare_exit": out.bare.acceptance_rate},
        "tokens_per_pass": {"adapter": adapter.tokens_per_pass, "bare_exit": out.bare.tokens_per_pass},
        "device": device_run.device, "model": out.model,
    }, indent=2))
    return views[0], views[1], stats_markdown(out), status, str(path)


kangaroo_generate = run  # the handler's name before the shared tab contract


EXAMPLES = [
    ["def read_config(path):\n    \"\"\"Read a configuration file and return a dict.\"\"\"\n", 64, 1, 0.05, 3],
    ["class Stack:\n    \"\"\"A last-in, first-out stack.\"\"\"\n\n    def __init__(self):\n", 64, 2, 0.2, 4],
    ["import os\nimport sys\n\n\ndef main(argv=None):\n", 96, 4, 0.1, 6],
    ["    def __repr__(self):\n        return ", 48, 2, 0.5, 8],
]

BAD_INPUTS = [
    (["   ", 8, 2, 0.5, 6], "prompt is empty"),
    ([None, 8, 2, 0.5, 6], "prompt is empty"),
    (["def f():", 8, 2, 1.5, 6], "threshold must lie between 0 and 1"),
    (["def f():", 8, 2.5, 0.5, 6], "No adapter was trained for exit layer 2.5"),
    (["x = 1\n" * 200, 8, 2, 0.5, 6], "at most 160"),
    (["def f():", 8, 9, 0.5, 6], "No adapter was trained for exit layer 9"),
    (["def f():", 500, 2, 0.5, 6], "from 1 to 128"),
    (["def f():", 8, 2, 0.5, 0], "gamma"),
    (["def f():", "many", 2, 0.5, 6], "Set a value for max new tokens"),
]


def build() -> None:
    shell = Shell(INFO)
    params = shell.header("(adapter of one exit layer; each exit layer has its own)")
    with gr.Row():
        with gr.Column(scale=2):
            prompt = gr.Textbox(label="Prompt (the start of some Python code)", lines=6, max_length=MAX_PROMPT_CHARS,
                                value=EXAMPLES[0][0])
            with gr.Row():
                max_new = gr.Slider(1, MAX_NEW_TOKENS, value=DEFAULT_MAX_NEW_TOKENS, step=1, label="Max new tokens")
                exit_layer = gr.Slider(1, EXIT_SLIDER_MAX, value=DEFAULT_EXIT, step=1,
                                       label="Exit layer k (draft = layers 1..k + adapter)")
            with gr.Row():
                threshold = gr.Slider(0.0, 1.0, value=DEFAULT_THRESHOLD, step=0.05,
                                      label="Confidence threshold (stop drafting below it)")
                gamma = gr.Slider(1, MAX_GAMMA, value=DEFAULT_GAMMA, step=1, label="gamma (most draft tokens per round)")
            button = shell.run_button("Generate")
        with gr.Column(scale=3):
            status = shell.status()
            stats = gr.Markdown()
    with gr.Row():
        with gr.Column():
            gr.Markdown("**Kangaroo with the adapter** (green: drafted and accepted, orange: full model)")
            with_adapter = gr.HTML()
        with gr.Column():
            gr.Markdown("**Adapter off: drafting with the bare exit** (layers 1..k + final norm + head)")
            bare = gr.HTML()
    download = gr.File(label="Download tokens, sources and timings (JSON)")
    inputs = [prompt, max_new, exit_layer, threshold, gamma]
    shell.examples(EXAMPLES, inputs, label="Examples (one click fills the inputs; then Generate)")
    shell.figures()
    shell.on_run(button, run, inputs, [with_adapter, bare, stats, status, download], params=params,
                 params_note="(adapter of one exit layer; each exit layer has its own)")
