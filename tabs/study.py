"""Reader study: clinicians rate a tab's variants of the same cases blinded, each in their own
random order, under letters; ratings are stored per reader so a study can be left and resumed;
the study owner unblinds the results (means and win rates with bootstrap intervals, CSV and iMRMC
files). The work is in `studio.study`; this module lays it out."""
from __future__ import annotations

import gradio as gr

from studio import settings
from studio.registry import TabInfo
from studio.shell import HEAVY, LIGHT
from studio.study import analysis, reading
from studio.study.ct import CT
from studio.study.design import CRITERIA, LETTERS, MAX_CRITERIA, MAX_VARIANTS, SCALE, StudyDesign, check_design
from studio.study.store import StudyStore
from studio.ui import done_markdown, download_path, friendly, stopwatch, upload_path

INFO = TabInfo(
    key="study",
    title="Reader study",
    api_names=("study_create", "study_start", "study_rate", "study_results"),
    description=(
        "A blinded reader study of what a tab makes: each reader sees the same cases in their own "
        "random order, the processed versions of each case side by side under shuffled letters at "
        "one window or display, and rates them (CT denoisers; camouflaged-object masks with the "
        "adapter on and off; image-to-video with the adapter on and off); nobody sees which letter is which method until the study owner "
        "opens the results. Cases are stored only as salted hashes of their pixels, never with a "
        "file name or header. Research tool: not for diagnosis."
    ),
)
reading.register(CT)
SOURCES = ("Bundled examples", "My uploads")
VIEWS = ("Side by side", "One at a time")
MAX_PREPARE_S = 900  # a study asking for more preparation than this (on one free CPU thread) is refused


def _kinds() -> dict:
    """Every kind of study this studio offers: CT, and any tab that declares ``STUDY_KIND``."""
    import tabs

    for module in tabs.registered_tabs():
        kind = getattr(module, "STUDY_KIND", None)
        if kind is not None:
            reading.register(kind)
    return {kind.title: kind for kind in reading.KINDS.values() if not kind.key.startswith("test-")}


def _store() -> StudyStore:
    return StudyStore()


def _code(code) -> str:
    code = str(code or "").strip().lower()
    if not code:
        raise gr.Error("Enter the study code (the study owner gets it when creating the study).")
    return code


def _progress(progress):
    return (lambda fraction, text: progress(fraction, desc=text)) if progress is not None else None


# --- owner: create ------------------------------------------------------------------------------

@friendly("Creating the study")
def create(name, kind_title, source, files, count, crop, iterations, criteria, preference, keep_images, text=None,
           progress=gr.Progress()):
    """Validate everything here, then compute every variant of every case once (with progress)."""
    kinds = _kinds()
    if kind_title not in kinds:
        raise gr.Error("Pick what the study is about.")
    kind = kinds[kind_title]
    name, criteria_keys, preference = check_design(kind, name, [k for k in kind.criteria
                                                                 if CRITERIA[k].question in (criteria or ())], preference)
    crop_px = dict(kind.crops).get(crop)
    if crop_px is None:
        raise gr.Error("Pick a case size: " + ", ".join(label for label, _ in kind.crops) + ".")
    study_settings = kind.settings_from(iterations, text)
    try:
        count = int(count)
    except (TypeError, ValueError):
        raise gr.Error("The number of cases must be a whole number.") from None
    if source == SOURCES[0]:
        if not 1 <= count <= 40:
            raise gr.Error("Ask for 1 to 40 bundled cases.")
        cases = kind.bundled_cases(count, crop_px)
        origin = {"type": "bundled", "count": count, "crop": crop_px}
    elif source == SOURCES[1]:
        paths = [upload_path(f) for f in (files or [])]
        if not paths:
            raise gr.Error("Upload the cases (one file per case) or use the bundled examples.")
        cases = [case for p in paths for case in kind.load_cases(str(p), crop_px)]
        origin = {"type": "upload", "crop": crop_px}
    else:
        raise gr.Error("Pick where the cases come from.")
    estimate = sum(kind.estimate_seconds(c.shape, study_settings) for c in cases)
    if estimate > MAX_PREPARE_S:
        less = "fewer cases" + (", smaller tiles" if len(kind.crops) > 1 else "") + (
            f" or a lower '{kind.number_setting.label}'" if kind.number_setting else "")
        raise gr.Error(f"Preparing {len(cases)} cases would take about {estimate / 60:.0f} min of shared compute "
                       f"(limit {MAX_PREPARE_S // 60} min): ask for {less}.")
    design = StudyDesign(name=name, kind=kind.key, variants=tuple(v.key for v in kind.variants), criteria=criteria_keys,
                         preference=preference, source=origin, settings=study_settings,
                         keep_images=bool(keep_images))
    store = _store()
    with stopwatch() as elapsed:
        code, owner_key, _ = reading.create_study(store, kind, design, cases, _progress(progress))
    per_case = elapsed() / len(cases)
    kept = ("The de-identified case pixels are kept so reading survives a server restart." if keep_images else
            "No case image is stored" + ("." if origin["type"] == "bundled" else
                                         ": if the server restarts, uploaded cases must be given again."))
    status = (f"Done in {elapsed():.1f} s ({per_case:.1f} s per case; estimated {estimate:.0f} s on a free CPU "
              f"thread). Study **{name}** created: {len(cases)} cases x "
              f"{len(design.variants)} versions each. {kind.settings_note(design.settings)} {kept}\n\n"
              f"Study code for readers: **`{code}`** · Owner key for the results (keep it: it is shown once): "
              f"**`{owner_key}`** · Ratings go to {store.describe()}.")
    return status, code, code


