"""CT denoising with Filter2Noise: an explicit bilateral filter whose per-pixel sigmas come from a
tiny attention predictor trained on the uploaded slice itself. The sigma maps are shown on fixed
scales and can be scaled inside a painted region without retraining."""
from __future__ import annotations

import time

import gradio as gr
import numpy as np

from adapters.common.errors import BadInput
from adapters.filter2noise import SPEC
from studio import settings
from studio.device import device_label
from studio.loader import bundled_dir
from studio.registry import tab_info
from studio.shell import Shell
from studio.ui import call_device, done_markdown, download_path, friendly, stopwatch, upload_path

INFO = tab_info(SPEC, api_names=("filter2noise_denoise", "filter2noise_edit", "filter2noise_reset",
                                 "filter2noise_window", "filter2noise_measure", "filter2noise_baselines",
                                 "filter2noise_series", "filter2noise_series_slice"))
ASSET_DIR = bundled_dir(SPEC)
SOFT = "Soft tissue (W400 / L40)"
PARAMS_NOTE = "(trained per slice; nothing pretrained is frozen)."
DEID_INFO = ("Off (the default): the DICOM is de-identified by rule, the DICOM PS3.15 Basic Application Level "
             "Confidentiality Profile as an allow-list: only image, geometry, rescale and acquisition attributes are "
             "kept, at every depth; names and IDs become ANONYMOUS; every UID is replaced consistently; option "
             "Retain Longitudinal Temporal Information with Modified Dates: dates and times shifted by one random "
             "offset per export; descriptions and comments removed (not cleaned); no device, institution, patient "
             "characteristics, UID or private-tag retention. On: the file keeps the identifiers and says so.")


def _image_side_from_header(item) -> tuple[int, int] | None:
    """(width, height) of an editor image from its header only (a path or bytes), nothing decoded."""
    import io as _io

    from PIL import Image

    source = getattr(item, "path", None) or (bytes(item) if isinstance(item, (bytes, bytearray, memoryview)) else None)
    if source is None:
        return None
    try:
        with Image.open(source if isinstance(source, str) else _io.BytesIO(source)) as img:
            return img.size
    except Image.DecompressionBombError:
        return (1 << 30, 1 << 30)
    except Exception:  # unreadable: Gradio's own decoding reports it
        return None


def bound_editor_layers(editor: gr.ImageEditor) -> gr.ImageEditor:
    """Bound the editor's images from their headers before Gradio decodes them (a client may send
    any layer, not only what the canvas draws). Wrapped on the instance: a subclass of a Gradio
    component makes Gradio write a stub file next to this module."""
    from adapters.filter2noise.io import MAX_SIDE

    decode = editor.preprocess

    def preprocess(payload):
        if payload is not None:
            images = [payload.background, payload.composite, *(payload.layers or [])]
            cached = editor.blob_storage.get(payload.id) if payload.id is not None else None
            if cached is not None:
                images += [cached.background, cached.composite, *(cached.layers or [])]
            for item in images:
                size = _image_side_from_header(item) if item is not None else None
                if size is not None and max(size) > MAX_SIDE:
                    raise gr.Error(f"A painted layer is {size[0]}x{size[1]} pixels; the region editor takes layers up "
                                   f"to {MAX_SIDE}x{MAX_SIDE} (the largest slice).", print_exception=False)
        return decode(payload)

    editor.preprocess = preprocess
    return editor


# --- pure helpers the handlers share ------------------------------------------------------------

WIDTH_RANGE = (1.0, 20000.0)  # HU; CT values span about -1024..30000 with extended scales
LEVEL_RANGE = (-5000.0, 30000.0)
MAX_FRAME = 100_000


