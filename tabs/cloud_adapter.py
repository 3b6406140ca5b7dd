"""Clouds on a real Landsat-7 scene: Cloud-Adapter on a frozen DINOv2-S, with a live cloud simulator."""
from __future__ import annotations

from pathlib import Path

import gradio as gr
import numpy as np

from adapters.cloud_adapter import SPEC
from adapters.cloud_adapter.config import MAX_UPLOAD_SIDE, STRENGTH_MAX, SegmentRequest, cloud_settings, strength
from adapters.common.errors import BadInput
from studio import settings
from studio.registry import tab_info
from studio.shell import HEAVY, Shell
from studio.ui import call_device, done_markdown, download_path, friendly, get_model, stopwatch, upload_path
from studio.uploads import ImageFile

INFO = tab_info(SPEC, api_names=("cloud_adapter_segment",))
KEY = INFO.key
TILE = 112
UPLOAD = "Your upload"


def tile_names() -> list[str]:
    from adapters.cloud_adapter.data import heldout_corners

    return [f"Held-out tile {i + 1} (row {y}, column {x})" for i, (y, x) in enumerate(heldout_corners())]


def _tile_corner(choice: str) -> tuple[int, int]:
    from adapters.cloud_adapter.data import heldout_corners

    names = tile_names()
    if choice not in names:
        raise BadInput(f"Unknown tile '{choice}': pick a held-out tile or '{UPLOAD}'.")
    return heldout_corners()[names.index(choice)]


MIN_UPLOAD_SIDE = 32  # smaller than this is a thumbnail, not a scene to segment
MAX_UPLOAD_PIXELS = MAX_UPLOAD_SIDE * MAX_UPLOAD_SIDE


def _read_upload(upload) -> np.ndarray:
    from adapters.common.imaging import read_rgb_image

    return read_rgb_image(upload_path(upload), min_side=MIN_UPLOAD_SIDE, max_side=MAX_UPLOAD_SIDE,
                          max_pixels=MAX_UPLOAD_PIXELS)


def _ground(choice: str, upload) -> tuple[np.ndarray, str]:
    """The clear ground (H x W x 3 float in [0, 1]) and a note on what was done to it. An upload is
    checked even when a held-out tile is chosen: a bad file gets its sentence, never silently ignored."""
    rgb = _read_upload(upload) if upload else None
    if choice != UPLOAD:
        from adapters.cloud_adapter.data import clear_tile

        return clear_tile("heldout", _tile_corner(choice)), ""
    if rgb is None:
        rgb = _read_upload(upload)  # says that nothing was uploaded
    from adapters.common.imaging import enlarge_to_tile

    rgb, note = enlarge_to_tile(rgb, TILE)
    return rgb.astype(np.float32) / 255.0, note


def _metrics_markdown(labels, results: dict) -> str:
    if labels is None:
        return "No known mask: per-class IoU needs simulated clouds (tick 'Add simulated clouds')."
    from adapters.cloud_adapter.inference import iou_rows
    from adapters.cloud_adapter.simulate import CLASSES

    lines = ["| model | " + " | ".join(f"IoU {c}" for c in CLASSES) + " | mIoU |", "|---" * (len(CLASSES) + 2) + "|"]
    for name, pred in results.items():
        if pred is None:
            continue
        s = iou_rows(pred, labels)
        cells = ["–" if not np.isfinite(v) else f"{v:.3f}" for v in s["iou"]]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {s['miou']:.3f} |")
    return "\n".join(lines) + "\n\n– : class absent from both the mask and the prediction (left out of the mean)."


@friendly("Segmenting")
def run(choice, upload, add_clouds, coverage, thickness, thin_mix, shadow_offset, cloud_seed, adapter_strength,
        shallow=True, middle=True, deep=True, with_lora=False, progress=gr.Progress()):
    """Cloud a held-out tile (or your upload), then segment it with and without the adapter."""
    from adapters.cloud_adapter import viz
    from adapters.cloud_adapter.simulate import simulate

    level = strength(adapter_strength)
    clouds = cloud_settings(coverage, thickness, thin_mix, shadow_offset, cloud_seed) if add_clouds else None
    ground, note = _ground(choice, upload)
    with stopwatch() as elapsed:
        frozen_name = get_model(SPEC).value.frozen_name  # loaded once per process; says which checkpoint runs
        image, labels = (simulate(ground, clouds)[:2] if clouds is not None else (ground, None))
        request = SegmentRequest(image=image, labels=labels, strength=level, shallow=bool(shallow), middle=bool(middle),
                                 deep=bool(deep), lora=bool(with_lora))
        out = call_device(KEY, "run", request, progress)
        r = out.result
        panels = (viz.enlarge(viz.to_uint8(image)), viz.overlay(image, r.adapter),
                  viz.overlay(image, r.frozen) if r.frozen is not None else None)
        metrics = _metrics_markdown(labels, {"Cloud-Adapter (your settings)": r.adapter, "Adapter off: frozen backbone + head": r.frozen,
                                             "LoRA-only (no context branch)": r.lora})
        context = viz.context_panel(r.context)
        update = " · ".join(f"block {b}: {v:.2f}" for b, v in r.update) or "adapter off at every depth (or strength 0)"
        mask_file = viz.save_mask_png(r.adapter, download_path("cloud_adapter_mask.png"))
    status = done_markdown(elapsed(), out.device, f"{note}{r.tiles} tile(s), {r.seconds_per_tile:.2f} s per tile for "
                                                  f"every model shown. Frozen model: {frozen_name}.")
    return (*panels, metrics, context, f"**Adapter update size per block** (mean |update| / mean |token|): {update}",
            str(mask_file), status)


