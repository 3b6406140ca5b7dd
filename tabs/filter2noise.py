"""CT denoising with Filter2Noise: an explicit bilateral filter whose per-pixel sigmas come from a
tiny attention predictor trained on the uploaded slice itself. The sigma maps are shown on fixed
scales and can be scaled inside a painted region without retraining."""
from __future__ import annotations

import time
from pathlib import Path

import gradio as gr
import numpy as np

from studio import settings
from studio.device import compute_device, device_label, gpu
from studio.errors import BadInput
from studio.loader import MODELS, ModelSpec
from studio.registry import TabInfo
from studio.ui import done_markdown, download_path, friendly, params_markdown, upload_path

KEY = "filter2noise"
ASSET_DIR = Path(__file__).resolve().parent.parent / "assets" / KEY


def _load_bundled(directory: Path):
    """Nothing pretrained: the bundled 'model' is the configuration every slice is trained from."""
    from adapters.filter2noise import F2NConfig

    return {"config": F2NConfig(), "init_state": None}


SPEC = ModelSpec(key=KEY, load_bundled=_load_bundled)


def _param_counts() -> tuple[int, int]:
    from adapters.filter2noise import Filter2Noise, count_parameters

    return count_parameters(Filter2Noise()), 0  # building ~7k parameters is cheaper than any file read


INFO = TabInfo(
    key=KEY,
    title="CT denoising (Filter2Noise)",
    paper="Filter2Noise: A Framework for Interpretable and Zero-Shot Low-Dose CT Image Denoising (2025)",
    paper_url="https://arxiv.org/abs/2504.13519",
    frozen_model="Explicit bilateral filter (0 parameters, fixed 11x11 kernel); nothing pretrained",
    adapter="Attention sigma predictor (per stage) giving per-pixel sigma_x, sigma_y, sigma_range, trained on the slice itself",
    description=(
        "*Filter2Noise* denoises one low-dose CT slice with no training data. What is fixed is an "
        "explicit bilateral filter (no parameters); the adapter is a tiny attention network that "
        "predicts, for every pixel, the filter's spatial sigmas (mm) and range sigma (HU), trained in "
        "seconds on the slice itself with a downsample-and-shuffle self-supervised loss. Because the "
        "filter is explicit you can inspect its sigma maps, and smooth more or less inside a region "
        "you paint, without retraining. Intensities are HU throughout (one fixed mapping), so "
        "sigma_range is in HU on every image. Research demo: not for diagnosis."
    ),
    spec=SPEC,
    param_counts=_param_counts,
    api_names=("filter2noise_denoise", "filter2noise_edit", "filter2noise_reset", "filter2noise_window",
               "filter2noise_measure", "filter2noise_baselines"),
)


# --- pure helpers the handlers share ------------------------------------------------------------

def _window(name, width, level):
    from adapters.filter2noise_view import window_values

    try:
        return window_values(name, width, level)
    except ValueError as exc:
        raise BadInput(str(exc)) from None


def _views(session, window, width, level):
    """Slider pair, residual, sigma maps, editor background for one session."""
    from adapters import filter2noise as f2n
    from adapters.filter2noise_view import residual_image, sigma_figure, windowed

    w, l = _window(window, width, level)
    noisy, denoised = windowed(session.noisy_hu, w, l), windowed(session.denoised_hu, w, l)
    sigmas = [session.state.sigmas(s) for s in range(len(session.state.base_sigmas))]
    xy_max_mm = f2n.SIGMA_XY_MAX * max(session.slice.spacing_mm)
    figure = sigma_figure(sigmas, session.slice.spacing_mm, xy_max_mm, f2n.SIGMA_R_MAX_HU, f2n.HU_RANGE)
    editor = {"background": denoised, "layers": [], "composite": denoised}
    return (noisy, denoised), residual_image(session.noisy_hu, session.denoised_hu), figure, editor


def _exports(session, keep_identifiers: bool) -> list[str]:
    from adapters.filter2noise_io import save_dicom, save_npy, save_png16

    edited = "" if np.all(session.state.multiplier == 1) else "_edited"
    files = [save_npy(session.denoised_hu, download_path(f"denoised{edited}_HU.npy")),
             save_png16(session.denoised_hu, download_path(f"denoised{edited}_HU+1024.png"))]
    if session.slice.kind == "dicom":
        text = (f"Denoised with Filter2Noise ({session.settings.get('iterations')} iterations, "
                f"lambda {session.settings.get('edge_weight')})" + (", sigmas edited in a region" if edited else ""))
        files.insert(0, save_dicom(session.slice, session.denoised_hu, download_path(f"denoised{edited}.dcm"),
                                   keep_identifiers=bool(keep_identifiers), description=text))
    return [str(p) for p in files]