def _number(label: str, value, low: float, high: float, whole: bool = False) -> float:
    """A finite number in [low, high] from a form field, or a sentence naming the limit."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BadInput(f"{label} must be a number (got {str(value)[:40]!r}).") from None
    if not np.isfinite(number) or not low <= number <= high or (whole and number != int(number)):
        kind = "a whole number" if whole else "a number"
        raise BadInput(f"{label} must be {kind} between {low:g} and {high:g} (got {str(value)[:40]}).")
    return number


def _window(name, width, level):
    """The window to draw with. The custom fields are checked whichever preset is chosen: a value
    that would be refused under Custom is never silently carried along."""
    from adapters.filter2noise.viz import window_values

    if width not in (None, ""):
        width = _number("The custom window width (HU)", width, *WIDTH_RANGE)
    if level not in (None, ""):
        level = _number("The custom window level (HU)", level, *LEVEL_RANGE)
    try:
        return window_values(name, width if width != "" else None, level if level != "" else None)
    except ValueError as exc:
        raise BadInput(str(exc)) from None


def _frame(frame) -> int | None:
    """The frame field: empty (or -1) means the middle frame."""
    if frame in (None, "", -1):
        return None
    return int(_number("The frame", frame, 0, MAX_FRAME, whole=True))


def _edited_region(session):
    """Every pixel whose sigmas are edited (box or brush, all applies since the last reset)."""
    m = session.state.multiplier
    return None if np.all(m == 1) else m != 1


def _sigma_view(session, sigma_scale=None):
    from adapters.filter2noise import config as f2n
    from adapters.filter2noise.viz import SIGMA_SCALES, sigma_figure

    sigmas = [session.state.sigmas(s) for s in range(len(session.state.base_sigmas))]
    xy_max_mm = f2n.SIGMA_XY_MAX * max(session.slice.spacing_mm)
    return sigma_figure(sigmas, session.slice.spacing_mm, xy_max_mm, f2n.SIGMA_R_MAX_HU, f2n.HU_RANGE,
                        auto=sigma_scale == SIGMA_SCALES[1])


def _views(session, window, width, level):
    """Slider pair, residual, sigma maps (fixed scale), editor background for one session; the
    edited region's outline is drawn on the denoised image until the edits are reset."""
    from adapters.filter2noise.viz import residual_image, windowed, with_outline

    w, l = _window(window, width, level)
    region = _edited_region(session)
    noisy = windowed(session.noisy_hu, w, l)
    denoised = with_outline(windowed(session.denoised_hu, w, l), region)
    editor = {"background": denoised, "layers": [], "composite": denoised}
    return (noisy, denoised), residual_image(session.noisy_hu, session.denoised_hu), _sigma_view(session), editor


def _keep_flag(keep_identifiers) -> bool:
    """The keep-identifiers choice parsed strictly (the API may send "false" or 0): never truthy by accident."""
    from adapters.filter2noise.config import check_flag

    return check_flag(keep_identifiers, "Keep patient identifiers")


def _privacy_line(session, keep: bool) -> str:
    """What the DICOM download holds, stated on the status line."""
    if session.slice.kind != "dicom":
        return ""
    if keep:
        return ("\n\n**The DICOM download keeps the patient identifiers** (as asked): it is NOT de-identified, "
                "and the file says so (PatientIdentityRemoved NO).")
    return ("\n\nThe DICOM download is de-identified (PS3.15 basic profile as an allow-list: new UIDs, "
            "dates shifted by a random offset, names and IDs replaced).")


def _exports(session, keep_identifiers: bool) -> list[str]:
    from adapters.filter2noise.io import save_dicom, save_npy, save_png16

    edited = "" if np.all(session.state.multiplier == 1) else "_edited"
    files = [save_npy(session.denoised_hu, download_path(f"denoised{edited}_HU.npy")),
             save_png16(session.denoised_hu, download_path(f"denoised{edited}_HU+1024.png"))]
    if session.slice.kind == "dicom":
        text = (f"Denoised with Filter2Noise ({session.settings.get('iterations')} iterations, "
                f"lambda {session.settings.get('edge_weight')})" + (", sigmas edited in a region" if edited else ""))
        files.insert(0, save_dicom(session.slice, session.denoised_hu, download_path(f"denoised{edited}.dcm"),
                                   keep_identifiers=_keep_flag(keep_identifiers), description=text))
    return [str(p) for p in files]


