"""Kangaroo tab: self-speculative decoding with a double early exit, lossless and timed against
plain greedy decoding in the same request."""
from __future__ import annotations

import json

import gradio as gr

from adapters.kangaroo import SPEC
from adapters.kangaroo.config import (
    DEFAULT_EXIT,
    DEFAULT_GAMMA,
    DEFAULT_MAX_NEW_TOKENS,
    DEFAULT_THRESHOLD,
    EXIT_CHOICES,
    MAX_GAMMA,
    MAX_NEW_TOKENS,
    MAX_PROMPT_CHARS,
    make_request,
)
from studio.registry import tab_info
from studio.shell import Shell
from studio.speculative_view import colored_html, comparison_rows, per_token_ms
from studio.ui import call_device, done_markdown, download_path, friendly, get_model, stopwatch

KEY = SPEC.key
INFO = tab_info(SPEC, api_names=("kangaroo_generate",))

SPAN_TITLE = {"draft": "drafted by layers 1..k + adapter, accepted by the full model", "full": "from the full model"}


def prompt_view(prompt: str, chat: bool) -> str:
    return f"[user] {prompt}\n[assistant] " if chat else prompt


def stats_markdown(out) -> str:
    greedy = out.greedy
    rows = comparison_rows([("Kangaroo + adapter", out.adapter), ("Kangaroo, bare exit (adapter off)", out.bare)], greedy,
                           [("layer evaluations per token", lambda r: f"{r.layer_evals_per_token:.1f}", f"{out.num_layers}")])
    hf = out.hf_generate
    hf_ms = per_token_ms(hf)
    rows.append(f"| speedup over transformers `generate` | {hf_ms / per_token_ms(out.adapter):.2f}x | "
                f"{hf_ms / per_token_ms(out.bare):.2f}x | {hf_ms / per_token_ms(greedy):.2f}x |")
    same = "same tokens" if hf.tokens == greedy.tokens else "different tokens (a near-tie in float32)"
    rows.append(f"\ntransformers `generate` (greedy) took {hf.seconds:.3f} s, {hf_ms:.1f} ms per token ({same}); "
                f"draft head: {out.draft_vocab_size:,} most frequent tokens" if out.draft_vocab_size else
                f"\ntransformers `generate` (greedy) took {hf.seconds:.3f} s, {hf_ms:.1f} ms per token ({same}).")
    return "\n".join(rows)


@friendly("Decoding")
def run(prompt, max_new_tokens, exit_layer, threshold, gamma, chat=True, progress=gr.Progress()):
    """Returns (coloured output with adapter, coloured output bare exit, stats table, status, JSON file).

    With `chat` the prompt is sent as a user message through the model's chat template (the model is
    an instruction-tuned one); without, the model continues the text as it is."""
    with stopwatch() as elapsed:
        loaded = get_model(SPEC)
        bundle = loaded.value
        chat = bool(chat) and bundle.codec.has_chat
        # Everything is checked here, in the web process, before any device work.
        request = make_request(prompt, max_new_tokens, exit_layer, threshold, gamma,
                               encode=bundle.codec.encode_chat if chat else bundle.codec.encode,
                               exits=bundle.adapters, context=bundle.context_length)
        device_run = call_device(KEY, "run", request, progress)
    out = device_run.result
    codec = bundle.codec
    ids = list(out.prompt_ids)
    views = []
    for result in (out.adapter, out.bare):
        views.append(colored_html(prompt_view(prompt, chat), codec.pieces(ids, result.tokens), result.sources,
                                  SPAN_TITLE))
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
                                       "threshold": request.threshold, "gamma": request.gamma, "chat_template": chat,
                                       "draft_vocabulary": out.draft_vocab_size or "full"},
        "text": codec.decode(adapter.tokens), "tokens": adapter.tokens, "sources": adapter.sources,
        "greedy_tokens": greedy.tokens, "identical_to_greedy": adapter.tokens == greedy.tokens,
        "seconds": {"kangaroo_adapter": adapter.seconds, "kangaroo_bare_exit": out.bare.seconds, "greedy": greedy.seconds,
                    "transformers_generate": out.hf_generate.seconds},
        "acceptance_rate": {"adapter": adapter.acceptance_rate, "bare_exit": out.bare.acceptance_rate},
        "tokens_per_pass": {"adapter": adapter.tokens_per_pass, "bare_exit": out.bare.tokens_per_pass},
        "device": device_run.device, "model": out.model,
    }, indent=2))
    return views[0], views[1], stats_markdown(out), status, str(path)


kangaroo_generate = run  # the handler's name before the shared tab contract


EXAMPLES = [
    ["Write a Python function that checks whether a number is prime.", 64, DEFAULT_EXIT, DEFAULT_THRESHOLD, DEFAULT_GAMMA, True],
    ["def quicksort(arr):", 64, DEFAULT_EXIT, DEFAULT_THRESHOLD, DEFAULT_GAMMA, True],
    ["Explain what a hash table is in two sentences.", 64, DEFAULT_EXIT, DEFAULT_THRESHOLD, DEFAULT_GAMMA, True],
    ["Write a Python function that reverses the words of a sentence.", 64, DEFAULT_EXIT, DEFAULT_THRESHOLD, 6, True],
    ["The capital of France is", 32, DEFAULT_EXIT, DEFAULT_THRESHOLD, DEFAULT_GAMMA, False],
]

BAD_INPUTS = [
    (["   ", 8, 2, 0.5, 6, True], "prompt is empty"),
    ([None, 8, 2, 0.5, 6, True], "prompt is empty"),
    (["def f():", 8, 2, 1.5, 6, True], "threshold must lie between 0 and 1"),
    (["def f():", 8, 2.5, 0.5, 6, True], "No adapter was trained for exit layer 2.5"),
    (["x = 1\n" * 300, 8, 2, 0.5, 6, True], "at most 256"),
    (["def f():", 8, 9, 0.5, 6, True], "No adapter was trained for exit layer 9"),
    (["def f():", 500, 2, 0.5, 6, True], "from 1 to 128"),
    (["def f():", 8, 2, 0.5, 0, True], "gamma"),
    (["def f():", "many", 2, 0.5, 6, True], "Set a value for max new tokens"),
]


def build() -> None:
    shell = Shell(INFO)
    params = shell.header("(adapter of one exit layer; each exit layer has its own)")
    with gr.Row():
        with gr.Column(scale=2):
            prompt = gr.Textbox(label="Prompt (a question, an instruction or some code)", lines=6,
                                max_length=MAX_PROMPT_CHARS, value=EXAMPLES[0][0])
            chat = gr.Checkbox(value=True, label="Send as a chat message (the model's chat template); off: continue the text")
            with gr.Row():
                max_new = gr.Slider(1, MAX_NEW_TOKENS, value=DEFAULT_MAX_NEW_TOKENS, step=1, label="Max new tokens")
                exit_layer = gr.Dropdown(list(EXIT_CHOICES), value=DEFAULT_EXIT,
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
    inputs = [prompt, max_new, exit_layer, threshold, gamma, chat]
    shell.examples(EXAMPLES, inputs, label="Examples (one click fills the inputs; then Generate)")
    shell.figures()
    shell.on_run(button, run, inputs, [with_adapter, bare, stats, status, download], params=params,
                 params_note="(adapter of one exit layer; each exit layer has its own)", lane="quick")
