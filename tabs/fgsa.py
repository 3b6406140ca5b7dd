"""Camouflaged objects: FGSA, a frequency-guided spatial adapter on a frozen ViT, with editable rings."""
from __future__ import annotations

import json
from pathlib import Path

import gradio as gr

from studio import settings
from studio.device import compute_device, device_label, gpu
from studio.errors import BadInput
from studio.loader import ASSETS, MODELS, ModelSpec, count_params, count_safetensors_params
from studio.registry import TabInfo
from studio.ui import done_markdown, download_path, friendly, params_markdown, stopwatch, upload_path

KEY = "fgsa"
ASSET_DIR = ASSETS / KEY
EXAMPLE_DIR = ASSET_DIR / "examples"
SITES = ("c1", "c2", "x1", "x2")
SITE_LABELS = {
    "c1": "c1: conv branch, 1/4 resolution",
    "c2": "c2: conv branch, 1/8 resolution",
    "x1": "x1: frozen tokens after blocks 1-2 (1/8)",
    "x2": "x2: frozen tokens after blocks 3-4 (1/8)",
}
BANDS = ("DC", "low", "mid-low", "mid-high", "high")


def _load_bundled(directory: Path):
    from adapters.fgsa_model import load_bundled

    return load_bundled(directory)


def _load_hub(repo_or_dir: str):
    from adapters.fgsa_model import load_hub

    return load_hub(repo_or_dir)


SPEC = ModelSpec(key=KEY, hub_id="facebook/sam-vit-base", load_bundled=_load_bundled, load_hub=_load_hub)


def param_counts() -> tuple[int, int]:
    loaded = MODELS.loaded(KEY)
    if loaded is not None:
        model = loaded.value.adapter
        return count_params(model, trainable=None) - count_params(model.backbone), count_params(model.backbone)
    adapter, backbone = ASSET_DIR / "adapter.safetensors", ASSET_DIR / "backbone.safetensors"
    if not (adapter.is_file() and backbone.is_file()):
        return 0, 0
    # buffers (BatchNorm running statistics) are in the file too; count parameters only
    return count_safetensors_params(adapter) - _buffer_count(adapter), count_safetensors_params(backbone)


def _buffer_count(path: Path) -> int:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        total = 0
        for key in handle.keys():
            if key.endswith(("running_mean", "running_var", "num_batches_tracked")):
                shape = handle.get_slice(key).get_shape()
                n = 1
                for d in shape:
                    n *= d
                total += n
        return total


INFO = TabInfo(
    key=KEY,
    title="Camouflaged objects (FGSA)",
    paper="Frequency-Guided Spatial Adaptation for Camouflaged Object Detection (Zhang et al., IEEE TMM 2025; 2024 preprint)",
    paper_url="https://doi.org/10.1109/TMM.2024.3521681",
    frozen_model="bundled: TinyViT (4 blocks, 96 wide) pretrained here on salient synthetic scenes · hub: SAM ViT-B image encoder (facebook/sam-vit-base); the paper froze a Uni-Perceiver ViT-L",
    adapter="conv branch + FGSAttn (ring-wise FFT amplitude gains) + zero-gated injectors/extractors + light head",
    description=(
        "**Frequency-Guided Spatial Adaptation for Camouflaged Object Detection** (FGSA, 2024). A frozen "
        "ViT cannot tell a camouflaged object from its background: they share colour and texture. FGSA "
        "adds a conv branch on the raw image and FGSAttn: it takes the FFT of a pooled feature map, "
        "groups the spectrum into rings, turns each ring's mean amplitude into a learned gain, rescales "
        "and inverts the spectrum into a spatial attention map (scaled by the pooled map's spread, so a "
        "suppressed band really leaves the attention). Its outputs enter the frozen token "
        "stream through gates that start at zero. Below you can see the rings and their gains at each "
        "site, scale frequency bands (0 suppresses, 1 keeps the learned gain, >1 boosts) and watch the "
        "mask change. Frozen model: here a small ViT pretrained in this repo on salient synthetic scenes (it works on "
        "64x64 scenes; uploads are resized to that); on a GPU Space SAM's ViT-B image encoder "
        "(`facebook/sam-vit-base`). The paper froze a Uni-Perceiver ViT-L."
    ),
    spec=SPEC,
    param_counts=param_counts,
    api_names=("fgsa_segment",),
)


