"""MMA (LaVIN): a frozen small VLM with mixture-of-modality adapters; answers with and without the
adapters and with and without the picture, and the router's per-layer weights."""
from __future__ import annotations

import html
import json

import gradio as gr

from adapters.common.imaging import read_rgb_image
from adapters.mma import SPEC
from adapters.mma.config import (
    DEFAULT_NEW_TOKENS,
    DEFAULT_TEMPERATURE,
    MAX_NEW_TOKENS,
    MAX_QUESTION_CHARS,
    ROUTES,
    TEMPERATURE_RANGE,
    make_request,
)
from studio import settings
from studio.loader import bundled_dir
from studio.registry import tab_info
from studio.shell import Shell
from studio.ui import call_device, done_markdown, download_path, friendly, get_model, stopwatch, upload_path
from studio.uploads import ImageFile, pixel_limit_text

INFO = tab_info(SPEC, api_names=("mma_answer",))
KEY = INFO.key
# the picture is shrunk to 224x224: nothing larger than a big photograph is worth decoding
MAX_UPLOAD_SIDE = 8192
MAX_UPLOAD_PIXELS = 24_000_000
EXAMPLE_DIR = bundled_dir(SPEC) / "examples"
ROUTE_LABELS = {"auto": "auto (by the modality token)", "text": "forced: text-only route",
                "image": "forced: image route"}


def _route(value) -> str:
    for key, label in ROUTE_LABELS.items():
        if value in (key, label):
            return key
    return str(value)


def routing_html(routing, layers, with_image: bool) -> str:
    """Per-layer router weights as a compact coloured table (phone-width friendly)."""
    cell = "padding:1px 6px;text-align:right;font-variant-numeric:tabular-nums"
    rows = [f"<tr><th style='{cell}'>layer</th><th style='{cell}'>text: path 0</th><th style='{cell}'>path 1</th>"
            f"<th style='{cell}'>image: path 0</th><th style='{cell}'>path 1</th></tr>"]
    if not routing.any():
        return "<p>This adapter has no router.</p>"
    for layer, weights in zip(layers, routing):
        tds = []
        for modality in (0, 1):
            for path in (0, 1):
                w = float(weights[modality, path])
                colour = f"rgba(46,157,74,{w:.2f})" if path == 0 else f"rgba(232,137,36,{w:.2f})"
                tds.append(f"<td style='{cell};background:{colour}'>{w:.2f}</td>")
        rows.append(f"<tr><td style='{cell}'>{layer}</td>{''.join(tds)}</tr>")
    used = "image" if with_image else "text"
    return (f"<p>Router weights w = softmax(W<sub>r</sub>·h<sub>modality</sub>/t) of each adapted layer for both "
            f"modality tokens; this prompt used the <b>{used}</b> row (unless a route was forced).</p>"
            f"<div style='overflow-x:auto'><table style='border-collapse:collapse;font-size:0.85em'>"
            f"{''.join(rows)}</table></div>")


def answers_markdown(out) -> str:
    def cell(answer):
        if answer is None:
            return "(no picture given)"
        return f"{html.escape(answer.text) or '(empty)'}  \n<sub>{len(answer.tokens)} tokens, {answer.seconds:.2f} s</sub>"

    return "\n".join([
        "| | with the picture | picture withheld |",
        "|---|---|---|",
        f"| **MMA adapters on** (route: {out.route}, t = {out.temperature:g}) | {cell(out.mma_image)} | {cell(out.mma_text)} |",
        f"| **adapters off** (projector only) | {cell(out.base_image)} | {cell(out.base_text)} |",
    ])