def _edit_summary(state) -> str:
    m = state.multiplier
    if np.all(m == 1):
        return "No region edits: the trained sigmas are in use."
    factors = ", ".join(f"x{v:g} on {int((m == v).sum())} px" for v in np.unique(m) if v != 1)
    return f"Region edits in force (trained sigmas times): {factors}. **Reset edits** restores the trained result."


# --- heavy compute ------------------------------------------------------------------------------

def _duration(ct, settings_, on_step=None):
    return int(min(120, 10 + settings_.iterations * ct.hu.size / 2.0e6))


@gpu(duration=_duration)
def _fit_on_device(ct, fit_settings, on_step=None):
    from adapters.filter2noise_pipeline import fit_slice

    device = compute_device()
    loaded = MODELS.get(SPEC).value
    state, losses = fit_slice(ct, fit_settings, on_step=on_step, device=device, init_state=loaded["init_state"])
    if device.type == "cpu" and fit_settings.threads:  # training ran with this many threads (see FitSettings)
        n = fit_settings.threads
        return state, losses, f"CPU ({n} thread{'s' if n != 1 else ''})"
    return state, losses, device_label(device)


# --- handlers (UI events and API endpoints) -----------------------------------------------------

@friendly("Denoising")
def denoise(file, reference_file=None, frame=None, window="Soft tissue (W400 / L40)", width=400, level=40,
            iterations=None, edge_weight=250.0, keep_identifiers=False, progress=gr.Progress()):
    from adapters.filter2noise_io import load_slice
    from adapters.filter2noise_pipeline import DEFAULT_ITERATIONS, Session, check_reference, check_settings, metrics_markdown

    _window(window, width, level)
    fit_settings = check_settings(DEFAULT_ITERATIONS if iterations in (None, "") else iterations, edge_weight)
    frame = None if frame in (None, "", -1) else int(frame)
    ct = load_slice(upload_path(file), frame)
    reference = check_reference(load_slice(upload_path(reference_file)) if reference_file else None, ct)
    progress(0, desc="Training the sigma predictor on this slice")
    start = time.perf_counter()

    def on_step(i, n):
        if i == 1 or i % 5 == 0 or i == n:
            progress((i, n), desc="Training on this slice", unit="iterations")

    state, losses, device = _fit_on_device(ct, fit_settings, on_step)
    seconds = time.perf_counter() - start
    session = Session(ct, state, reference, seconds, device, losses,
                      {"iterations": fit_settings.iterations, "edge_weight": fit_settings.edge_weight})
    pair, residual, figure, editor = _views(session, window, width, level)
    notes = " ".join(ct.notes)
    extra = f"{ct.hu.shape[1]}x{ct.hu.shape[0]} px, {fit_settings.iterations} iterations, loss {losses[0]:.5f} -> {losses[-1]:.5f}."
    status = done_markdown(seconds, device, extra) + (f"\n\n{notes}" if notes else "")
    return (pair, residual, figure, editor, metrics_markdown(session), _edit_summary(state),
            _exports(session, keep_identifiers), status, session)


def _require(session):
    if session is None:
        raise BadInput("Denoise a slice first (press Denoise or pick an example).")
    return session


def _rerendered(session, window, width, level, keep_identifiers, seconds, what):
    from adapters.filter2noise_pipeline import metrics_markdown

    pair, residual, figure, editor = _views(session, window, width, level)
    status = done_markdown(seconds, device_label("cpu"), what)
    return (pair, residual, figure, editor, metrics_markdown(session), _edit_summary(session.state),
            _exports(session, keep_identifiers), status, session)


@friendly("The region edit")
def edit_region(editor, box="", factor=1.5, window="Soft tissue (W400 / L40)", width=400, level=40,
                keep_identifiers=False, session=None):
    """Set the sigmas inside the region to the trained ones times ``factor``; no retraining."""
    import dataclasses

    from adapters import filter2noise as f2n
    from adapters.filter2noise_pipeline import pick_region

    session = _require(session)
    try:
        factor = float(factor)
    except (TypeError, ValueError):
        raise BadInput("The factor must be a number.") from None
    if not 0.1 <= factor <= 10:
        raise BadInput("The factor must be between 0.1 and 10.")
    region = pick_region(editor, box, session.state.multiplier.shape)
    start = time.perf_counter()
    state = f2n.set_region_factor(session.state, region, factor)
    seconds = time.perf_counter() - start
    session = dataclasses.replace(session, state=state)
    what = (f"Re-filtered with sigmas x{factor:g} in {int(region.sum())} px (no retraining); nothing farther than "
            f"{state.locality_radius} px from the region changed.")
    return _rerendered(session, window, width, level, keep_identifiers, seconds, what)


