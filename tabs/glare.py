"""Few-label land cover on a real Landsat-7 scene: GLARE-style self-supervised UniAdapters on a
frozen DINOv2-S, adapted vs frozen features side by side, with a PCA view of both."""
from __future__ import annotations

import functools
from pathlib import Path

import gradio as gr
import numpy as np

from adapters.common.errors import BadInput
from adapters.glare import SPEC
from adapters.glare.config import FRACTION_LABELS, MAX_SIDE, MIN_SIDE, SegmentRequest, fraction, loss_set
from adapters.glare.data import WINDOW, WINDOW_ROWS, heldout_window
from adapters.glare.modeling import LOSS_SETS
from studio import settings
from studio.loader import bundled_dir
from studio.registry import tab_info
from studio.shell import Shell
from studio.ui import call_device, done_markdown, download_path, friendly, get_model, stopwatch, upload_path
from studio.uploads import ImageFile

INFO = tab_info(SPEC, api_names=("glare_segment",))
KEY = INFO.key
UPLOAD = "Your upload"
MAX_UPLOAD_PIXELS = MAX_SIDE * MAX_SIDE


def window_names() -> list[str]:
    return [f"Held-out window {i + 1} (rows {y}-{y + WINDOW - 1})" for i, y in enumerate(WINDOW_ROWS)]


def _window(choice: str) -> tuple[np.ndarray, np.ndarray]:
    names = window_names()
    if choice not in names:
        raise BadInput(f"Unknown example '{choice}': pick a held-out window or '{UPLOAD}'.")
    return heldout_window(names.index(choice))


def _read_upload(upload) -> np.ndarray:
    from adapters.common.imaging import read_rgb_image

    return read_rgb_image(upload_path(upload), min_side=32, max_side=MAX_SIDE, max_pixels=MAX_UPLOAD_PIXELS)


def _image(choice: str, upload) -> tuple[np.ndarray, np.ndarray | None, str]:
    """The image (H x W x 3 float in [0, 1]), its labels when known, and a note on what was done.
    An upload is checked even when an example is chosen: a bad file gets its sentence."""
    rgb = _read_upload(upload) if upload else None
    if choice != UPLOAD:
        return (*_window(choice), "")
    if rgb is None:
        rgb = _read_upload(upload)  # says that nothing was uploaded
    from adapters.common.imaging import enlarge_to_tile

    h, w = rgb.shape[:2]
    if max(h, w) * MIN_SIDE > MAX_SIDE * min(h, w):
        raise BadInput(f"The image is too elongated ({w}x{h}): its shorter side must be at least "
                       f"{MIN_SIDE}/{MAX_SIDE} of its longer side.")
    rgb, note = enlarge_to_tile(rgb, MIN_SIDE)
    return rgb.astype(np.float32) / 255.0, None, note


def _scores_markdown(rows, loss: str, frac: float) -> str:
    if not rows:
        return ("No labels for this image: the maps show what each head predicts, with nothing to score them "
                "against. The held-out windows carry the scene's real labelled pixels.")
    lines = ["| features + own head | mIoU | accuracy | pixels |", "|---|---|---|---|"]
    names = {"adapted": f"adapted ({loss})", "frozen": "frozen"}
    for name, miou, acc, n in rows:
        lines.append(f"| {names[name]} | {miou:.3f} | {acc:.3f} | {n} |")
    return ("\n".join(lines) + f"\n\nScored on the window's labelled pixels. Both heads were fitted on the same {frac * 100:g}% of the training region's labelled "
            "pixels; a window holds only a few hundred labelled pixels, so one window's score is noisy: the curve "
            "below is the measured comparison.")


@friendly("Segmenting")
def run(choice, upload, loss_name, fraction_name, progress=gr.Progress()):
    """Segment a held-out window (or your upload) with adapted and with frozen features."""
    from adapters.glare import viz

    chosen_loss = loss_set(loss_name)
    chosen_fraction = fraction(fraction_name)
    image, labels, note = _image(choice, upload)
    with stopwatch() as elapsed:
        frozen_name = get_model(SPEC).value.frozen_name
        request = SegmentRequest(image=image, labels=labels, loss_set=chosen_loss, fraction=chosen_fraction).check()
        out = call_device(KEY, "run", request, progress)
        r = out.result
        empty = viz.no_data(image)
        panels = (viz.with_labels(image, labels), viz.class_map(r.adapted, empty), viz.class_map(r.frozen, empty),
                  viz.enlarge(viz.to_uint8(r.pca_frozen)), viz.enlarge(viz.to_uint8(r.pca_adapted)))
        change = (f"**Feature change:** mean cosine distance between adapted and frozen patch features "
                  f"{r.feature_change:.3f} (0 = unchanged).")
        mask_file = viz.save_classes_png(r.adapted, download_path("glare_landcover.png"))
    status = done_markdown(elapsed(), out.device, f"{note}{r.tiles} tile(s) of {MIN_SIDE} px, adapted and frozen. "
                                                  f"Frozen model: {frozen_name}.")
    return (*panels, _scores_markdown(r.scores, chosen_loss, chosen_fraction) + "\n\n" + change, str(mask_file), status)