def _edit_summary(state) -> str:
    m = state.multiplier
    if np.all(m == 1):
        return "No region edits: the trained sigmas are in use."
    factors = ", ".join(f"x{v:g} on {int((m == v).sum())} px" for v in np.unique(m) if v != 1)
    return f"Region edits in force (trained sigmas times): {factors}. **Reset edits** restores the trained result."


def _device_text(device: str, fit_settings) -> str:
    """Training on a CPU runs with `FitSettings.threads` threads whatever the process uses."""
    if device.startswith("CPU") and fit_settings.threads:
        n = fit_settings.threads
        return f"CPU ({n} thread{'s' if n != 1 else ''})"
    return device


# --- Markdown for the tab's tables ---------------------------------------------------------------

def metrics_markdown(session) -> str:
    from adapters.filter2noise.metrics import METRIC_RANGE_HU, reference_metrics

    if session.reference is None:
        return ("No reference image: PSNR/SSIM need one. Mark a region of uniform tissue (brush or box) and "
                "press **Measure region** for noise SD and CNR.")
    rows = [("Noisy input", session.noisy_hu), ("Filter2Noise", session.denoised_hu)]
    lines = [f"PSNR and SSIM against the reference over {METRIC_RANGE_HU[0]:.0f}..{METRIC_RANGE_HU[1]:.0f} HU "
             f"(data range {METRIC_RANGE_HU[1] - METRIC_RANGE_HU[0]:.0f} HU):", "",
             "| Image | PSNR (dB) | SSIM |", "|---|---|---|"]
    for name, image in rows:
        p, s = reference_metrics(image, session.reference)
        lines.append(f"| {name} | {p:.2f} | {s:.4f} |")
    return "\n".join(lines)


def region_markdown(stats: dict) -> str:
    lines = [f"Region: {stats['pixels']} pixels; CNR against a ring 4-12 px around it ({stats['ring_pixels']} px).", "",
             "| Image | Mean (HU) | Noise SD (HU) | CNR |", "|---|---|---|---|"]
    for name in ("noisy", "denoised"):
        e = stats[name]
        cnr = f"{e['cnr']:.2f}" if "cnr" in e else "n/a"
        lines.append(f"| {name} | {e['mean']:.1f} | {e['sd']:.1f} | {cnr} |")
    return "\n".join(lines)


# --- handlers (UI events and API endpoints) -----------------------------------------------------

@friendly("Denoising")
def run(file, reference_file=None, frame=None, window=SOFT, width=400, level=40,
        iterations=None, edge_weight=250.0, keep_identifiers=False, progress=gr.Progress()):
    """Validate here (web process), then one device call: train the sigma predictor on the slice."""
    from adapters.filter2noise.config import DEFAULT_ITERATIONS, DenoiseRequest, check_settings
    from adapters.filter2noise.io import load_slice
    from adapters.filter2noise.metrics import Session, check_reference, noise_feedback

    _window(window, width, level)
    keep = _keep_flag(keep_identifiers)
    fit_settings = check_settings(DEFAULT_ITERATIONS if iterations in (None, "") else iterations, edge_weight)
    frame = _frame(frame)
    ct = load_slice(upload_path(file), frame)
    reference = check_reference(load_slice(upload_path(reference_file)) if reference_file else None, ct)
    request = DenoiseRequest(ct.hu, fit_settings)
    with stopwatch() as elapsed:
        out = call_device(INFO.key, "run", request, progress)
    seconds = elapsed()
    state, losses, device = out.result.state, list(out.result.losses), _device_text(out.device, fit_settings)
    session = Session(ct, state, reference, seconds, device, losses,
                      {"iterations": fit_settings.iterations, "edge_weight": fit_settings.edge_weight})
    pair, residual, figure, editor = _views(session, window, width, level)
    notes = " ".join(ct.notes)
    extra = f"{ct.hu.shape[1]}x{ct.hu.shape[0]} px, {fit_settings.iterations} iterations, loss {losses[0]:.5f} -> {losses[-1]:.5f}."
    status = (done_markdown(seconds, device, extra) + "\n\n" + noise_feedback(ct.hu, session.denoised_hu)
              + (f"\n\n{notes}" if notes else "") + _privacy_line(session, keep))
    return (pair, residual, figure, editor, metrics_markdown(session), _edit_summary(state),
            _exports(session, keep), status, session)