def estimate_text(kind_title, source, count, crop, iterations, text=None) -> str:
    """The warning shown before anything runs: how long preparing the bundled cases will take."""
    kind = _kinds().get(kind_title)
    if kind is None or source != SOURCES[0]:
        return "Preparing computes every version of every case once; the time is stated before it starts."
    try:
        crop_px = dict(kind.crops).get(crop, kind.crops[0][1])
        shapes = (kind.bundled_shapes(int(count), crop_px) if kind.bundled_shapes else
                  [c.shape for c in kind.bundled_cases(int(count), crop_px)])
        study_settings = kind.settings_from(iterations, text if text else getattr(kind.text_setting, "default", None))
    except Exception:  # an impossible combination: the Create button says why
        return ""
    seconds = sum(kind.estimate_seconds(shape, study_settings) for shape in shapes)
    limit = "" if seconds <= MAX_PREPARE_S else f" That is over the {MAX_PREPARE_S // 60} min limit: ask for less."
    return (f"Preparing {len(shapes)} cases x {len(kind.variants)} versions takes about {seconds:.0f} s on a free CPU "
            f"thread (longer while others use the machine), once; reading is then instant.{limit}")


def kind_controls(kind_title):
    """The set-up controls for the chosen kind of study: its questions, case sizes, files and settings."""
    kind = _kinds().get(kind_title)
    if kind is None:
        return [gr.skip()] * 6
    questions = [CRITERIA[k].question for k in kind.criteria]
    crops = [label for label, _ in kind.crops]
    number, text = kind.number_setting, kind.text_setting
    return (gr.update(choices=questions, value=questions[:MAX_CRITERIA]),
            gr.update(choices=crops, value=crops[min(1, len(crops) - 1)]),
            gr.update(label=kind.files_label, file_types=list(kind.file_types)),
            gr.update(visible=number is not None, **({} if number is None else dict(
                minimum=number.low, maximum=number.high, step=number.step, value=number.default, label=number.label))),
            gr.update(visible=text is not None, **({} if text is None else dict(value=text.default, label=text.label))),
            gr.update(label=f"Bundled {kind.unit}"))


# --- reader: start, rate ------------------------------------------------------------------------

DISPLAY_PX = 256  # small cases are enlarged to about this size by repeating pixels (no smoothing)


def _zoom(image):
    """Enlarge by a whole factor with nearest neighbours: the browser's own scaling would smooth
    the noise the reader is asked to judge."""
    import numpy as np

    factor = max(1, DISPLAY_PX // max(image.shape[:2]))
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1) if factor > 1 else image