def _examples() -> list[list]:
    index = EXAMPLE_DIR / "examples.json"
    if not index.is_file():
        return []
    rows = []
    for item in json.loads(index.read_text()):
        rows.append([str(EXAMPLE_DIR / item["image"]), str(EXAMPLE_DIR / item["mask"]) if item.get("mask") else None,
                     item.get("site", "c1"), *item.get("bands", [1.0] * 5)])
    return rows


def _metrics_markdown(gt, results: dict) -> str:
    if gt is None:
        return "No ground truth for this image: upload a mask to see S-measure and MAE."
    from adapters.fgsa_eval import sod_metrics

    lines = ["| | S-measure ↑ | MAE ↓ |", "|---|---|---|"]
    for name, prob in results.items():
        if prob is None:
            continue
        m = sod_metrics([prob], [gt], which=("S", "MAE"))
        lines.append(f"| {name} | {m['S']:.3f} | {m['MAE']:.3f} |")
    return "\n".join(lines)


def _figures_markdown(bundle) -> str:
    figures = bundle.figures or {}
    table = figures.get("summary")
    if not table:
        return ""
    lines = ["**Held-out synthetic scenes (mean ± std over seeds; from the model card):**", "",
             "| variant | trainable | S ↑ | E ↑ | wF ↑ | MAE ↓ |", "|---|---|---|---|---|---|"]
    for row in table:
        lines.append(f"| {row['label']} | {row['trainable']:,} | {row['S']} | {row['E']} | {row['wF']} | {row['MAE']} |")
    reliance = (figures.get("reliance") or {}).get(str(figures.get("bundled_seed", 0)))
    if reliance:
        lines += ["", "**How much this model leans on FGSAttn** (held-out spectral scenes, S-measure): "
                  f"{reliance['none']['spectral']:.3f} as trained · {reliance['known_bands_off']['spectral']:.3f} with the "
                  f"known object/background bands set to 0 at every site · {reliance['all_closed']['spectral']:.3f} with every "
                  "band at 0 (FGSAttn closed). The band that carries the evidence is the *background's* (c1, low/mid-low "
                  "bands): the model finds the object where that band's energy is missing, so suppressing it breaks the mask, "
                  "while the object's own band is nearly closed. See the model card for every seed and band."]
    return "\n".join(lines)


@gpu(duration=30)
def _compute(image, site: str, bands, all_sites: bool):
    """Heavy part: both models on one image (bundled: ~0.1 s on CPU)."""
    from adapters import fgsa_infer

    loaded = MODELS.get(SPEC)
    bundle = loaded.value
    device = compute_device()
    bundle.adapter.to(device)
    if bundle.frozen_head is not None:
        bundle.frozen_head.to(device)
    embedded = fgsa_infer.frozen_embedding(bundle, image, device)
    edited = fgsa_infer.run_adapter(bundle, image, site, bands, all_sites, embedded, device)
    learned = fgsa_infer.run_adapter(bundle, image, site, [1.0] * 5, all_sites, embedded, device)
    frozen = fgsa_infer.run_frozen(bundle, image, device)
    return loaded, edited, learned, frozen, embedded.cpu(), device_label(device)


@gpu(duration=10)
def _recompute(image, embedded, site: str, bands, all_sites: bool):
    """Only the adapter path, from this session's cached frozen patch embedding."""
    from adapters import fgsa_infer

    bundle = MODELS.get(SPEC).value
    device = compute_device()
    bundle.adapter.to(device)
    return fgsa_infer.run_adapter(bundle, image, site, bands, all_sites, embedded, device), device_label(device)