def _require(session):
    if session is None:
        raise BadInput("Denoise a slice first (press Denoise or pick an example).")
    return session


def _rerendered(session, window, width, level, keep_identifiers, seconds, what):

    from adapters.filter2noise.metrics import noise_feedback

    keep = _keep_flag(keep_identifiers)
    pair, residual, figure, editor = _views(session, window, width, level)
    status = (done_markdown(seconds, device_label("cpu"), what) + "\n\n"
              + noise_feedback(session.noisy_hu, session.denoised_hu) + _privacy_line(session, keep))
    return (pair, residual, figure, editor, metrics_markdown(session), _edit_summary(session.state),
            _exports(session, keep), status, session)


@friendly("The region edit")
def edit_region(editor, box="", factor=1.5, window=SOFT, width=400, level=40,
                keep_identifiers=False, session=None):
    """Set the sigmas inside the region to the trained ones times ``factor``; no retraining, no
    device call: the session's sigma maps are numpy arrays, re-filtered here in a small window."""
    import dataclasses

    from adapters.filter2noise import modeling as f2n
    from adapters.filter2noise.config import check_factor
    from adapters.filter2noise.metrics import pick_region

    session = _require(session)
    _keep_flag(keep_identifiers)
    factor = check_factor(factor)
    region = pick_region(editor, box, session.state.multiplier.shape)
    start = time.perf_counter()
    state = f2n.set_region_factor(session.state, region, factor)
    seconds = time.perf_counter() - start
    session = dataclasses.replace(session, state=state, last_region=region)
    what = (f"Re-filtered with sigmas x{factor:g} in {int(region.sum())} px (no retraining); nothing farther than "
            f"{state.locality_radius} px from the region changed.")
    return _rerendered(session, window, width, level, keep_identifiers, seconds, what)


@friendly("Resetting the edits")
def reset_region(window=SOFT, width=400, level=40, keep_identifiers=False, session=None):
    import dataclasses

    from adapters.filter2noise import modeling as f2n

    session = _require(session)
    _keep_flag(keep_identifiers)
    start = time.perf_counter()
    session = dataclasses.replace(session, state=f2n.reset_edits(session.state), last_region=None)
    return _rerendered(session, window, width, level, keep_identifiers, time.perf_counter() - start,
                       "Edits reset: the trained sigmas are back.")


@friendly("Changing the window")
def rewindow(window=SOFT, width=400, level=40, session=None):
    _window(window, width, level)  # a bad value gets its sentence even before there is anything to redraw
    if session is None:  # an example or a control changed before any run: nothing to redraw yet
        return gr.skip(), gr.skip(), gr.skip()
    pair, residual, _, editor = _views(session, window, width, level)
    return pair, residual, editor


@friendly("Measuring the region")
def measure_region(editor, box="", session=None):
    from adapters.filter2noise.metrics import pick_region, region_stats

    session = _require(session)
    region = pick_region(editor, box, session.state.multiplier.shape, session.last_region)
    return region_markdown(region_stats(session, region))


@friendly("Reading the slice")
def preview(file, frame=None, window=SOFT, width=400, level=40):
    """The slice as uploaded, before any training: both sides of the slider, its size and noise."""
    from adapters.filter2noise.io import load_slice
    from adapters.filter2noise.metrics import noise_feedback
    from adapters.filter2noise.viz import windowed

    if file is None:
        return gr.skip(), gr.skip()
    w, l = _window(window, width, level)
    frame = _frame(frame)
    ct = load_slice(upload_path(file), frame)
    image = windowed(ct.hu, w, l)
    h, wd = ct.hu.shape
    text = (f"Preview: {wd}x{h} px, not denoised yet. {noise_feedback(ct.hu)} Press **Denoise**."
            + (f"\n\n{' '.join(ct.notes)}" if ct.notes else ""))
    return (image, image), text


def preset_fields(window=SOFT):
    """The width/level fields show the preset's values (a custom window keeps what is typed)."""
    from adapters.filter2noise.viz import WINDOWS

    if window in WINDOWS:
        w, l = WINDOWS[window]
        return gr.update(value=w), gr.update(value=l)
    return gr.skip(), gr.skip()