def _hidden_item():
    images = [gr.update(value=None, visible=False) for _ in range(MAX_VARIANTS)]
    columns = [gr.update(visible=False) for _ in range(MAX_VARIANTS)]
    radios = [gr.update(value=None, visible=False) for _ in range(MAX_VARIANTS * MAX_CRITERIA)]
    return images, columns, radios


def _render(item, view, study_code, reader):
    """Outputs for one blinded case: letters and pictures only."""
    images, columns, radios = _hidden_item()
    if item is None:
        note = f"All cases of this study are rated. Thank you, {reader}. The study owner opens the results."
        return (note, *images, *columns, *radios, gr.update(value=None, visible=False),
                gr.update(value=None, visible=False), gr.update(visible=False), gr.update(visible=False), None)
    one = view == VIEWS[1]
    shown = [_zoom(image) for image in item.images]
    for i, (letter, image) in enumerate(zip(item.letters, shown)):
        columns[i] = gr.update(visible=True)
        images[i] = gr.update(value=image, label=letter, visible=not one)
        for j, question in enumerate(item.questions):
            radios[i * MAX_CRITERIA + j] = gr.update(value=None, visible=True, label=f"{letter}: {question.question}")
    scales = "; ".join(f"{q.question}: {q.low}, {q.high}" for q in item.questions)
    note = (f"**Case {item.position + 1} of {item.total}** ({item.done} rated so far; case `{item.case}`). "
            f"Rate each image: {scales}." + (" Then pick the one you prefer." if item.preference else ""))
    single = gr.update(value=shown[0], label=item.letters[0], visible=one)
    flip = gr.update(choices=list(item.letters), value=item.letters[0], visible=one)
    prefer = gr.update(choices=list(item.letters), value=None, visible=item.preference)
    state = {"study": study_code, "reader": reader, "case": item.case, "letters": item.letters,
             "criteria": [q.key for q in item.questions], "images": shown, "preference": item.preference}
    return (note, *images, *columns, *radios, single, flip, prefer, gr.update(visible=True), state)


@friendly("Opening the study")
def start(study_code, reader, window, view, progress=gr.Progress()):
    """The reader's next unrated case in their own order (where they left off), and the displays
    this study's kind of images offers."""
    code = _code(study_code)
    store = _store()
    kind = reading.study_kind(store, code)
    window = reading.window_for(kind, window)
    item = reading.next_item(store, code, reader, window, _progress(progress))
    return (*_render(item, view, code, str(reader).strip()), gr.update(choices=list(kind.windows), value=window))


@friendly("Saving the ratings")
def rate(*args, progress=gr.Progress()):
    *answers, preferred, window, view, state = args
    if not state:
        raise gr.Error("Start or resume the study first.")
    scores = {}
    for i, letter in enumerate(state["letters"]):
        scores[letter] = {c: answers[i * MAX_CRITERIA + j] for j, c in enumerate(state["criteria"])}
    store = _store()
    reading.record(store, state["study"], state["reader"], state["case"], scores,
                   preferred if state["preference"] else None)
    item = reading.next_item(store, state["study"], state["reader"], window, _progress(progress))
    return _render(item, view, state["study"], state["reader"])


@friendly("Changing the window")
def rewindow(window, view, state, progress=gr.Progress()):
    """The case on screen again at another window; the ratings already ticked stay as they are."""
    if not state:
        return [gr.skip()] * (MAX_VARIANTS + 2)
    item = reading.next_item(_store(), state["study"], state["reader"], window, _progress(progress))
    if item is None or item.case != state["case"]:
        return [gr.skip()] * (MAX_VARIANTS + 2)
    shown = [_zoom(image) for image in item.images]
    images = [gr.update(value=shown[i]) if i < len(shown) else gr.skip() for i in range(MAX_VARIANTS)]
    one = view == VIEWS[1]
    return [*images, gr.update(value=shown[0], label=item.letters[0]) if one else gr.skip(),
            {**state, "images": shown}]


def flip(letter, state):
    """One-at-a-time view: show the picked letter's image (already in this session's state)."""
    if not state or letter not in state["letters"]:
        return gr.skip()
    return gr.update(value=state["images"][state["letters"].index(letter)], label=letter)