@functools.lru_cache(maxsize=1)
def curve_image() -> str | None:
    """The measured curve from figures.json, drawn once per process."""
    from adapters.common import figures
    from adapters.glare import viz

    try:
        figs = figures.load(bundled_dir(SPEC))
    except (OSError, ValueError):
        return None
    curve = (figs or {}).get("data", {}).get("curve")
    if not curve:
        return None
    path = viz.curve_png(curve, download_path("glare_curve.png"))
    return str(path) if path else None


_NAMES = window_names()
# rows of run's inputs: example window, upload, loss set, labelled fraction
EXAMPLES = [
    [_NAMES[3], None, LOSS_SETS[2], FRACTION_LABELS[0]],
    [_NAMES[2], None, LOSS_SETS[2], FRACTION_LABELS[1]],
    [_NAMES[0], None, LOSS_SETS[0], FRACTION_LABELS[0]],
    [_NAMES[1], None, LOSS_SETS[1], FRACTION_LABELS[3]],
]
BAD_INPUTS = [
    ([UPLOAD, str(Path(__file__).resolve()), LOSS_SETS[2], FRACTION_LABELS[0]], "not an image we can read"),
    ([UPLOAD, None, LOSS_SETS[2], FRACTION_LABELS[0]], "No file was given"),
    ([_NAMES[0], None, "global+colour", FRACTION_LABELS[0]], "Unknown loss set"),
    ([_NAMES[0], None, LOSS_SETS[2], "50%"], "labelled fraction must be one of"),
]


def build() -> None:
    from adapters.glare.viz import legend_markdown

    shell = Shell(INFO)
    params = shell.header()
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            choice = gr.Dropdown(_NAMES + [UPLOAD], value=_NAMES[3],
                                 label="Image: a held-out window of the scene (with its labelled pixels), or your upload")
            upload = ImageFile(type="filepath", image_mode=None,
                               label=f"Your RGB tile (used when '{UPLOAD}' is chosen; at most {MAX_SIDE} px a side)",
                               format=settings.IMAGE_FORMAT, height=180)
            loss = gr.Radio(list(LOSS_SETS), value=LOSS_SETS[2], label="Self-supervised loss set (a separate checkpoint each)")
            frac = gr.Radio(list(FRACTION_LABELS), value=FRACTION_LABELS[0],
                            label="Labelled fraction the linear heads were fitted on")
            button = shell.run_button("Segment")
        with gr.Column(scale=2, min_width=300):
            status = shell.status()
            with gr.Row():
                shown = gr.Image(label="Input (labelled pixels painted in)", format=settings.IMAGE_FORMAT, interactive=False, min_width=280)
                on = gr.Image(label="Adapted features + head", format=settings.IMAGE_FORMAT, interactive=False, min_width=280)
                off = gr.Image(label="Frozen features + head", format=settings.IMAGE_FORMAT, interactive=False, min_width=280)
            gr.Markdown(legend_markdown())
            with gr.Row():
                pca_off = gr.Image(label="PCA of patch features: frozen", format=settings.IMAGE_FORMAT, interactive=False, min_width=280)
                pca_on = gr.Image(label="PCA of patch features: adapted", format=settings.IMAGE_FORMAT, interactive=False, min_width=280)
            metrics = gr.Markdown()
            mask_file = gr.File(label="Adapted land-cover map (PNG, pixel value = class code 1..7)")
    gr.Image(value=curve_image(), label="Held-out mIoU vs labelled fraction (measured, three seeds)",
             format=settings.IMAGE_FORMAT, interactive=False, elem_id=f"{KEY}-curve")
    shell.figures()
    inputs = [choice, upload, loss, frac]
    shell.examples(EXAMPLES, inputs, label="Examples (held-out windows, different loss sets and fractions)")
    outputs = [shown, on, off, pca_off, pca_on, metrics, mask_file, status]
    shell.on_run(button, run, inputs, outputs, params=params)
    upload.upload(lambda: UPLOAD, None, choice, queue=False, api_visibility="private")
