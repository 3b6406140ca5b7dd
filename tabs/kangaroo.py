"""Kangaroo tab: self-speculative decoding with a double early exit, lossless and timed against
plain greedy decoding in the same request."""
from __future__ import annotations

import html
import json

import gradio as gr

from studio import settings
from studio.device import compute_device, device_label, gpu
from studio.errors import BadInput
from studio.loader import ASSETS, MODELS, ModelSpec, count_safetensors_params
from studio.registry import TabInfo
from studio.ui import done_markdown, download_path, friendly, params_markdown, stopwatch

KEY = "kangaroo"
MAX_PROMPT_CHARS = 2000
MAX_PROMPT_TOKENS = 160
MAX_NEW_TOKENS = 128
MAX_GAMMA = 12
DEFAULT_EXIT = 1


def _load_bundled(directory):
    from adapters.kangaroo_model import load_bundled

    return load_bundled(directory)


def _load_hub(repo_or_dir):
    from adapters.kangaroo_model import load_hub

    return load_hub(repo_or_dir)


SPEC = ModelSpec(key=KEY, hub_id="HuggingFaceTB/SmolLM2-135M", load_bundled=_load_bundled, load_hub=_load_hub)


def param_counts() -> tuple[int, int]:
    """Adapter for the default exit layer vs the frozen model, from the loaded model or file headers."""
    loaded = MODELS.loaded(KEY)
    if loaded is not None:
        bundle = loaded.value
        k = DEFAULT_EXIT if DEFAULT_EXIT in bundle.adapters else min(bundle.adapters)
        return bundle.adapter_params(k), bundle.frozen_params()
    directory = ASSETS / KEY
    adapter_file = directory / "kangaroo_adapter.safetensors"
    if not adapter_file.is_file():
        return 0, 0
    return (count_safetensors_params(adapter_file, prefixes=(f"exit{DEFAULT_EXIT}.",)),
            count_safetensors_params(directory / "model.safetensors"))


INFO = TabInfo(
    key=KEY,
    title="Kangaroo: faster decoding",
    paper="Kangaroo: Lossless Self-Speculative Decoding via Double Early Exiting (Liu et al., 2024)",
    paper_url="https://arxiv.org/abs/2404.18911",
    frozen_model="Bundled: a 12-layer Llama trained here on the Python standard library; hub: any Llama-family causal LM",
    adapter="One attention layer between two norms on top of the first k layers; drafts tokens for the full model to verify",
    description=(
        "**Kangaroo: Lossless Self-Speculative Decoding via Double Early Exiting.** The language model is frozen. "
        "Its first *k* layers plus a small trained adapter (norm, one attention layer, norm) and the model's own "
        "output head guess the next few tokens; guessing stops early when the guess is unsure (the second exit); "
        "the remaining layers then check all guesses in one pass. The text is exactly what plain greedy decoding "
        "gives, which this tab checks on every request, while it times both. Green tokens were drafted and "
        "accepted, orange ones came from the full model."
    ),
    spec=SPEC,
    param_counts=param_counts,
    api_names=("kangaroo_generate",),
)

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


def check_settings(bundle, prompt, max_new_tokens, exit_layer, threshold, gamma) -> tuple[list[int], int, int]:
    if not isinstance(prompt, str) or not prompt.strip():
        raise BadInput("The prompt is empty: type the start of some Python code or pick an example.")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise BadInput(f"The prompt is {len(prompt):,} characters long; this demo takes at most {MAX_PROMPT_CHARS:,}.")
    for name, value in (("max new tokens", max_new_tokens), ("exit layer", exit_layer), ("gamma", gamma), ("threshold", threshold)):
        if value is None or value != value:
            raise BadInput(f"Set a value for {name}.")
    if int(max_new_tokens) != max_new_tokens or not 1 <= max_new_tokens <= MAX_NEW_TOKENS:
        raise BadInput(f"Max new tokens must be a whole number from 1 to {MAX_NEW_TOKENS}.")
    if int(gamma) != gamma or not 1 <= gamma <= MAX_GAMMA:
        raise BadInput(f"gamma (the most draft tokens per round) must be a whole number from 1 to {MAX_GAMMA}.")
    if not 0.0 <= threshold <= 1.0:
        raise BadInput("The confidence threshold must lie between 0 and 1.")
    bundle.adapter(int(exit_layer))  # raises a plain message for an exit layer without adapter
    ids = bundle.codec.encode(prompt)
    if len(ids) > MAX_PROMPT_TOKENS:
        raise BadInput(f"The prompt is {len(ids)} tokens long; this demo takes at most {MAX_PROMPT_TOKENS}. Shorten it.")
    return ids, int(max_new_tokens), int(gamma)