def switch_view(view, state):
    one = view == VIEWS[1]
    n = len(state["letters"]) if state else 0
    return ([gr.update(visible=(i < n) and not one) for i in range(MAX_VARIANTS)]
            + [gr.update(visible=bool(n) and one), gr.update(visible=bool(n) and one)])


# --- owner: results (the only unblinding) -------------------------------------------------------

@friendly("Opening the results")
def results(study_code, owner_key):
    code = _code(study_code)
    store = _store()
    store.check_owner(code, owner_key)
    with stopwatch() as elapsed:
        design, _, hashes = store.study(code)
        kind = reading.get_kind(design.kind)
        rows = store.ratings(code)
        summary = analysis.summarise(design, rows)
        text = analysis.summary_markdown(summary, design, kind)
        plot = analysis.summary_plot(summary, design, kind) if rows else None
        files = []
        if rows:
            path = download_path(f"study_{code}_ratings.csv")
            path.write_text(analysis.csv_text(code, kind, rows))
            files.append(str(path))
            for criterion in design.scored:
                path = download_path(f"study_{code}_{criterion}.imrmc")
                path.write_text(analysis.imrmc_text(design, kind, rows, criterion))
                files.append(str(path))
    legend = "\n".join(f"- `{v}`: {kind.variant(v).name}" for v in design.variants)
    status = done_markdown(elapsed(), "CPU", f"Study **{design.name}**: {len(hashes)} cases.")
    note = ("\n\nThe iMRMC files (one per question) have no truth rows: these ratings have no reference "
            "standard, so they suit iMRMC's mean-score and limits-of-agreement analyses, not ROC.")
    return f"{status}\n\n{text}\n\nVariant keys in the files:\n{legend}{note if rows else ''}", plot, files


# --- layout -------------------------------------------------------------------------------------

