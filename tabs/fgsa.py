"""Camouflaged objects: FGSA, a frequency-guided spatial adapter on a frozen DINOv2-S, with editable rings."""
from __future__ import annotations

import json

import gradio as gr
import numpy as np

from adapters.common.errors import BadInput
from adapters.fgsa import SPEC
from adapters.fgsa.config import BAND_NAMES, PRESETS, SLIDER_MAX, EditRequest, SegmentRequest, band_scales, check_site
from studio import settings
from studio.loader import MODELS, bundled_dir
from studio.registry import tab_info
from studio.shell import LIGHT, Shell
from studio.study.fgsa import FGSA as STUDY_KIND  # noqa: F401  (the blinded reader-study variants of this tab)
from studio.ui import call_device, done_markdown, download_path, friendly, get_model, stopwatch, upload_path
from studio.uploads import ImageFile, pixel_limit_text

INFO = tab_info(SPEC, api_names=("fgsa_segment",))
KEY = INFO.key
ASSET_DIR = bundled_dir(SPEC)
EXAMPLE_DIR = ASSET_DIR / "examples"
SITES = ("c1", "c2", "x1", "x2")
SITE_LABELS = {
    "c1": "c1: conv branch, 1/4 resolution (56x56)",
    "c2": "c2: conv branch, 1/8 resolution (28x28)",
    "x1": "x1: DINOv2 patch tokens after blocks 8-9 (16x16)",
    "x2": "x2: DINOv2 patch tokens after blocks 10-11 (16x16)",
}
BANDS = BAND_NAMES


def _examples() -> list[list]:
    index = EXAMPLE_DIR / "examples.json"
    if not index.is_file():
        return []
    rows = []
    for item in json.loads(index.read_text()):
        rows.append([str(EXAMPLE_DIR / item["image"]), str(EXAMPLE_DIR / item["mask"]) if item.get("mask") else None,
                     item.get("site", "c1"), *item.get("bands", [1.0] * 5)])
    return rows


# rows of run's inputs: image, ground-truth mask, site, the five band scales (all_sites stays False)
EXAMPLES = _examples()
_FIRST = EXAMPLES[0][0] if EXAMPLES else str(EXAMPLE_DIR / "00.png")
BAD_INPUTS = [
    ([str(EXAMPLE_DIR / "examples.json"), None, "c1", 1, 1, 1, 1, 1], "not an image we can read"),
    ([_FIRST, None, "c1", 1, 1, 9, 1, 1], "between 0 and 4"),
    ([None, None, "c1", 1, 1, 1, 1, 1], "No file was given"),
    ([_FIRST, None, "c9", 1, 1, 1, 1, 1], "Unknown adapter site"),
]


def _metrics_markdown(gt, results: dict) -> str:
    if gt is None:
        return "No ground truth for this image: upload a mask to see S-measure and MAE."
    from adapters.fgsa.metrics import sod_metrics

    lines = ["| | S-measure ↑ | MAE ↓ |", "|---|---|---|"]
    for name, prob in results.items():
        if prob is None:
            continue
        m = sod_metrics([prob], [gt], which=("S", "MAE"))
        lines.append(f"| {name} | {m['S']:.3f} | {m['MAE']:.3f} |")
    return "\n".join(lines)


def _render(state: dict, prob: np.ndarray, site_info):
    """Pictures, metrics and the band table from plain results (no model needed)."""
    from adapters.fgsa import viz

    rgb_small = state["rgb_small"]
    frozen = state.get("frozen")
    panels = {
        "adapter": viz.overlay(rgb_small, prob),
        "frozen": viz.overlay(rgb_small, frozen, colour=(40, 120, 255)) if frozen is not None else None,
    }
    spectrum = before_after = None
    bands_md = ""
    if site_info is not None:
        spectrum = viz.spectrum_panel(site_info, site_info.stride)
        before_after = viz.attention_pair(site_info.learned_attention[0], site_info.attention[0])
        bands_md = site_info.band_text
    results = {"FGSA adapter (your edit)": prob, "FGSA adapter (learned gains)": state.get("learned"),
               "Adapter off: frozen backbone + head": frozen}
    metrics = _metrics_markdown(state.get("gt"), results)
    mask_file = viz.save_mask_png(prob, state["original_hw"], download_path("fgsa_mask.png"))
    return panels, spectrum, before_after, metrics, bands_md, mask_file


@friendly("Segmenting")
def run(image_file, gt_file, site, dc, low, mid_low, mid_high, high, all_sites=False, progress=gr.Progress()):
    """Upload or example -> masks with and without the adapter, spectrum, attention, metrics."""
    from adapters.fgsa import io

    bands = band_scales(dc, low, mid_low, mid_high, high)
    rgb = io.read_rgb(upload_path(image_file))
    with stopwatch() as elapsed:
        loaded = get_model(SPEC)  # in this process: the sites and input size to validate against
        bundle = loaded.value
        check_site(site, bundle.adapter.site_names())
        size = bundle.image_size
        image = io.to_model_input(rgb, size)
        gt = io.read_mask(upload_path(gt_file), size, image_hw=rgb.shape[:2]) if gt_file else None
        request = SegmentRequest(image=image, site=str(site), bands=bands, all_sites=bool(all_sites))
        out = call_device(KEY, "run", request, progress)
        result = out.result
        state = {"image": image, "embedded": result.embedded, "gt": gt, "frozen": result.frozen_prob,
                 "learned": result.learned_prob, "rgb_small": (image[0].transpose(1, 2, 0) * 255).round().astype("uint8"),
                 "original_hw": rgb.shape[:2]}
        panels, spectrum, before_after, metrics, bands_md, mask_file = _render(state, result.prob, result.site)
    note = f"Resized from {rgb.shape[1]}x{rgb.shape[0]} to {size}x{size}." if rgb.shape[:2] != (size, size) else ""
    if loaded.notice:
        note += f" {loaded.notice}"
    status = done_markdown(elapsed(), out.device, note)
    return (panels["adapter"], panels["frozen"], spectrum, before_after, metrics, bands_md, str(mask_file), status, state)