def _render(state: dict, edited, learned, frozen, site: str, bundle):
    from adapters import fgsa_infer

    rgb_small = state["rgb_small"]
    model = bundle.adapter
    panels = {
        "adapter": fgsa_infer.overlay(rgb_small, edited.prob),
        "frozen": fgsa_infer.overlay(rgb_small, frozen, colour=(40, 120, 255)) if frozen is not None else None,
    }
    spectrum = before_after = None
    if edited.site is not None:
        stride = fgsa_infer.site_stride(model, site)
        spectrum = fgsa_infer.spectrum_panel(edited.site, stride)
        before_after = fgsa_infer.attention_pair(edited.site["learned_attention"][0].numpy(), edited.site["attention"][0].numpy())
    results = {"FGSA adapter (your edit)": edited.prob, "FGSA adapter (learned gains)": learned.prob if learned is not None else None,
               "Adapter off: frozen backbone + head": frozen}
    metrics = _metrics_markdown(state.get("gt"), results)
    bands_md = fgsa_infer.band_table(model, site) if site in model.site_names() else ""
    mask_file = fgsa_infer.save_mask_png(edited.prob, state["original_hw"], download_path("fgsa_mask.png"))
    return panels, spectrum, before_after, metrics, bands_md, mask_file


def _check_site(bundle, site: str) -> str:
    names = bundle.adapter.site_names()
    if site not in names:
        raise BadInput(f"Unknown adapter site '{site}': choose one of {', '.join(names)}.")
    return site


@friendly("Segmenting")
def segment(image_file, gt_file, site, dc, low, mid_low, mid_high, high, all_sites=False, progress=gr.Progress()):
    """Upload or example -> masks with and without the adapter, spectrum, attention, metrics."""
    from adapters import fgsa_infer

    bands = _bands(dc, low, mid_low, mid_high, high)
    progress(0.05, desc="Reading the image")
    rgb = fgsa_infer.read_rgb(upload_path(image_file))
    with stopwatch() as elapsed:
        progress(0.2, desc="Loading the model")
        bundle = MODELS.get(SPEC).value
        _check_site(bundle, site)
        size = bundle.image_size
        image = fgsa_infer.to_model_input(rgb, size)
        gt = fgsa_infer.read_mask(upload_path(gt_file), size) if gt_file else None
        progress(0.5, desc="Running the frozen model and the adapter")
        loaded, edited, learned, frozen, embedded, device = _compute(image, site, bands, bool(all_sites))
        state = {"image": image, "embedded": embedded, "gt": gt, "frozen": frozen, "learned": learned.prob,
                 "rgb_small": (image[0].permute(1, 2, 0).numpy() * 255).round().astype("uint8"), "original_hw": rgb.shape[:2]}
        panels, spectrum, before_after, metrics, bands_md, mask_file = _render(state, edited, learned, frozen, site, bundle)
    note = f"Resized from {rgb.shape[1]}x{rgb.shape[0]} to {size}x{size}." if rgb.shape[:2] != (size, size) else ""
    if loaded.notice:
        note += f" {loaded.notice}"
    status = done_markdown(elapsed(), device, note)
    return (panels["adapter"], panels["frozen"], spectrum, before_after, metrics, bands_md, str(mask_file), status, state)


@friendly("Re-rendering")
def rerender(state, site, dc, low, mid_low, mid_high, high, all_sites=False):
    """A band edit: re-run only the adapter path from the cached frozen patch embedding (this
    session's image); the frozen baseline is reused."""
    from adapters import fgsa_infer

    if not state:
        raise BadInput("Run the segmentation first (pick an example or upload an image).")
    bundle = MODELS.get(SPEC).value
    _check_site(bundle, site)
    bands = _bands(dc, low, mid_low, mid_high, high)
    with stopwatch() as elapsed:
        edited, device = _recompute(state["image"], state["embedded"], site, bands, bool(all_sites))
        learned = fgsa_infer.Analysis(state["learned"], 0.0, None)
        panels, spectrum, before_after, metrics, bands_md, mask_file = _render(state, edited, learned, state["frozen"], site, bundle)
    status = f"Re-rendered in {elapsed() * 1000:.0f} ms on {device} (frozen patch embedding and baseline cached for this session)."
    return panels["adapter"], spectrum, before_after, metrics, bands_md, str(mask_file), status


def _bands(*values) -> list[float]:
    out = []
    for name, v in zip(BANDS, values):
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise BadInput(f"The {name} band scale must be a number.") from None
        if not 0.0 <= f <= 4.0:
            raise BadInput(f"The {name} band scale must lie between 0 and 4 (got {f}).")
        out.append(f)
    return out


