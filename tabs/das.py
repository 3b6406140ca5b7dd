"""DAS: a frozen small VLM whose language model skips k of its 30 layers; the full model, the skipped
layers replaced by adapters and the skipped layers removed answer the same question, each timed,
next to the per-layer skip probabilities the search learned."""
from __future__ import annotations

import html
import json

import gradio as gr

from adapters.common.imaging import read_rgb_image
from adapters.das import SPEC
from adapters.das.config import (
    DEFAULT_K,
    DEFAULT_NEW_TOKENS,
    MAX_NEW_TOKENS,
    MAX_QUESTION_CHARS,
    MAX_SKIPPED,
    NUM_LAYERS,
    make_request,
)
from studio import settings
from studio.loader import bundled_dir
from studio.registry import tab_info
from studio.shell import QUICK, Shell
from studio.ui import call_device, done_markdown, download_path, friendly, get_model, stopwatch, upload_path
from studio.uploads import ImageFile, pixel_limit_text

INFO = tab_info(SPEC, api_names=("das_answer",))
KEY = INFO.key
MAX_UPLOAD_SIDE = 8192
MAX_UPLOAD_PIXELS = 24_000_000
EXAMPLE_DIR = bundled_dir(SPEC) / "examples"
LAYER_CHOICES = [str(i) for i in range(1, NUM_LAYERS)]
VARIANT_NAMES = {"full": "full model (all 30 layers)", "adapters": "skipped layers → adapters",
                 "removed": "skipped layers removed"}


def probabilities_html(probabilities, skipped, fine_tuned) -> str:
    """One bar per layer (skip probability), the skipped ones marked; narrow enough for a phone."""
    bars = []
    for layer, p in enumerate(probabilities):
        p = float(p)
        colour = "#d9534f" if layer in skipped else "#7a9cc6"
        label = "never skipped" if layer == 0 else f"{p:.2f}"
        tuned = " ·" if layer in fine_tuned else ""
        bars.append(
            f"<div style='display:flex;align-items:center;gap:4px;font-size:0.8em;line-height:1.25'>"
            f"<span style='width:2.2em;text-align:right;font-variant-numeric:tabular-nums'>{layer}{tuned}</span>"
            f"<span style='flex:1;background:#eee;height:0.8em;min-width:60px'>"
            f"<span style='display:block;height:100%;width:{100 * p:.0f}%;background:{colour}'></span></span>"
            f"<span style='width:6.5em;font-variant-numeric:tabular-nums'>{label}</span></div>")
    return ("<p style='font-size:0.85em'>Learned skip probability sigmoid(score) of each language-model layer; "
            "<span style='color:#d9534f'>red</span>: skipped in this run. A dot after the layer number marks the "
            "adapters trained again after the search (the 12 most skippable layers); the others keep the adapters "
            "from the search.</p>" + "".join(bars))


def initial_chart() -> str:
    """The chart of the bundled model before any run, from its measured figures (no model load)."""
    from adapters.common import figures

    try:
        measured = (figures.load(bundled_dir(SPEC)) or {})["data"]["measured"]
        return probabilities_html(measured["probabilities"], set(measured["top_k"][str(DEFAULT_K)]),
                                  set(measured["fine_tuned"]))
    except (OSError, ValueError, KeyError, TypeError):
        return ""


def answers_markdown(out) -> str:
    rows = ["| | answer | layers run | time | multiply-adds per token |", "|---|---|---|---|---|"]
    for a in out.answers:
        text = html.escape(a.text) or "(empty)"
        rows.append(f"| **{VARIANT_NAMES[a.variant]}** | {text} | {a.layers_run} | {a.seconds:.2f} s for "
                    f"{len(a.tokens)} tokens | {a.macs_per_token / 1e6:.0f} M |")
    how = "chosen by hand" if out.manual else f"the {len(out.skipped)} most skippable by the search"
    return (f"Skipped layers ({how}): **{', '.join(map(str, out.skipped))}**\n\n" + "\n".join(rows))