@friendly("Re-rendering")
def rerender(state, site, dc, low, mid_low, mid_high, high, all_sites=False):
    """A band edit: re-run only the adapter path from the cached frozen prefix (this session's
    image); the frozen baseline is reused."""
    if not state:
        raise BadInput("Run the segmentation first (pick an example or upload an image).")
    bundle = MODELS.get(SPEC).value  # already loaded by the run; its notice was shown then
    check_site(site, bundle.adapter.site_names())
    bands = band_scales(dc, low, mid_low, mid_high, high)
    with stopwatch() as elapsed:
        request = EditRequest(image=state["image"], embedded=state["embedded"], site=str(site), bands=bands,
                              all_sites=bool(all_sites))
        out = call_device(KEY, "rerender", request)
        panels, spectrum, before_after, metrics, bands_md, mask_file = _render(state, out.result.prob, out.result.site)
    status = f"Re-rendered in {elapsed() * 1000:.0f} ms on {out.device} (frozen prefix and baseline cached for this session)."
    return panels["adapter"], spectrum, before_after, metrics, bands_md, str(mask_file), status


def rerender_if_ready(state, *args):
    if not state:
        return [gr.skip()] * 7
    return rerender(state, *args)


def build() -> None:
    from adapters.fgsa import io

    shell = Shell(INFO)
    params = shell.header()
    state = shell.session_state()
    with gr.Row():
        with gr.Column(scale=1):
            image = ImageFile(type="filepath", image_mode=None, format=settings.IMAGE_FORMAT, height=220,
                              label=f"Image ({pixel_limit_text(io.MAX_PIXELS, io.MAX_SIDE)})")
            gt = ImageFile(type="filepath", image_mode=None, format=settings.IMAGE_FORMAT, height=160,
                           label=f"Ground-truth mask (optional; {pixel_limit_text(io.MAX_PIXELS, io.MAX_SIDE)})")
            site = gr.Dropdown([(SITE_LABELS[s], s) for s in SITES], value="c1", label="Adapter site (FGSAttn) to inspect and edit")
            all_sites = gr.Checkbox(False, label="Apply the band scales at every FGSAttn site")
            sliders = [gr.Slider(0, SLIDER_MAX, value=1, step=0.05, label=f"{name} band") for name in BANDS]
            with gr.Row():
                presets = {name: gr.Button(name, size="sm") for name in ("low-pass", "high-pass", "band-stop", "reset")}
            button = shell.run_button("Segment")
        with gr.Column(scale=2):
            status = shell.status()
            with gr.Row():
                with_adapter = gr.Image(label="FGSA adapter on (red)", format=settings.IMAGE_FORMAT, interactive=False)
                without = gr.Image(label="Adapter off: frozen backbone + head (blue)", format=settings.IMAGE_FORMAT, interactive=False)
            with gr.Row():
                spectrum = gr.Image(label="Spectrum of the pooled map, rings coloured by gain (blue low, red high)", format=settings.IMAGE_FORMAT, interactive=False)
                attention = gr.Image(label="Attention map: learned gains | your edit (same colour scale)", format=settings.IMAGE_FORMAT, interactive=False)
            bands_md = gr.Markdown()
            metrics = gr.Markdown()
            mask_file = gr.File(label="Predicted mask (PNG, original size)")
    shell.figures()
    shell.examples(EXAMPLES, [image, gt, site, *sliders], label="Examples (held-out scenes: photographs and shapes never seen in training)")

    inputs = [image, gt, site, *sliders, all_sites]
    shell.on_run(button, run, inputs, [with_adapter, without, spectrum, attention, metrics, bands_md, mask_file, status, state],
                 params=params, lane="quick")
    edit_outputs = [with_adapter, spectrum, attention, metrics, bands_md, mask_file, status]
    edit_inputs = [state, site, *sliders, all_sites]
    # edits are light: they re-run only the adapter path on this session's cached image
    private = dict(api_visibility="private", **LIGHT)
    for slider in sliders:
        slider.release(rerender_if_ready, edit_inputs, edit_outputs, api_name="fgsa_edit_band", **private)
    for control in (site, all_sites):
        control.change(rerender_if_ready, edit_inputs, edit_outputs, api_name="fgsa_edit_site", **private)
    for name, button_ in presets.items():
        button_.click(lambda n=name: list(PRESETS[n]), None, sliders, queue=False, api_visibility="private").then(
            rerender_if_ready, edit_inputs, edit_outputs, api_name="fgsa_edit_preset", **private)