def _duration(prompt, max_new_tokens, exit_layer, threshold, gamma, *args, **kwargs) -> int:
    return 20 + int(max_new_tokens or 0) // 2


@gpu(duration=_duration)
def decode_three_ways(prompt, max_new_tokens, exit_layer, threshold, gamma, on_token=None) -> dict:
    """Kangaroo with the adapter, Kangaroo with the bare early exit, and plain greedy, one request."""

    bundle = MODELS.get(SPEC).value
    ids, max_new, gamma = check_settings(bundle, prompt, max_new_tokens, exit_layer, threshold, gamma)
    # CPU threads are set once per process (studio.device.configure_threads, one by default):
    # batch-1 decoding is a chain of tiny ops that extra threads only slow down.
    return _decode_all(bundle, ids, max_new, exit_layer, threshold, gamma, compute_device(), on_token)


def _decode_all(bundle, ids, max_new, exit_layer, threshold, gamma, device, on_token) -> dict:
    from adapters.kangaroo import greedy_decode, kangaroo_decode

    bundle.model.to(device)
    adapter = bundle.adapter(int(exit_layer)).to(device)
    eos = bundle.codec.eos_id
    total = 3 * max_new

    def stage(offset):
        return (lambda i, n: on_token(offset + i, total)) if on_token else None

    greedy = greedy_decode(bundle.model, ids, max_new, eos_id=eos, on_token=stage(0))
    with_adapter = kangaroo_decode(bundle.model, adapter, ids, max_new, threshold=threshold, gamma=gamma, eos_id=eos,
                                   on_token=stage(max_new))
    bare = kangaroo_decode(bundle.model, None, ids, max_new, threshold=threshold, gamma=gamma, eos_id=eos,
                           exit_layer=int(exit_layer), on_token=stage(2 * max_new))
    return {"ids": ids, "greedy": greedy, "adapter": with_adapter, "bare": bare, "device": device_label(device),
            "num_layers": bundle.num_layers, "model": bundle.name}


def stats_markdown(out: dict) -> str:
    greedy = out["greedy"]
    rows = ["| | Kangaroo + adapter | Kangaroo, bare exit (adapter off) | Plain greedy |", "|---|---|---|---|"]

    def row(label, fn, plain):
        rows.append(f"| {label} | {fn(out['adapter'])} | {fn(out['bare'])} | {plain} |")

    row("identical to greedy", lambda r: "**yes**" if r.tokens == greedy.tokens else "**no**", "(reference)")
    row("acceptance rate", lambda r: f"{r.acceptance_rate:.0%} ({r.accepted}/{r.drafted})", "n/a")
    row("tokens per verification pass", lambda r: f"{r.tokens_per_pass:.2f}", "1.00")
    row("layer evaluations per token", lambda r: f"{r.layer_evals_per_token:.1f}", f"{out['num_layers']}")
    row("wall time", lambda r: f"{r.seconds:.3f} s", f"{greedy.seconds:.3f} s")
    row("speedup over plain greedy", lambda r: f"**{greedy.seconds / r.seconds:.2f}x**", "1.00x")
    return "\n".join(rows)


def figures_markdown() -> str:
    """Figures measured when the bundled weights were made (assets/kangaroo/figures.json)."""
    path = ASSETS / KEY / "figures.json"
    if not path.is_file():
        return "No measured figures found next to the bundled weights."
    figures = json.loads(path.read_text())
    lines = ["Measured on held-out standard-library text when the bundled weights were made "
             "(see the model card):", "", "| exit layer k | draft top-1 = full model, with adapter | bare exit |", "|---|---|---|"]
    for k, row in sorted(figures.get("agreement", {}).items(), key=lambda kv: int(kv[0])):
        lines.append(f"| {k} | {row['adapter_top1']:.1%} | {row['bare_exit_top1']:.1%} |")
    if figures.get("speed_table"):
        lines += ["", figures["speed_table"]]
    return "\n".join(lines)


