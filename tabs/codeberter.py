"""CodeBERTER tab: token types of pasted Python from a frozen encoder with the NER adapter (and from
a linear probe on its frozen features), scored against `ast`; and a bug search with a task adapter
above the NER adapter and one trained without it."""
from __future__ import annotations

import html
import json
import re
from pathlib import Path

import gradio as gr

from adapters.codeberter import SPEC
from adapters.codeberter.config import DEFAULT_SCALE, MAX_CODE_CHARS, MAX_SCALE, make_request
from adapters.codeberter.labels import TYPES
from studio.registry import tab_info
from studio.shell import Shell
from studio.ui import call_device, done_markdown, download_path, friendly, get_model, stopwatch

KEY = SPEC.key
INFO = tab_info(SPEC, api_names=("codeberter_run",))
EXAMPLES_FILE = Path(__file__).resolve().parents[1] / "assets" / KEY / "examples.json"

COLOURS = {"keyword": "#7c3aed", "builtin": "#0891b2", "function": "#2563eb", "class": "#db2777",
           "parameter": "#c2410c", "variable": "#15803d", "attribute": "#0d9488", "imported": "#9333ea",
           "string": "#a16207", "number": "#b91c1c", "operator": "#475569", "delimiter": "#64748b",
           "comment": "#6b7280"}
BOX_STYLE = ("white-space:pre;font-family:ui-monospace,monospace;font-size:0.85em;line-height:1.5;padding:8px;"
             "border-radius:6px;border:1px solid #8884;overflow:auto;max-height:460px")
KNOWN = re.compile(r"line (\d+), column (\d+): `([^`]*)` should be `([^`]*)`")


def _load_examples():
    rows = json.loads(EXAMPLES_FILE.read_text())
    out = []
    for row in rows:
        known = (f"line {row['line']}, column {row['column']}: `{row['wrong']}` should be `{row['right']}` "
                 f"({row['kind']})" if row["kind"] != "none" else "none: the function as the library has it")
        out.append([row["code"], DEFAULT_SCALE, known])
    return out


EXAMPLES = _load_examples()

BAD_INPUTS = [
    (["   ", 1.0, ""], "The code is empty"),
    (["def f(:\n    return", 1.0, ""], "Python cannot parse this code"),
    (["x = 1\n" * 400, 1.0, ""], f"at most {MAX_CODE_CHARS:,}"),
    (["x = 1\n", float("nan"), ""], "Set a number for the NER-adapter scale"),
    (["x = 1\n", 5.0, ""], "scale must lie between 0 and"),
]


def legend_html() -> str:
    return " ".join(f'<span style="color:{COLOURS[t]};font-weight:600">{t}</span>' for t in TYPES)


def overlay_html(code: str, spans, predicted, blamed=None) -> str:
    """The code with each token coloured by its predicted type; a wrong type is struck through in
    red (hover for the truth); ``blamed`` (start, end) is boxed."""
    parts, cursor = [], 0
    for (start, end, _text, truth), guess in zip(spans, predicted):
        parts.append(html.escape(code[cursor:start]))
        if not guess:
            style = "opacity:0.45"
            title = (f"not scored (it starts inside the previous token's subword, or lies past the model's input "
                     f"length); truth: {truth}")
        elif guess == truth:
            style, title = f"color:{COLOURS[guess]}", f"{guess} (correct)"
        else:
            style = f"color:{COLOURS[guess]};text-decoration:line-through wavy #dc2626"
            title = f"predicted {guess}, truth {truth}"
        if blamed and start == blamed[0]:
            style += ";outline:2px solid #dc2626;border-radius:3px"
        parts.append(f'<span style="{style}" title="{html.escape(title)}">{html.escape(code[start:end])}</span>')
        cursor = end
    parts.append(html.escape(code[cursor:]))
    return f'<div class="cb-code" style="{BOX_STYLE}">' + "".join(parts) + "</div>"


def _line_col(code: str, offset: int) -> tuple[int, int]:
    return code.count("\n", 0, offset) + 1, offset - (code.rfind("\n", 0, offset) + 1) + 1


def bug_markdown(code: str, guesses: dict, known: str) -> str:
    match = KNOWN.search(known or "")
    rows = ["| | blamed token | where | proposed fix | confidence | matches the injected bug |", "|---|---|---|---|---|---|"]
    for label, guess in guesses.items():
        line, col = _line_col(code, guess.start)
        if match:
            place = (line, col) == (int(match.group(1)), int(match.group(2)))
            verdict = ("**place and fix**" if place and guess.fix == match.group(4) else
                       "**place only**" if place else "no")
        else:
            verdict = "(no known bug)"
        rows.append(f"| {label} | `{guess.token}` | line {line}, column {col} | `{guess.fix}` | "
                    f"{guess.confidence:.0%} | {verdict} |")
    return "\n".join(rows)