def build() -> None:
    params = gr.Markdown(params_markdown(*param_counts()), elem_classes="studio-params")
    state = gr.State(None)
    with gr.Row():
        with gr.Column(scale=1):
            image = gr.Image(type="filepath", label="Image", format=settings.IMAGE_FORMAT, height=220)
            gt = gr.Image(type="filepath", label="Ground-truth mask (optional)", image_mode="L", format=settings.IMAGE_FORMAT, height=160)
            site = gr.Dropdown([(SITE_LABELS[s], s) for s in SITES], value="c1", label="Adapter site (FGSAttn) to inspect and edit")
            all_sites = gr.Checkbox(False, label="Apply the band scales at every FGSAttn site")
            sliders = [gr.Slider(0, 3, value=1, step=0.05, label=f"{name} band") for name in BANDS]
            with gr.Row():
                presets = {name: gr.Button(name, size="sm") for name in ("low-pass", "high-pass", "band-stop", "reset")}
            run = gr.Button("Segment", variant="primary", elem_id=f"{KEY}-run")
        with gr.Column(scale=2):
            status = gr.Markdown(elem_id=f"{KEY}-status", elem_classes="studio-status")
            with gr.Row():
                with_adapter = gr.Image(label="FGSA adapter on (red)", format=settings.IMAGE_FORMAT, interactive=False)
                without = gr.Image(label="Adapter off: frozen backbone + head (blue)", format=settings.IMAGE_FORMAT, interactive=False)
            with gr.Row():
                spectrum = gr.Image(label="Spectrum of the pooled map, rings coloured by gain (blue low, red high)", format=settings.IMAGE_FORMAT, interactive=False)
                attention = gr.Image(label="Attention map: learned gains | your edit (same colour scale)", format=settings.IMAGE_FORMAT, interactive=False)
            bands_md = gr.Markdown()
            metrics = gr.Markdown()
            mask_file = gr.File(label="Predicted mask (PNG, original size)")
    try:
        figures = _figures_markdown(MODELS.loaded(KEY).value) if MODELS.loaded(KEY) else _card_figures()
    except Exception:
        figures = ""
    gr.Markdown(figures)
    examples = _examples()
    if examples:
        gr.Examples(examples, inputs=[image, gt, site, *sliders], elem_id=f"{KEY}-examples", label="Examples (synthetic held-out scenes)")

    inputs = [image, gt, site, *sliders, all_sites]
    heavy = dict(concurrency_id=settings.HEAVY, concurrency_limit=settings.HEAVY_CONCURRENCY)
    run.click(segment, inputs, [with_adapter, without, spectrum, attention, metrics, bands_md, mask_file, status, state],
              api_name="fgsa_segment", **heavy).then(lambda: params_markdown(*param_counts()), None, params, queue=False,
                                                     api_visibility="private")
    edit_outputs = [with_adapter, spectrum, attention, metrics, bands_md, mask_file, status]
    edit_inputs = [state, site, *sliders, all_sites]
    # edits are light: they re-run only the adapter path on this session's cached image
    private = dict(api_visibility="private", concurrency_limit=settings.LIGHT_CONCURRENCY)
    for slider in sliders:
        slider.release(rerender_if_ready, edit_inputs, edit_outputs, api_name="fgsa_edit_band", **private)
    for control in (site, all_sites):
        control.change(rerender_if_ready, edit_inputs, edit_outputs, api_name="fgsa_edit_site", **private)
    from adapters.fgsa_infer import PRESETS

    for name, button in presets.items():
        button.click(lambda n=name: list(PRESETS[n]), None, sliders, queue=False, api_visibility="private").then(
            rerender_if_ready, edit_inputs, edit_outputs, api_name="fgsa_edit_preset", **private)


def rerender_if_ready(state, *args):
    if not state:
        return [gr.skip()] * 7
    return rerender(state, *args)


def _card_figures() -> str:
    path = ASSET_DIR / "ablation.json"
    if not path.is_file():
        return ""

    class _Bundle:
        figures = json.loads(path.read_text())

    return _figures_markdown(_Bundle)