@friendly("Answering")
def run(image_file, question, k=DEFAULT_K, manual=(), max_new_tokens=DEFAULT_NEW_TOKENS, progress=gr.Progress()):
    """Returns (answers table, skip probability chart, status, JSON file)."""
    rgb = (read_rgb_image(upload_path(image_file), max_side=MAX_UPLOAD_SIDE, max_pixels=MAX_UPLOAD_PIXELS)
           if image_file else None)
    with stopwatch() as elapsed:
        request = make_request(question, rgb, k, manual, max_new_tokens)
        loaded = get_model(SPEC)
        device_run = call_device(KEY, "run", request, progress)
    out = device_run.result
    notes = []
    if request.original_size and request.original_size != (224, 224):
        notes.append(f"Picture resized from {request.original_size[0]}x{request.original_size[1]} to 224x224.")
    if rgb is None:
        notes.append("No picture: the question is answered from text alone.")
    if request.manual:
        notes.append("Your own skip set: k is ignored.")
    if loaded.notice:
        notes.append(loaded.notice)
    status = done_markdown(elapsed(), device_run.device, " ".join(notes))
    path = download_path("das_answers.json")
    path.write_text(json.dumps({
        "question": out.question, "picture": out.with_image, "skipped_layers": list(out.skipped),
        "skip_set_chosen_by_hand": out.manual,
        "answers": {a.variant: {"text": a.text, "tokens": list(a.tokens), "seconds": a.seconds,
                                "layers_run": a.layers_run, "multiply_adds_per_token": a.macs_per_token}
                    for a in out.answers},
        "skip_probabilities": {str(i): float(p) for i, p in enumerate(out.probabilities)},
        "model": out.model, "device": device_run.device,
    }, indent=2))
    return (answers_markdown(out), probabilities_html(out.probabilities, set(out.skipped), set(out.fine_tuned)),
            status, str(path))


def _example(name: str) -> str:
    return str(EXAMPLE_DIR / name)


EXAMPLES = [
    [_example("scene_red_triangle.png"), "What colour is the triangle?", 6, [], 6],
    [_example("scene_count.png"), "How many circles are there?", 12, [], 6],
    [_example("scene_count.png"), "Is the green circle left or right of the red circle?", 3, [], 6],
    [_example("scene_red_triangle.png"), "What colour is the triangle?", 6, ["1", "2", "3", "4", "5", "6"], 6],
    [_example("coffee.png"), "Describe the picture in one sentence.", 6, [], 24],
]

BAD_INPUTS = [
    ([_example("scene_count.png"), "   ", 6, [], 6], "question is empty"),
    ([_example("scene_count.png"), "How many?", 99, [], 6], f"from 1 to {MAX_SKIPPED}"),
    ([_example("scene_count.png"), "How many?", float("nan"), [], 6], "Set a number for the number of skipped layers"),
    ([_example("scene_count.png"), "How many?", 6, ["0"], 6], "Layer 0 cannot be skipped"),
    ([_example("scene_count.png"), "x" * (MAX_QUESTION_CHARS + 1), 6, [], 6], f"at most {MAX_QUESTION_CHARS}"),
    ([_example("scene_count.png"), "How many?", 6, [], 500], f"from 1 to {MAX_NEW_TOKENS}"),
    ([str(bundled_dir(SPEC) / "figures.json"), "How many?", 6, [], 6], "not an image we can read"),
]


def build() -> None:
    shell = Shell(INFO)
    params = shell.header("(a replacing adapter for each of layers 1-29 and the 30 skip scores)")
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            image = ImageFile(type="filepath", image_mode=None,
                              label=f"Picture (resized to 224x224; {pixel_limit_text(MAX_UPLOAD_PIXELS, MAX_UPLOAD_SIDE)})",
                              format=settings.IMAGE_FORMAT, height=240, elem_id=f"{KEY}-image")
            question = gr.Textbox(label="Question", lines=2, max_length=MAX_QUESTION_CHARS, elem_id=f"{KEY}-question")
            k = gr.Slider(1, MAX_SKIPPED, value=DEFAULT_K, step=1, elem_id=f"{KEY}-k",
                          label=f"k: layers skipped (of {NUM_LAYERS}; the searched top-k; trained for 3, 6, 9, 12)")
            with gr.Accordion("Choose the skipped layers yourself", open=False):
                manual = gr.CheckboxGroup(LAYER_CHOICES, value=[], elem_id=f"{KEY}-manual",
                                          label="Skip these layers instead of the top-k (layer 0 always runs)")
            max_new = gr.Slider(1, MAX_NEW_TOKENS, value=DEFAULT_NEW_TOKENS, step=1, label="Max new tokens")
            button = shell.run_button("Answer")
        with gr.Column(scale=1, min_width=300):
            answers = gr.Markdown(elem_id=f"{KEY}-answers")
            status = shell.status()
            download = gr.File(label="Answers, timings and skip probabilities (JSON)")
            with gr.Accordion("Skip probability per layer", open=True):
                chart = gr.HTML(initial_chart(), elem_id=f"{KEY}-chart")
    inputs = [image, question, k, manual, max_new]
    outputs = [answers, chart, status, download]
    shell.examples(EXAMPLES, inputs, label="Examples (held-out colour-shape and count compositions, a hand-picked "
                                           "skip set, a real photo)")
    shell.figures()
    shell.on_run(button, run, inputs, outputs, params=params, lane="quick")
    # moving k answers again: the latency and the answers follow the slider
    k.release(run, inputs, outputs, api_visibility="private", **QUICK)