def to_custom(window=SOFT):
    """Typing a width or level switches the window to Custom (so the typed values are used)."""
    from adapters.filter2noise.viz import CUSTOM

    return gr.skip() if window == CUSTOM else gr.update(value=CUSTOM)


def sigma_view(sigma_scale=None, session=None):
    if session is None:
        return gr.skip()
    return _sigma_view(session, sigma_scale)


# measured on a series (bench/filter2noise.py series_rows): training once scored as well as per
# slice (42.71 vs 42.60 dB mean PSNR) at an eighth of the time, so it is the default
SERIES_MODES = ("Train once on 3 slices spread through the series, apply to all (faster; scored as well)",
                "Train on every slice (about 8x slower)")


def _series_paths(files) -> list:
    if files is None or (isinstance(files, (list, tuple)) and not files):
        raise BadInput("No series was given: upload several DICOM slices, a zip of them, or a multi-frame DICOM.")
    return [upload_path(f) for f in (files if isinstance(files, (list, tuple)) else [files])]


def _series_view(record, index, window, width, level):
    from adapters.filter2noise.viz import windowed

    w, l = _window(window, width, level)
    n = record.denoised.shape[0]
    # the slider's range never goes below 1..2, so a one-slice series may send 2
    i = min(int(_number("The slice", 1 if index in (None, "") else index, 1, max(n, 2), whole=True)), n) - 1
    return windowed(record.series.slices[i].hu, w, l), windowed(record.denoised[i], w, l)


@friendly("Denoising the series")
def run_series(files, mode=SERIES_MODES[0], window=SOFT, width=400, level=40, iterations=None, edge_weight=250.0,
               keep_identifiers=False, progress=gr.Progress()):
    """Read and check the series here (web process), then one device call for every slice; export
    one consistent de-identified DICOM series (zip), or a .npy volume for non-DICOM input."""
    import tempfile

    from adapters.filter2noise.config import DEFAULT_ITERATIONS, SeriesRequest, check_settings
    from adapters.filter2noise.io import save_npy
    from adapters.filter2noise.metrics import SeriesSession, noise_feedback
    from adapters.filter2noise.series import load_series, save_series, zip_files

    _window(window, width, level)
    keep = _keep_flag(keep_identifiers)
    mode = SERIES_MODES[0] if mode in (None, "") else mode
    if mode not in SERIES_MODES:
        raise BadInput(f"Series mode must be one of: {'; '.join(SERIES_MODES)}.")
    shared = mode == SERIES_MODES[0]
    fit_settings = check_settings(DEFAULT_ITERATIONS if iterations in (None, "") else iterations, edge_weight)
    series = load_series(_series_paths(files))
    volume = series.volume
    with stopwatch() as elapsed:
        out = call_device(INFO.key, "run_series", SeriesRequest(volume, fit_settings, shared=shared), progress)
    seconds = elapsed()
    result = out.result
    n = volume.shape[0]
    how = (f"trained once on slice{'s' if len(result.trained_on) > 1 else ''} "
           f"{', '.join(str(i + 1) for i in result.trained_on)} ({result.train_seconds:.1f} s), applied to all"
           if result.shared else "trained on every slice")
    if series.is_dicom:
        with tempfile.TemporaryDirectory() as tmp:
            written = save_series(series, result.denoised, tmp, keep_identifiers=keep,
                                  description=f"Denoised with Filter2Noise ({fit_settings.iterations} iterations, "
                                              f"lambda {fit_settings.edge_weight:g}, {how})")
            download = zip_files(written, download_path("denoised_series_dicom.zip"))
        privacy = ("\n\n**The DICOM series keeps the patient identifiers** (as asked): it is NOT de-identified."
                   if keep else "\n\nThe DICOM series is de-identified (PS3.15 basic profile as an allow-list: one "
                                "set of new UIDs and one date shift for the whole series, instance numbers 1..n).")
    else:
        download, privacy = save_npy(result.denoised, download_path("denoised_series_HU.npy")), ""
    record = SeriesSession(series, result.denoised, seconds)
    middle = n // 2 + 1
    middle_noise = noise_feedback(volume[middle - 1], result.denoised[middle - 1])
    status = (done_markdown(seconds, out.device, f"{n} slices of {volume.shape[2]}x{volume.shape[1]} px, {how}: "
                                                 f"**{seconds / n:.2f} s per slice**.")
              + f"\n\nSlice {middle}: {middle_noise}"
              + (f"\n\n{' '.join(series.notes)}" if series.notes else "") + privacy)
    return (_series_view(record, middle, window, width, level), gr.update(maximum=max(n, 2), value=middle, interactive=n > 1),
            str(download), status, record)