@friendly("Decoding")
def kangaroo_generate(prompt, max_new_tokens, exit_layer, threshold, gamma, progress=gr.Progress()):
    """Returns (coloured output with adapter, coloured output bare exit, stats table, status, JSON file)."""
    with stopwatch() as elapsed:
        def on_token(i, n):
            if i % 8 == 0 or i == n:
                progress(i / n, desc="decoding (greedy, Kangaroo + adapter, bare exit)")

        out = decode_three_ways(prompt, max_new_tokens, exit_layer, threshold, gamma, on_token=on_token)
    loaded = MODELS.get(SPEC)
    codec = loaded.value.codec
    ids = out["ids"]
    views = []
    for name in ("adapter", "bare"):
        result = out[name]
        views.append(colored_html(prompt, codec.pieces(ids, result.tokens), result.sources))
    adapter, greedy = out["adapter"], out["greedy"]
    identical = "yes" if adapter.tokens == greedy.tokens else "no"
    extra = (f"Kangaroo {adapter.seconds:.2f} s vs plain greedy {greedy.seconds:.2f} s "
             f"({greedy.seconds / adapter.seconds:.2f}x); identical to greedy: {identical}. Model: {loaded.source}.")
    status = done_markdown(elapsed(), out["device"], extra)
    if loaded.notice:
        status += f"\n\n{loaded.notice}"
    path = download_path("kangaroo_result.json")
    path.write_text(json.dumps({
        "prompt": prompt, "settings": {"max_new_tokens": max_new_tokens, "exit_layer": exit_layer,
                                       "threshold": threshold, "gamma": gamma},
        "text": codec.decode(adapter.tokens), "tokens": adapter.tokens, "sources": adapter.sources,
        "greedy_tokens": greedy.tokens, "identical_to_greedy": adapter.tokens == greedy.tokens,
        "seconds": {"kangaroo_adapter": adapter.seconds, "kangaroo_bare_exit": out["bare"].seconds, "greedy": greedy.seconds},
        "acceptance_rate": {"adapter": adapter.acceptance_rate, "bare_exit": out["bare"].acceptance_rate},
        "tokens_per_pass": {"adapter": adapter.tokens_per_pass, "bare_exit": out["bare"].tokens_per_pass},
        "device": out["device"], "model": out["model"],
    }, indent=2))
    return views[0], views[1], stats_markdown(out), status, str(path)


EXAMPLES = [
    ["def read_config(path):\n    \"\"\"Read a configuration file and return a dict.\"\"\"\n", 64, 1, 0.05, 3],
    ["class Stack:\n    \"\"\"A last-in, first-out stack.\"\"\"\n\n    def __init__(self):\n", 64, 2, 0.2, 4],
    ["import os\nimport sys\n\n\ndef main(argv=None):\n", 96, 4, 0.1, 6],
    ["    def __repr__(self):\n        return ", 48, 2, 0.5, 8],
]


def build() -> None:
    gr.Markdown(params_markdown(*param_counts()) + " (adapter of one exit layer; each exit layer has its own)",
                elem_classes="studio-params")
    with gr.Row():
        with gr.Column(scale=2):
            prompt = gr.Textbox(label="Prompt (the start of some Python code)", lines=6, max_length=MAX_PROMPT_CHARS,
                                value=EXAMPLES[0][0])
            with gr.Row():
                max_new = gr.Slider(1, MAX_NEW_TOKENS, value=64, step=1, label="Max new tokens")
                exit_layer = gr.Slider(1, 4, value=DEFAULT_EXIT, step=1, label="Exit layer k (draft = layers 1..k + adapter)")
            with gr.Row():
                threshold = gr.Slider(0.0, 1.0, value=0.05, step=0.05, label="Confidence threshold (stop drafting below it)")
                gamma = gr.Slider(1, MAX_GAMMA, value=3, step=1, label="gamma (most draft tokens per round)")
            run = gr.Button("Generate", variant="primary", elem_id=f"{KEY}-run")
        with gr.Column(scale=3):
            status = gr.Markdown(elem_id=f"{KEY}-status", elem_classes="studio-status")
            stats = gr.Markdown()
    with gr.Row():
        with gr.Column():
            gr.Markdown("**Kangaroo with the adapter** (green: drafted and accepted, orange: full model)")
            with_adapter = gr.HTML()
        with gr.Column():
            gr.Markdown("**Adapter off: drafting with the bare exit** (layers 1..k + final norm + head)")
            bare = gr.HTML()
    download = gr.File(label="Download tokens, sources and timings (JSON)")
    gr.Examples(EXAMPLES, inputs=[prompt, max_new, exit_layer, threshold, gamma], elem_id=f"{KEY}-examples",
                label="Examples (one click fills the inputs; then Generate)")
    with gr.Accordion("Measured figures of the bundled model", open=False):
        gr.Markdown(figures_markdown())
    run.click(kangaroo_generate, inputs=[prompt, max_new, exit_layer, threshold, gamma],
              outputs=[with_adapter, bare, stats, status, download], api_name="kangaroo_generate",
              concurrency_id=settings.HEAVY, concurrency_limit=settings.HEAVY_CONCURRENCY)