@friendly("Resetting the edits")
def reset_region(window="Soft tissue (W400 / L40)", width=400, level=40, keep_identifiers=False, session=None):
    import dataclasses

    from adapters import filter2noise as f2n

    session = _require(session)
    start = time.perf_counter()
    session = dataclasses.replace(session, state=f2n.reset_edits(session.state))
    return _rerendered(session, window, width, level, keep_identifiers, time.perf_counter() - start,
                       "Edits reset: the trained sigmas are back.")


@friendly("Changing the window")
def rewindow(window="Soft tissue (W400 / L40)", width=400, level=40, session=None):
    if session is None:  # an example or a control changed before any run: nothing to redraw yet
        return gr.skip(), gr.skip(), gr.skip()
    pair, residual, _, editor = _views(session, window, width, level)
    return pair, residual, editor


@friendly("Measuring the region")
def measure_region(editor, box="", session=None):
    from adapters.filter2noise_pipeline import pick_region, region_markdown, region_stats

    session = _require(session)
    region = pick_region(editor, box, session.state.multiplier.shape)
    return region_markdown(region_stats(session, region))


@friendly("The baselines")
def baselines(window="Soft tissue (W400 / L40)", width=400, level=40, session=None, progress=gr.Progress()):
    from adapters.filter2noise_pipeline import run_baselines
    from adapters.filter2noise_view import windowed

    session = _require(session)
    w, l = _window(window, width, level)
    progress(0, desc="Running the baselines")
    start = time.perf_counter()
    results = run_baselines(session, on_step=lambda i, n: progress((i, n), desc="ZS-N2N", unit="iterations") if i % 10 == 0 else None)
    gallery = [(windowed(image, w, l), caption) for _, image, caption in results]
    table = "\n".join(f"- {caption}" for _, _, caption in results)
    return gallery, table + "\n\n" + done_markdown(time.perf_counter() - start, device_label("cpu"))


# --- layout -------------------------------------------------------------------------------------

def _examples() -> list[list]:
    soft = "Soft tissue (W400 / L40)"
    rows = [[str(ASSET_DIR / "CT_small_I0_5e3.dcm"), str(ASSET_DIR / "CT_small_reference.npy"), soft]]
    for dose in ("1e4", "2.5e3"):
        rows.append([str(ASSET_DIR / f"phantom_I0_{dose}.npy"), str(ASSET_DIR / "phantom_reference.npy"), soft])
    rows.append([str(ASSET_DIR / "CT_small.dcm"), None, soft])
    return rows


def _measured_markdown() -> str:
    """The bench section of the model card, shown as is (numbers measured, never typed in here)."""
    try:
        text = (ASSET_DIR / "MODEL_CARD.md").read_text()
    except OSError:
        return "The model card is missing."
    start = text.find("## Measured")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None].strip() if start >= 0 else "No measured figures yet."


