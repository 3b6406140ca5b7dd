"""ViSpec tab: speculative decoding for the small VLM with a vision-aware draft, lossless and timed
against plain greedy decoding and the text-only (EAGLE) draft in the same request."""
from __future__ import annotations

import json

import gradio as gr
import numpy as np

from adapters.common.errors import BadInput
from adapters.common.imaging import read_rgb_image
from adapters.speculative.codec import TextCodec
from adapters.vispec import SPEC
from adapters.vispec.config import (
    DEFAULT_DRAFT_TOKENS,
    DEFAULT_MAX_NEW_TOKENS,
    DESCRIBE,
    DRAFT_NAMES,
    DRAFTS,
    MAX_DRAFT_TOKENS,
    MAX_NEW_TOKENS,
    MAX_QUESTION_CHARS,
    make_request,
)
from studio import settings
from studio.loader import bundled_dir
from studio.registry import tab_info
from studio.shell import Shell
from studio.speculative_view import colored_html, comparison_rows, identical_text
from studio.ui import call_device, done_markdown, download_path, friendly, get_model, stopwatch, upload_path
from studio.uploads import ImageFile, pixel_limit_text

KEY = SPEC.key
INFO = tab_info(SPEC, api_names=("vispec_generate",))
IMAGE_SIDE = 224
MAX_UPLOAD_SIDE = 8192
MAX_UPLOAD_PIXELS = 24_000_000
EXAMPLE_DIR = bundled_dir(SPEC) / "examples"
TITLES = {"vision": {"draft": "drafted by the vision-aware draft, accepted by the full model", "full": "from the full model"},
          "text": {"draft": "drafted by the text-only draft, accepted by the full model", "full": "from the full model"}}
DRAFT_CHOICES = [(DRAFT_NAMES[d], d) for d in DRAFTS]


def _draft_key(value) -> str:
    for key, label in DRAFT_NAMES.items():
        if value in (key, label):
            return key
    return str(value)


def picture(image_file) -> np.ndarray:
    """The upload as 224 x 224 RGB (what the vision encoder sees), bounded before decoding."""
    from PIL import Image

    if image_file is None:
        raise BadInput("No picture: upload one or pick an example.")
    rgb = read_rgb_image(upload_path(image_file), max_side=MAX_UPLOAD_SIDE, max_pixels=MAX_UPLOAD_PIXELS)
    return np.asarray(Image.fromarray(rgb).resize((IMAGE_SIDE, IMAGE_SIDE), Image.BICUBIC), np.uint8)


def codec(bundle) -> TextCodec:
    return TextCodec(bundle.encode, bundle.decode, None, bundle.end_id)


def stats_markdown(out) -> str:
    columns = [(f"{DRAFT_NAMES[d]} draft", out.drafted[d]) for d in out.drafted]
    if not columns:
        g = out.greedy
        return (f"Draft off: plain greedy decoding only, {len(g.tokens)} tokens in {g.seconds:.3f} s "
                f"({1e3 * g.seconds / max(1, len(g.tokens)):.1f} ms per token).")
    rows = comparison_rows(columns, out.greedy)
    rows.append(f"\nUp to {out.draft_tokens} draft tokens per pass; draft head: the full model's output rows for "
                f"{out.draft_vocab_size:,} tokens; prompt {out.prompt_tokens} tokens ({out.image_tokens} of them image tokens).")
    return "\n".join(rows)


@friendly("Decoding")
def run(image_file, question, max_new_tokens=DEFAULT_MAX_NEW_TOKENS, draft_tokens=DEFAULT_DRAFT_TOKENS,
        draft="vision", use_draft=True, progress=gr.Progress()):
    """Returns (coloured output of the chosen draft, of the other draft, comparison table, status, JSON file)."""
    with stopwatch() as elapsed:
        # Everything is checked here, in the web process, before any device work.
        request = make_request(picture(image_file), question, max_new_tokens, draft_tokens, _draft_key(draft),
                               bool(use_draft))
        loaded = get_model(SPEC)
        if request.draft not in loaded.value.drafts:
            raise BadInput("This model source has only the vision-aware draft (the official head); choose it.")
        device_run = call_device(KEY, "run", request, progress)
    out = device_run.result
    text = codec(loaded.value)
    shown = f"[picture] {request.question}\n"
    views = []
    order = list(out.drafted) or []
    for which in order:
        decoded = out.drafted[which]
        views.append(colored_html(shown, text.pieces([], decoded.tokens), decoded.sources, TITLES[which]))
    if not views:
        views.append(colored_html(shown, text.pieces([], out.greedy.tokens), out.greedy.sources))
    while len(views) < 2:
        views.append("")
    greedy = out.greedy
    chosen = out.chosen
    if chosen is not None:
        extra = (f"{DRAFT_NAMES[out.draft]} draft {chosen.seconds:.2f} s vs plain greedy {greedy.seconds:.2f} s "
                 f"({greedy.seconds / chosen.seconds:.2f}x), {chosen.tokens_per_pass:.2f} tokens per pass; "
                 f"identical to greedy: {identical_text(chosen, greedy)}. Model: {loaded.source}.")
    else:
        extra = f"Plain greedy only (draft off). Model: {loaded.source}."
    status = done_markdown(elapsed(), device_run.device, extra)
    if loaded.notice:
        status += f"\n\n{loaded.notice}"
    path = download_path("vispec_result.json")
    path.write_text(json.dumps({
        "question": request.question,
        "settings": {"max_new_tokens": request.max_new_tokens, "draft_tokens": request.draft_tokens,
                     "draft": request.draft, "draft_on": request.use_draft, "draft_vocabulary": out.draft_vocab_size},
        "text": text.decode(greedy.tokens), "greedy_tokens": greedy.tokens,
        "drafts": {which: {"tokens": d.tokens, "sources": d.sources, "identical_to_greedy": d.tokens == greedy.tokens,
                           "seconds": d.seconds, "tokens_per_pass": d.tokens_per_pass,
                           "acceptance_rate": d.acceptance_rate, "speedup": greedy.seconds / d.seconds}
                   for which, d in out.drafted.items()},
        "identical_to_greedy": out.identical, "greedy_seconds": greedy.seconds,
        "device": device_run.device, "model": out.model,
    }, indent=2))
    return views[0], views[1], stats_markdown(out), status, str(path)