def run_live(choice, upload, *rest, progress=gr.Progress()):
    """A slider or switch moved: re-run, unless the upload it would need is not there yet."""
    if choice == UPLOAD and not upload:
        return [gr.skip()] * 8
    return run(choice, upload, *rest, progress=progress)


def _examples() -> list[list]:
    names = tile_names()
    pick = lambda i: names[min(i, len(names) - 1)]  # noqa: E731
    return [
        [pick(2), None, True, 0.4, 0.9, 0.5, 10, 1, 1.0, True, True, True, True],
        [pick(7), None, True, 0.6, 0.5, 0.9, 16, 4, 1.0, True, True, True, False],
        [pick(11), None, True, 0.3, 1.0, 0.0, 25, 7, 1.0, True, True, True, False],
        [pick(4), None, True, 0.5, 0.8, 0.6, 12, 3, 1.0, False, False, True, False],
    ]


# rows of run's inputs: tile, upload, add clouds, coverage, thickness, thin mix, shadow offset, seed,
# strength, shallow, middle, deep, LoRA-only
EXAMPLES = _examples()
_FIRST = EXAMPLES[0][0]
BAD_INPUTS = [
    ([UPLOAD, str(Path(__file__).resolve()), False, 0.3, 0.9, 0.5, 10, 0, 1.0], "not an image we can read"),
    ([_FIRST, None, True, 0.3, 0.9, 0.5, 99, 0, 1.0], "shadow offset must lie between"),
    ([_FIRST, None, True, 0.3, 0.9, 0.5, 10, 0, float("nan")], "strength must lie between"),
    ([UPLOAD, None, True, 0.3, 0.9, 0.5, 10, 0, 1.0], "No file was given"),
    # an upload is checked even while a held-out tile is chosen
    ([_FIRST, str(Path(__file__).resolve()), True, 0.3, 0.9, 0.5, 10, 0, 1.0], "not an image we can read"),
]


def build() -> None:
    from adapters.cloud_adapter.viz import legend_markdown

    shell = Shell(INFO)
    params = shell.header()
    names = tile_names()
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            choice = gr.Dropdown(names + [UPLOAD], value=names[0], label="Ground: a held-out tile of the scene, or your upload")
            upload = ImageFile(type="filepath", image_mode=None,
                               label=f"Your RGB tile (used when '{UPLOAD}' is chosen; {MIN_UPLOAD_SIDE} to {MAX_UPLOAD_SIDE} px a side)",
                              format=settings.IMAGE_FORMAT, height=180)
            add_clouds = gr.Checkbox(True, label="Add simulated clouds (gives a known mask)")
            with gr.Accordion("Cloud simulator", open=True):
                coverage = gr.Slider(0, 0.9, value=0.4, step=0.05, label="Coverage (fraction under cloud)")
                thickness = gr.Slider(0.1, 1.0, value=0.9, step=0.05, label="Thickness (peak opacity)")
                thin_mix = gr.Slider(0, 1, value=0.5, step=0.05, label="Thin/thick mix (0 hard-edged, 1 mostly thin veils)")
                shadow = gr.Slider(0, 40, value=10, step=1, label="Shadow offset (px; 0 hides the shadow under its cloud)")
                seed = gr.Number(1, precision=0, label="Cloud seed")
            with gr.Accordion("Adapter", open=True):
                level = gr.Slider(0, STRENGTH_MAX, value=1.0, step=0.05, label="Adapter strength (scale on its residual)")
                with gr.Row():
                    shallow = gr.Checkbox(True, label="shallow (blocks 0-3)", min_width=80)
                    middle = gr.Checkbox(True, label="middle (4-7)", min_width=80)
                    deep = gr.Checkbox(True, label="deep (8-11)", min_width=80)
                with_lora = gr.Checkbox(False, label="Also run the LoRA-only variant (no context branch)")
            button = shell.run_button("Segment")
        with gr.Column(scale=2, min_width=300):
            status = shell.status()
            with gr.Row():
                clouded = gr.Image(label="Input (clouded)", format=settings.IMAGE_FORMAT, interactive=False, min_width=150)
                on = gr.Image(label="Cloud-Adapter on", format=settings.IMAGE_FORMAT, interactive=False, min_width=150)
                off = gr.Image(label="Adapter off: frozen backbone + head", format=settings.IMAGE_FORMAT, interactive=False, min_width=150)
            gr.Markdown(legend_markdown())
            metrics = gr.Markdown()
            context = gr.Image(label="Context ConvNet: its stages and the pooled context the adapter reads (channel-mean magnitude)",
                               format=settings.IMAGE_FORMAT, interactive=False)
            update = gr.Markdown()
            mask_file = gr.File(label="Adapter mask (PNG, pixel value = class: 0 clear, 1 thick, 2 thin, 3 shadow)")
    shell.figures()
    inputs = [choice, upload, add_clouds, coverage, thickness, thin_mix, shadow, seed, level, shallow, middle, deep, with_lora]
    shell.examples(EXAMPLES, inputs, label="Examples (held-out tiles under different clouds)")
    outputs = [clouded, on, off, metrics, context, update, mask_file, status]
    shell.on_run(button, run, inputs, outputs, params=params)
    # a slider or switch re-runs the tile at once (one 112 px tile takes well under 2 s on one CPU thread);
    # these are model runs, so they share the heavy slot
    live = dict(api_visibility="private", **HEAVY)
    for control in (coverage, thickness, thin_mix, shadow, level):
        control.release(run_live, inputs, outputs, api_name="cloud_adapter_live", **live)
    for control in (shallow, middle, deep, add_clouds, with_lora, choice):
        control.input(run_live, inputs, outputs, api_name="cloud_adapter_live_switch", **live)
    upload.upload(lambda: UPLOAD, None, choice, queue=False, api_visibility="private")