def build() -> None:
    kinds = _kinds()
    gr.Markdown(f"## {INFO.title}\n{INFO.description}")
    state = gr.State(None, time_to_live=settings.retention_seconds())
    with gr.Accordion("1. Set up a study (study owner)", open=False, elem_id="study-setup"):
        with gr.Row():
            name = gr.Textbox(label="Study name", placeholder="Low-dose CT denoising, March", elem_id="study-name")
            kind = gr.Dropdown(list(kinds), value=next(iter(kinds)), label="Cases", elem_id="study-kind")
        first = kinds[next(iter(kinds))]
        with gr.Row():
            source = gr.Radio(list(SOURCES), value=SOURCES[0], label="Where the cases come from", elem_id="study-source")
            count = gr.Slider(1, 40, 10, step=1, label=f"Bundled {first.unit}", elem_id="study-count")
            crop = gr.Dropdown([label for label, _ in first.crops], value=first.crops[min(1, len(first.crops) - 1)][0],
                               label="Case size (tiles are cut from the images)", elem_id="study-crop")
        files = gr.File(label=first.files_label, file_count="multiple", file_types=list(first.file_types),
                        elem_id="study-files")
        number, text_setting = first.number_setting, first.text_setting
        with gr.Row():
            iterations = gr.Slider(number.low if number else 0, number.high if number else 1,
                                   number.default if number else 0, step=number.step if number else 1,
                                   label=number.label if number else "", visible=number is not None,
                                   elem_id="study-iterations")
            text = gr.Textbox(text_setting.default if text_setting else "", label=text_setting.label if text_setting else "",
                              visible=text_setting is not None, max_lines=1, elem_id="study-text")
            questions = [CRITERIA[k].question for k in first.criteria]
            criteria = gr.CheckboxGroup(questions, value=questions[:MAX_CRITERIA],
                                        label=f"Questions (each 1-5; at most {MAX_CRITERIA})", elem_id="study-criteria")
        with gr.Row():
            preference = gr.Checkbox(True, label="Also ask which version the reader prefers", elem_id="study-preference")
            keep = gr.Checkbox(False, label="Keep the de-identified case pixels (so reading survives a server restart)",
                               elem_id="study-keep")
        estimate = gr.Markdown(estimate_text(next(iter(kinds)), SOURCES[0], 10, crop.value,
                                             iterations.value, text.value),
                               elem_id="study-estimate", elem_classes="studio-params")
        create_btn = gr.Button("Create study and prepare its images", variant="primary", elem_id="study-create")
        create_status = gr.Markdown(elem_id="study-create-status", elem_classes="studio-status")
    with gr.Accordion("2. Read (reader)", open=True, elem_id="study-read"):
        with gr.Row():
            code = gr.Textbox(label="Study code", elem_id="study-code")
            reader = gr.Textbox(label="Your reader code (not your name)", placeholder="R1", elem_id="study-reader")
            window = gr.Dropdown(list(first.windows), value=first.windows[0], label="Display (same for every image)",
                                 elem_id="study-window")
            view = gr.Radio(list(VIEWS), value=VIEWS[0], label="View", elem_id="study-view")
        start_btn = gr.Button("Start or resume", variant="primary", elem_id="study-start")
        note = gr.Markdown(elem_id="study-status", elem_classes="studio-status")
        single = gr.Image(visible=False, format=settings.IMAGE_FORMAT, type="numpy", interactive=False,
                          elem_id="study-single", show_label=True)
        flip_pick = gr.Radio(list(LETTERS[:MAX_VARIANTS]), visible=False, label="Show", elem_id="study-flip")
        images, columns, radios = [], [], []
        with gr.Row(equal_height=False):
            for i in range(MAX_VARIANTS):
                with gr.Column(min_width=170, visible=False) as column:
                    images.append(gr.Image(visible=False, format=settings.IMAGE_FORMAT, type="numpy", interactive=False,
                                           elem_id=f"study-image-{i}", show_label=True))
                    for j in range(MAX_CRITERIA):
                        radios.append(gr.Radio([str(s) for s in SCALE], visible=False, elem_id=f"study-rate-{i}-{j}"))
                columns.append(column)
        prefer = gr.Radio(list(LETTERS[:MAX_VARIANTS]), visible=False, label="Which do you prefer?", elem_id="study-prefer")
        save_btn = gr.Button("Save and next", visible=False, variant="primary", elem_id="study-save")
    with gr.Accordion("3. Results (study owner; this unblinds the study)", open=False, elem_id="study-results"):
        with gr.Row():
            owner_code = gr.Textbox(label="Study code", elem_id="study-owner-code")
            owner_key = gr.Textbox(label="Owner key", type="password", elem_id="study-owner-key")
        results_btn = gr.Button("Show results", elem_id="study-results-run")
        summary = gr.Markdown(elem_id="study-summary")
        plot = gr.Image(label="Means and win rates with 95% bootstrap intervals", format=settings.IMAGE_FORMAT,
                        type="numpy", interactive=False, elem_id="study-plot")
        downloads = gr.File(label="Ratings (CSV) and iMRMC input files", file_count="multiple", interactive=False,
                            elem_id="study-downloads")

    kind.change(kind_controls, kind, [criteria, crop, files, iterations, text, count], api_name=False,
                show_progress="hidden", **LIGHT)
    for control in (kind, source, count, crop, iterations, text):
        control.change(estimate_text, [kind, source, count, crop, iterations, text], estimate, api_name=False,
                       show_progress="hidden", **LIGHT)
    shown = [note, *images, *columns, *radios, single, flip_pick, prefer, save_btn, state]
    create_btn.click(create, [name, kind, source, files, count, crop, iterations, criteria, preference, keep, text],
                     [create_status, code, owner_code], api_name="study_create", **HEAVY)
    start_btn.click(start, [code, reader, window, view], [*shown, window], api_name="study_start", **LIGHT)
    save_btn.click(rate, [*radios, prefer, window, view, state], shown, api_name="study_rate", **LIGHT)
    flip_pick.change(flip, [flip_pick, state], single, api_name=False, show_progress="hidden")
    view.change(switch_view, [view, state], [*images, single, flip_pick], api_name=False, show_progress="hidden")
    window.change(rewindow, [window, view, state], [*images, single, state], api_name=False, show_progress="hidden")
    results_btn.click(results, [owner_code, owner_key], [summary, plot, downloads], api_name="study_results", **LIGHT)