def _example(name: str) -> str:
    return str(EXAMPLE_DIR / name)


EXAMPLES = [
    [_example("scene_gravel.png"), DESCRIBE, DEFAULT_MAX_NEW_TOKENS, DEFAULT_DRAFT_TOKENS, "vision", True],
    [_example("scene_print.png"), "Describe the scene: the objects, their colours, shapes and places.",
     DEFAULT_MAX_NEW_TOKENS, DEFAULT_DRAFT_TOKENS, "vision", True],
    [_example("scene_cameraman.png"), "What do you see in this picture? Describe every object.",
     DEFAULT_MAX_NEW_TOKENS, 6, "text", True],
    [_example("cat.png"), "Tell me about this image.", 48, DEFAULT_DRAFT_TOKENS, "vision", True],
    [_example("scene_gravel.png"), DESCRIBE, 32, DEFAULT_DRAFT_TOKENS, "vision", False],
]

BAD_INPUTS = [
    ([_example("scene_gravel.png"), "   ", 16, 4, "vision", True], "question is empty"),
    ([None, DESCRIBE, 16, 4, "vision", True], "No picture"),
    ([_example("scene_gravel.png"), DESCRIBE, 500, 4, "vision", True], f"from 1 to {MAX_NEW_TOKENS}"),
    ([_example("scene_gravel.png"), DESCRIBE, 16, 0, "vision", True], f"from 1 to {MAX_DRAFT_TOKENS}"),
    ([_example("scene_gravel.png"), "x" * (MAX_QUESTION_CHARS + 1), 16, 4, "vision", True], f"at most {MAX_QUESTION_CHARS}"),
    ([_example("scene_gravel.png"), DESCRIBE, float("nan"), 4, "vision", True], "Max new tokens"),
    ([_example("scene_gravel.png"), DESCRIBE, 16, 4, "sideways", True], "Choose the draft"),
    ([str(bundled_dir(SPEC) / "figures.json"), DESCRIBE, 16, 4, "vision", True], "not an image we can read"),
]


def build() -> None:
    shell = Shell(INFO)
    params = shell.header("(the vision-aware draft; the target is frozen)")
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            image = ImageFile(type="filepath", image_mode=None,
                              label=f"Picture (resized to 224x224; {pixel_limit_text(MAX_UPLOAD_PIXELS, MAX_UPLOAD_SIDE)})",
                              format=settings.IMAGE_FORMAT, height=240, elem_id=f"{KEY}-image")
            question = gr.Textbox(label="Question or instruction", lines=2, max_length=MAX_QUESTION_CHARS, value=DESCRIBE,
                                  elem_id=f"{KEY}-question")
            with gr.Row():
                use_draft = gr.Checkbox(value=True, label="Draft on (off: plain greedy only)")
                draft = gr.Radio(DRAFT_CHOICES, value="vision", label="Draft shown first")
            with gr.Row():
                max_new = gr.Slider(1, MAX_NEW_TOKENS, value=DEFAULT_MAX_NEW_TOKENS, step=1, label="Max new tokens")
                draft_tokens = gr.Slider(1, MAX_DRAFT_TOKENS, value=DEFAULT_DRAFT_TOKENS, step=1,
                                         label="Draft tokens per verification pass")
            button = shell.run_button("Generate")
        with gr.Column(scale=1, min_width=300):
            status = shell.status()
            stats = gr.Markdown(elem_id=f"{KEY}-stats")
    with gr.Row():
        with gr.Column(min_width=300):
            gr.Markdown("**Chosen draft** (green: drafted and accepted, orange: full model)")
            first = gr.HTML(elem_id=f"{KEY}-first")
        with gr.Column(min_width=300):
            gr.Markdown("**The other draft, same request** (the text is the same; who produced it differs)")
            second = gr.HTML(elem_id=f"{KEY}-second")
    download = gr.File(label="Download tokens, sources and timings (JSON)")
    inputs = [image, question, max_new, draft_tokens, draft, use_draft]
    shell.examples(EXAMPLES, inputs, label="Examples (held-out synthetic scenes and a real photograph; then Generate)")
    shell.figures()
    shell.on_run(button, run, inputs, [first, second, stats, status, download], params=params,
                 params_note="(the vision-aware draft; the target is frozen)", lane="quick")