def build() -> None:
    from adapters.filter2noise_pipeline import DEFAULT_ITERATIONS, MAX_ITERATIONS
    from adapters.filter2noise_view import CUSTOM, WINDOWS

    session = gr.State(None)
    gr.Markdown(params_markdown(*_param_counts()) + " (trained per slice; nothing pretrained is frozen).",
                elem_classes="studio-params")
    with gr.Row():
        with gr.Column(scale=1):
            file = gr.File(label="CT slice: DICOM, 16-bit PNG/TIFF (HU+1024), or .npy in HU",
                           file_types=[".dcm", ".dicom", ".ima", ".png", ".tif", ".tiff", ".npy"], elem_id="filter2noise-file")
            reference = gr.File(label="Reference slice (optional, same size): enables PSNR/SSIM",
                                file_types=[".dcm", ".png", ".tif", ".tiff", ".npy"], elem_id="filter2noise-reference")
            window = gr.Dropdown(list(WINDOWS) + [CUSTOM], value="Soft tissue (W400 / L40)", label="Window")
            with gr.Row():
                width = gr.Number(400, label="Custom width (HU)", minimum=1)
                level = gr.Number(40, label="Custom level (HU)")
            with gr.Accordion("Advanced", open=False):
                frame = gr.Number(None, label="Frame (multi-frame DICOM or 3-D .npy; empty = middle)", precision=0)
                iterations = gr.Slider(10, MAX_ITERATIONS, DEFAULT_ITERATIONS, step=10, label="Training iterations")
                edge_weight = gr.Slider(0, 1500, 250, step=10, label="Edge loss weight (lambda)")
                keep_ids = gr.Checkbox(False, label="Keep patient identifiers in the DICOM output (off: de-identified)")
            run = gr.Button("Denoise", variant="primary", elem_id="filter2noise-run")
            status = gr.Markdown(elem_id="filter2noise-status", elem_classes="studio-status")
        with gr.Column(scale=2):
            slider = gr.ImageSlider(label="Noisy | Filter2Noise (drag)", format=settings.IMAGE_FORMAT, type="numpy")
            with gr.Row():
                residual = gr.Image(label="Removed (noisy - denoised), grey = 0, black/white = -/+150 HU",
                                    format=settings.IMAGE_FORMAT, type="numpy")
                metrics = gr.Markdown()
    sigmas = gr.Image(label="Sigma maps per stage (fixed colour scales: sigma_x/sigma_y in mm, sigma_range in HU)",
                      format=settings.IMAGE_FORMAT, type="numpy")
    with gr.Accordion("Smooth more or less in a region (no retraining)", open=True):
        with gr.Row():
            editor = gr.ImageEditor(label="Paint a region on the denoised slice", type="numpy", image_mode="RGBA",
                                    sources=(), transforms=(), layers=False, format="png",
                                    brush=gr.Brush(colors=["#ff3030"], color_mode="fixed"), elem_id="filter2noise-editor")
            with gr.Column():
                box = gr.Textbox(label="...or a box x0,y0,x1,y1 in pixels (overrides the brush)", placeholder="40,40,90,80")
                factor = gr.Slider(0.25, 4, 2.0, step=0.05, label="Sigma factor inside the region (sets, never compounds)")
                with gr.Row():
                    apply_btn = gr.Button("Apply to region", elem_id="filter2noise-edit")
                    reset_btn = gr.Button("Reset edits", elem_id="filter2noise-reset")
                    measure_btn = gr.Button("Measure region", elem_id="filter2noise-measure")
                edits = gr.Markdown()
                region_table = gr.Markdown()
    downloads = gr.File(label="Downloads: DICOM (de-identified unless asked), 16-bit PNG (HU+1024), .npy (HU)",
                        file_count="multiple", interactive=False)
    with gr.Accordion("Baselines (on demand)", open=False):
        base_btn = gr.Button("Run baselines: OpenCV bilateral, BM3D, ZS-N2N", elem_id="filter2noise-baselines")
        base_gallery = gr.Gallery(label="Baselines, same window", columns=3, format=settings.IMAGE_FORMAT, height="auto")
        base_table = gr.Markdown()
    with gr.Accordion("How it scores: bench figures from the model card", open=False):
        gr.Markdown(_measured_markdown())
    gr.Examples(_examples(), inputs=[file, reference, window], elem_id="filter2noise-examples",
                label="Examples: CT_small at simulated low dose (5,000 photons), Shepp-Logan phantom at 10,000 and 2,500 "
                      "photons, each with its noiseless reference; CT_small as shipped (a clean slice, no reference)")

    heavy = dict(concurrency_id=settings.HEAVY, concurrency_limit=settings.HEAVY_CONCURRENCY)
    main_outputs = [slider, residual, sigmas, editor, metrics, edits, downloads, status, session]
    run.click(denoise, [file, reference, frame, window, width, level, iterations, edge_weight, keep_ids],
              main_outputs, api_name="filter2noise_denoise", **heavy)
    apply_btn.click(edit_region, [editor, box, factor, window, width, level, keep_ids, session], main_outputs,
                    api_name="filter2noise_edit")
    reset_btn.click(reset_region, [window, width, level, keep_ids, session], main_outputs, api_name="filter2noise_reset")
    for control in (window, width, level):
        control.change(rewindow, [window, width, level, session], [slider, residual, editor], api_name=False
                       if control is not window else "filter2noise_window", show_progress="hidden")
    measure_btn.click(measure_region, [editor, box, session], region_table, api_name="filter2noise_measure")
    base_btn.click(baselines, [window, width, level, session], [base_gallery, base_table],
                   api_name="filter2noise_baselines", **heavy)