@friendly("Showing the slice")
def series_slice(index=1, window=SOFT, width=400, level=40, record=None):
    if record is None:  # nothing to show yet; still, a bad value gets its sentence
        _window(window, width, level)
        _number("The slice", 1 if index in (None, "") else index, 1, MAX_FRAME, whole=True)
        return gr.skip()
    return _series_view(record, index, window, width, level)


_CANCELLED: set[str] = set()  # session hashes whose baselines run was cancelled (no data, only the flag)


class _CancellableProgress:
    """Forwards progress to Gradio and stops the run at its next report once Cancel was pressed."""

    def __init__(self, progress, session_hash: str):
        self.progress, self.session_hash = progress, session_hash

    def __call__(self, fraction, desc=None):
        if self.session_hash in _CANCELLED:
            _CANCELLED.discard(self.session_hash)
            raise BadInput("The baselines were cancelled.")
        return self.progress(fraction, desc=desc)


def baselines_label(session=None) -> str:
    from adapters.filter2noise.config import BASELINE_BUDGET_S
    from adapters.filter2noise.metrics import baselines_estimate

    if session is None:
        return f"Run baselines: bilateral, BM3D, ZS-N2N (at most {BASELINE_BUDGET_S:.0f} s)"
    h, w = session.noisy_hu.shape
    return (f"Run baselines: bilateral, BM3D, ZS-N2N (about {baselines_estimate(session):.0f} s on this {w}x{h} "
            f"slice, at most {BASELINE_BUDGET_S:.0f} s)")


def _baselines_button(session=None):
    return gr.update(value=baselines_label(session))


@friendly("The baselines")
def baselines(window=SOFT, width=400, level=40, session=None, request: gr.Request = None, progress=gr.Progress()):
    """One device call with the slice (and reference) as plain arrays, under the stated time budget;
    captions are made here."""
    from adapters.filter2noise.metrics import baseline_captions, baselines_request
    from adapters.filter2noise.viz import windowed

    session = _require(session)
    w, l = _window(window, width, level)
    key = getattr(request, "session_hash", None) or ""
    _CANCELLED.discard(key)
    start = time.perf_counter()
    out = call_device(INFO.key, "baselines", baselines_request(session), _CancellableProgress(progress, key))
    results = baseline_captions(session, out.result)
    gallery = [(windowed(image, w, l), caption) for _, image, caption in results]
    table = "\n".join(f"- {caption}" for _, _, caption in results)
    table += "".join(f"\n- {line}" for line in out.result.skipped)
    bound = (f"Time budget {out.result.budget_s:.0f} s (estimate for this slice {out.result.estimate_s:.0f} s): "
             "ZS-N2N trains on random crops and stops at the budget; a baseline that would not fit is skipped.")
    return gallery, table + "\n\n" + bound + "\n\n" + done_markdown(time.perf_counter() - start, device_label("cpu"))


def cancel_baselines(request: gr.Request = None):
    key = getattr(request, "session_hash", None)
    if key:
        _CANCELLED.add(key)
    return "Cancelling: the baselines stop at their next step (BM3D, once started, finishes first)."


# --- layout -------------------------------------------------------------------------------------

def _row(file, reference=None, window=SOFT) -> list:
    """One row of ``run``'s inputs, in its parameter order, the rest at their defaults."""
    return [file, reference, None, window, 400, 40, 100, 250.0, False]