@friendly("Answering")
def run(image_file, question, route="auto", temperature=DEFAULT_TEMPERATURE, max_new_tokens=DEFAULT_NEW_TOKENS,
        progress=gr.Progress()):
    """Returns (answers table, routing table, status, JSON file)."""
    rgb = (read_rgb_image(upload_path(image_file), max_side=MAX_UPLOAD_SIDE, max_pixels=MAX_UPLOAD_PIXELS)
           if image_file else None)
    with stopwatch() as elapsed:
        request = make_request(question, rgb, temperature, _route(route), max_new_tokens)
        loaded = get_model(SPEC)
        device_run = call_device(KEY, "run", request, progress)
    out = device_run.result
    notes = []
    if request.original_size and request.original_size != (224, 224):
        notes.append(f"Picture resized from {request.original_size[0]}x{request.original_size[1]} to 224x224.")
    if rgb is None:
        notes.append("No picture: only the text-only answers are shown.")
    if loaded.notice:
        notes.append(loaded.notice)
    status = done_markdown(elapsed(), device_run.device, " ".join(notes))
    path = download_path("mma_answers.json")

    def dump(answer):
        return None if answer is None else {"text": answer.text, "tokens": list(answer.tokens), "seconds": answer.seconds}

    path.write_text(json.dumps({
        "question": out.question, "picture": out.with_image, "route": out.route, "temperature": out.temperature,
        "mma_with_picture": dump(out.mma_image), "mma_without_picture": dump(out.mma_text),
        "projector_only_with_picture": dump(out.base_image), "projector_only_without_picture": dump(out.base_text),
        "router_weights": {str(layer): {"text": w[0].tolist(), "image": w[1].tolist()}
                           for layer, w in zip(out.layers, out.routing)},
        "model": out.model, "device": device_run.device,
    }, indent=2))
    return answers_markdown(out), routing_html(out.routing, out.layers, out.with_image), status, str(path)


def _example(name: str) -> str:
    return str(EXAMPLE_DIR / name)


EXAMPLES = [
    [_example("scene_red_triangle.png"), "What colour is the triangle?", "auto", DEFAULT_TEMPERATURE, 8],
    [_example("scene_count.png"), "How many circles are there?", "auto", DEFAULT_TEMPERATURE, 8],
    [_example("scene_count.png"), "Is the green circle left or right of the red circle?", "auto",
     DEFAULT_TEMPERATURE, 8],
    [_example("coffee.png"), "Describe the picture in one sentence.", "auto", DEFAULT_TEMPERATURE, 24],
    [None, "What is the capital of France?", "auto", DEFAULT_TEMPERATURE, 24],
    [_example("scene_red_triangle.png"), "What colour is the triangle?", "text", DEFAULT_TEMPERATURE, 8],
]

BAD_INPUTS = [
    ([_example("scene_count.png"), "   ", "auto", 5.0, 8], "question is empty"),
    ([_example("scene_count.png"), "x" * (MAX_QUESTION_CHARS + 1), "auto", 5.0, 8], f"at most {MAX_QUESTION_CHARS}"),
    ([_example("scene_count.png"), "How many?", "auto", 99.0, 8], "temperature must lie between"),
    ([_example("scene_count.png"), "How many?", "auto", float("nan"), 8], "Set a number for the router temperature"),
    ([_example("scene_count.png"), "How many?", "sideways", 5.0, 8], "route must be one of"),
    ([_example("scene_count.png"), "How many?", "auto", 5.0, 500], f"from 1 to {MAX_NEW_TOKENS}"),
    ([str(bundled_dir(SPEC) / "figures.json"), "How many?", "auto", 5.0, 8], "not an image we can read"),
]


def build() -> None:
    shell = Shell(INFO)
    params = shell.header("(adapters in all 30 language-model layers and two modality tokens, trained on the frozen stage-1 projector)")
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            image = ImageFile(type="filepath", image_mode=None,
                              label=f"Picture (optional; resized to 224x224; {pixel_limit_text(MAX_UPLOAD_PIXELS, MAX_UPLOAD_SIDE)})",
                              format=settings.IMAGE_FORMAT, height=240, elem_id=f"{KEY}-image")
            question = gr.Textbox(label="Question or instruction", lines=2, max_length=MAX_QUESTION_CHARS,
                                  elem_id=f"{KEY}-question")
            route = gr.Radio(list(ROUTES), value="auto", label="Route (auto: chosen by whether a picture is given)",
                             elem_id=f"{KEY}-route")
            temperature = gr.Slider(*TEMPERATURE_RANGE, value=DEFAULT_TEMPERATURE, step=0.5,
                                    label="Router temperature t (lower: sharper choice between the two paths)")
            max_new = gr.Slider(1, MAX_NEW_TOKENS, value=DEFAULT_NEW_TOKENS, step=1, label="Max new tokens")
            button = shell.run_button("Answer")
        with gr.Column(scale=1, min_width=300):
            answers = gr.Markdown(elem_id=f"{KEY}-answers")
            status = shell.status()
            download = gr.File(label="Answers and router weights (JSON)")
            with gr.Accordion("Router weights per layer", open=False):
                routing = gr.HTML()
    inputs = [image, question, route, temperature, max_new]
    shell.examples(EXAMPLES, inputs, label="Examples (held-out colour-shape and count compositions, a real photo, "
                                           "a text-only instruction)")
    shell.figures()
    shell.on_run(button, run, inputs, [answers, routing, status, download], params=params)