@friendly("Typing the code")
def run(code, scale=DEFAULT_SCALE, known="", progress=gr.Progress()):
    """Returns (overlay with the NER adapter, overlay of the linear probe, accuracy table, bug table,
    bug view with the NER adapter, bug view without, status, JSON file)."""
    with stopwatch() as elapsed:
        request = make_request(code, scale)  # everything is checked here, before any device work
        loaded = get_model(SPEC)
        device_run = call_device(KEY, "run", request, progress)
    out = device_run.result
    with_adapter = overlay_html(out.code, out.spans, out.adapter_types)
    probe = overlay_html(out.code, out.spans, out.probe_types)
    accuracy = (f"| | accuracy against `ast` ({out.scored} of {out.total} tokens scored) |\n|---|---|\n"
                f"| NER adapter (scale {out.scale:g}) | **{out.adapter_accuracy:.1%}** |\n"
                f"| adapter off: linear probe on the frozen features | **{out.probe_accuracy:.1%}** |")
    guesses = {"task adapter above the NER adapter": out.bug_with_ner, "task adapter alone": out.bug_alone}
    bugs = bug_markdown(out.code, guesses, known)
    bug_views = [overlay_html(out.code, out.spans, [s[3] for s in out.spans], (g.start, g.end)) for g in guesses.values()]
    merged = out.total - out.scored - out.past_input
    cut = (f" {out.past_input} tokens lie past the model's input length (shown, not typed)." if out.past_input else "")
    cut += (f" {merged} tokens start inside the previous token's subword (e.g. `):`) and are not scored." if merged else "")
    status = done_markdown(elapsed(), device_run.device, f"Model: {loaded.source} ({out.model}).{cut}")
    if loaded.notice:
        status += f"\n\n{loaded.notice}"
    path = download_path("codeberter_result.json")
    path.write_text(json.dumps({
        "code": out.code, "ner_adapter_scale": out.scale,
        "tokens": [{"start": s[0], "end": s[1], "text": s[2], "truth": s[3], "ner_adapter": a, "probe": p}
                   for s, a, p in zip(out.spans, out.adapter_types, out.probe_types)],
        "accuracy": {"ner_adapter": out.adapter_accuracy, "linear_probe": out.probe_accuracy, "scored": out.scored,
                     "total": out.total},
        "bug": {k: {"token": g.token, "line_column": _line_col(out.code, g.start), "fix": g.fix,
                    "confidence": g.confidence} for k, g in guesses.items()},
        "device": device_run.device, "model": out.model,
    }, indent=2))
    return with_adapter, probe, accuracy, bugs, bug_views[0], bug_views[1], status, str(path)


def side_by_side(left: str, right: str) -> tuple[gr.HTML, gr.HTML]:
    """Two titled code views in one row (they stack on a phone)."""
    views = []
    with gr.Row():
        for title in (left, right):
            with gr.Column(min_width=300):
                gr.Markdown(title)
                views.append(gr.HTML())
    return views[0], views[1]


def build() -> None:
    shell = Shell(INFO)
    params = shell.header("(NER adapter and its head; the bug adapter adds as many again)")
    with gr.Row():
        with gr.Column(scale=2):
            code = gr.Code(value=EXAMPLES[0][0], language="python", label="Python code (a function or a few)",
                           lines=12, elem_id=f"{KEY}-code")
            scale = gr.Slider(0.0, MAX_SCALE, value=DEFAULT_SCALE, step=0.1,
                              label="NER-adapter scale (0 = off, 1 = as trained)")
            known = gr.Textbox(value=EXAMPLES[0][2], lines=1,
                               label="Known bug (filled by the examples; leave empty for your own code)")
            button = shell.run_button("Type tokens and find the bug")
        with gr.Column(scale=3):
            status = shell.status()
            accuracy = gr.Markdown()
            gr.HTML(f'<div style="font-size:0.85em">Types: {legend_html()}. Struck through in red: wrong type '
                    '(hover a token for the truth).</div>')
    with_adapter, probe = side_by_side("**NER adapter on**", "**Adapter off: linear probe on the frozen features**")
    gr.Markdown("### Find the bug (one misused variable or swapped operator)\n"
                "Both models always blame one token: they were trained only on functions with exactly one injected "
                "bug, so on correct code the blame is a guess (see its confidence).")
    bugs = gr.Markdown()
    bug_with, bug_alone = side_by_side("**Task adapter above the NER adapter** (boxed: the blamed token)",
                                       "**Task adapter alone** (trained the same way, no NER adapter)")
    download = gr.File(label="Download token types, accuracies and the bug guesses (JSON)")
    inputs = [code, scale, known]
    shell.examples(EXAMPLES, inputs, label="Held-out library functions with one injected bug (one click fills the inputs)")
    shell.figures()
    shell.on_run(button, run, inputs, [with_adapter, probe, accuracy, bugs, bug_with, bug_alone, status, download],
                 params=params, params_note="(NER adapter and its head; the bug adapter adds as many again)")