# examples: the first is what the browser test clicks (the tab shows file, reference and window)
EXAMPLES = [_row(str(ASSET_DIR / "CT_small_I0_5e3.dcm"), str(ASSET_DIR / "CT_small_reference.npy"))]
EXAMPLES += [_row(str(ASSET_DIR / f"phantom_I0_{dose}.npy"), str(ASSET_DIR / "phantom_reference.npy"))
             for dose in ("1e4", "2.5e3")]
EXAMPLES += [_row(str(ASSET_DIR / "CT_small.dcm"))]
EXAMPLE_COLUMNS = (0, 1, 3)  # file, reference, window

_CT = str(ASSET_DIR / "CT_small_I0_5e3.dcm")
BAD_INPUTS = [
    (_row(str(ASSET_DIR / "MODEL_CARD.template.md")), "not a file the CT tab can read"),
    (_row(None), "No file was given"),
    (_row(_CT, str(ASSET_DIR / "phantom_reference.npy")), "they must match pixel for pixel"),
    (_row(_CT)[:6] + [5000, 250.0, False], "Iterations must be between 1 and 2000"),
    (_row(_CT)[:6] + [100, 9000.0, False], "The edge loss weight must be between 0 and 5000"),
    (_row(_CT, None, "Custom")[:4] + [0, 40, 100, 250.0, False], "window width (HU) must be a number between 1 and 20000"),
    (_row(_CT)[:4] + [1e12, 40, 100, 250.0, False], "window width (HU) must be a number between 1 and 20000"),
    (_row(_CT)[:4] + [400, float("nan"), 100, 250.0, False], "window level (HU) must be a number between -5000 and 30000"),
    (_row(_CT)[:2] + [1e12] + _row(_CT)[3:], "The frame must be a whole number between 0 and 100000"),
]


def build() -> None:
    from adapters.filter2noise.config import DEFAULT_ITERATIONS, MAX_ITERATIONS
    from adapters.filter2noise.io import MAX_SIDE
    from adapters.filter2noise.viz import CUSTOM, SIGMA_SCALES, WINDOWS

    shell = Shell(INFO)
    session = shell.session_state()
    params = shell.header(PARAMS_NOTE)
    with gr.Row():
        with gr.Column(scale=1):
            file = gr.File(label=f"CT slice: DICOM, 16-bit PNG/TIFF (HU+1024), or .npy in HU; up to {MAX_SIDE}x{MAX_SIDE} px",
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
                keep_ids = gr.Checkbox(False, label="Keep patient identifiers in the DICOM output (off: de-identified)",
                                       info=DEID_INFO)
            run_btn = shell.run_button("Denoise")
            status = shell.status()
        with gr.Column(scale=2):
            slider = gr.ImageSlider(label="Noisy | Filter2Noise (drag)", format=settings.IMAGE_FORMAT, type="numpy")
            with gr.Row():
                residual = gr.Image(label="Removed (noisy - denoised), grey = 0, black/white = -/+150 HU",
                                    format=settings.IMAGE_FORMAT, type="numpy")
                metrics = gr.Markdown()
    sigmas = gr.Image(label="Sigma maps per stage (sigma_x/sigma_y in mm, sigma_range in HU)",
                      format=settings.IMAGE_FORMAT, type="numpy")
    sigma_scale = gr.Radio(list(SIGMA_SCALES), value=SIGMA_SCALES[0], label="Sigma map colour scale",
                           elem_id="filter2noise-sigma-scale")
    with gr.Accordion("Smooth more or less in a region (no retraining)", open=True):
        with gr.Row():
            editor = bound_editor_layers(gr.ImageEditor(
                label="Paint a region on the denoised slice", type="numpy", image_mode="RGBA", sources=(), transforms=(),
                layers=False, format="png", brush=gr.Brush(colors=["#ff3030"], color_mode="fixed"),
                elem_id="filter2noise-editor"))
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
        with gr.Row():
            base_btn = gr.Button(baselines_label(), elem_id="filter2noise-baselines")
            base_cancel = gr.Button("Cancel baselines", elem_id="filter2noise-baselines-cancel", variant="stop")
        base_gallery = gr.Gallery(label="Baselines, same window", columns=2, format=settings.IMAGE_FORMAT, height="auto")
        base_table = gr.Markdown()
    with gr.Accordion("Series: denoise every slice of a series", open=False):
        with gr.Row():
            with gr.Column(scale=1):
                series_files = gr.File(label="A series: several DICOM slices, a zip of them, or one multi-frame DICOM "
                                             "(up to 300 slices)", file_count="multiple",
                                       file_types=[".dcm", ".dicom", ".ima", ".zip", ".npy"],
                                       height=220, elem_id="filter2noise-series-files")
                series_mode = gr.Radio(list(SERIES_MODES), value=SERIES_MODES[0], label="Training")
                series_btn = gr.Button("Denoise series", variant="primary", elem_id="filter2noise-series-run")
                series_status = gr.Markdown(elem_id="filter2noise-series-status")
            with gr.Column(scale=2):
                series_view = gr.ImageSlider(label="Slice: noisy | Filter2Noise (drag); same window as above",
                                             format=settings.IMAGE_FORMAT, type="numpy")
                series_index = gr.Slider(1, 2, 1, step=1, label="Slice (scroll through the series)",
                                         interactive=False, elem_id="filter2noise-series-index")
                series_download = gr.File(label="Denoised series: zip of DICOM (de-identified unless asked), or .npy",
                                          interactive=False, elem_id="filter2noise-series-download")
        series_state = shell.session_state()
    shell.figures("How it scores: measured figures")
    inputs = [file, reference, frame, window, width, level, iterations, edge_weight, keep_ids]
    shell.examples([[row[i] for i in EXAMPLE_COLUMNS] for row in EXAMPLES], [inputs[i] for i in EXAMPLE_COLUMNS],
                   label="Examples: CT_small at simulated low dose (5,000 photons), Shepp-Logan phantom at 10,000 and 2,500 "
                         "photons, each with its noiseless reference; CT_small as shipped (a clean slice, no reference)")

    main_outputs = [slider, residual, sigmas, editor, metrics, edits, downloads, status, session]
    run_event = shell.on_run(run_btn, run, inputs, main_outputs, params=params, params_note=PARAMS_NOTE)
    edit_event = shell.light(apply_btn.click, edit_region, [editor, box, factor, window, width, level, keep_ids, session],
                             main_outputs, api_name="filter2noise_edit")
    reset_event = shell.light(reset_btn.click, reset_region, [window, width, level, keep_ids, session], main_outputs,
                              api_name="filter2noise_reset")
    private = dict(queue=False, api_visibility="private")
    for event in (run_event, edit_event, reset_event):  # the maps on the chosen colour scale
        event.then(sigma_view, [sigma_scale, session], sigmas, **private)
    sigma_scale.change(sigma_view, [sigma_scale, session], sigmas, **private)
    file.change(preview, [file, frame, window, width, level], [slider, status], **private)
    window.change(preset_fields, window, [width, level], **private)
    for field in (width, level):
        field.input(to_custom, window, window, **private)
    for control in (window, width, level):
        control.change(rewindow, [window, width, level, session], [slider, residual, editor], api_name=False
                       if control is not window else "filter2noise_window", show_progress="hidden")
    shell.light(measure_btn.click, measure_region, [editor, box, session], region_table, api_name="filter2noise_measure")
    shell.heavy(series_btn.click, run_series, [series_files, series_mode, window, width, level, iterations, edge_weight,
                                               keep_ids],
                [series_view, series_index, series_download, series_status, series_state], api_name="filter2noise_series")
    series_inputs = [series_index, window, width, level, series_state]
    series_index.change(series_slice, series_inputs, series_view, api_name="filter2noise_series_slice",
                        show_progress="hidden", queue=False)
    for control in (window, width, level):
        control.change(series_slice, series_inputs, series_view, show_progress="hidden", **private)
    base_event = shell.heavy(base_btn.click, baselines, [window, width, level, session], [base_gallery, base_table],
                             api_name="filter2noise_baselines")
    base_cancel.click(cancel_baselines, None, base_table, cancels=[base_event], **private)
    run_event.then(_baselines_button, session, base_btn, **private)
