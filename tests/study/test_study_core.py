"""The reader-study core without any UI: blinding per reader, resume, exports checked against the
iMRMC input format, bootstrap values on known fixtures, no variant name in what a reader is sent,
and no patient identifier in the database (a planted canary)."""
from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import numpy as np
import pydicom
import pytest

from adapters.common.errors import BadInput
from studio.study import analysis, reading
from studio.study.design import LETTERS, PREFERENCE, BlindedItem, StudyDesign, StudyKind, Variant, case_hash, reader_plan
from studio.study.store import StudyStore

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "filter2noise"
# each variant draws as a constant grey that names it, so a test can see which variant a letter hid
GREY = {"kilo": 10, "lima": 80, "mike": 160, "oscar": 240}
VARIANTS = tuple(Variant(k, f"Method {k.upper()} name") for k in GREY)


def _bundled(count, crop):
    rng = np.random.default_rng(7)
    return [rng.normal(0, 1, (crop or 16, crop or 16)).astype(np.float32) for _ in range(count)]


FAKE = reading.register(StudyKind(
    key="test-fake", title="Synthetic squares", variants=VARIANTS,
    compute=lambda px, settings, progress: {k: np.full_like(px, g) for k, g in GREY.items()},
    display=lambda px, window: np.full(px.shape, int(px.flat[0]), np.uint8),
    windows=("plain",), load_cases=lambda path, crop: [np.load(path)], bundled_cases=_bundled))


def design(**changes) -> StudyDesign:
    base = dict(name="Squares", kind=FAKE.key, variants=tuple(GREY), criteria=("noise", "sharpness"), preference=True,
                source={"type": "bundled", "count": 10, "crop": 16}, settings={})
    base.update(changes)
    return StudyDesign(**base)


@pytest.fixture
def store(tmp_path):
    reading.CACHE.__init__()
    return StudyStore(str(tmp_path / "studies.sqlite"))


def rate_next(store, study, reader, prefer_grey=160):
    """Answer the next case: every variant's score is its grey // 60 + 1, the preference the given grey."""
    item = reading.next_item(store, study, reader, "plain")
    greys = {letter: int(image.flat[0]) for letter, image in zip(item.letters, item.images)}
    scores = {letter: {"noise": g // 60 + 1, "sharpness": 5 - g // 60} for letter, g in greys.items()}
    preferred = next(letter for letter, g in greys.items() if g == prefer_grey)
    reading.record(store, study, reader, item.case, scores, preferred)
    return item


def test_each_reader_gets_their_own_case_order_and_letters_and_keeps_it():
    cases = [f"case{i}" for i in range(10)]
    plans = {r: reader_plan("salt", r, cases, tuple(GREY)) for r in ("R1", "R2", "R3")}
    orders = {r: p.order for r, p in plans.items()}
    assert len(set(orders.values())) == 3, "two readers got the same case order"
    for plan in plans.values():
        assert sorted(plan.order) == sorted(cases)
        assert all(sorted(letters) == sorted(GREY) for letters in plan.letters)
    assert len({p.letters for p in plans.values()}) == 3
    # the same reader in the same study always gets the same plan; another study's salt changes it
    assert reader_plan("salt", "R1", cases, tuple(GREY)) == plans["R1"]
    assert reader_plan("other", "R1", cases, tuple(GREY)).order != plans["R1"].order
    # across cases the letter A hides every variant at some point (labels are not fixed)
    assert {letters[0] for letters in plans["R1"].letters} == set(GREY)


def test_reading_resumes_after_an_interruption_and_a_restart(store, tmp_path):
    study, _, _ = reading.create_study(store, FAKE, design(), _bundled(10, 16))
    seen = [rate_next(store, study, "R1").case for _ in range(4)]
    # the server "restarts": a new store on the same file, an empty image cache
    reading.CACHE.__init__()
    again = StudyStore(str(tmp_path / "studies.sqlite"))
    item = reading.next_item(again, study, "R1", "plain")
    assert (item.position, item.done, item.total) == (4, 4, 10)
    assert item.case not in seen
    _, salt, hashes = again.study(study)
    assert item.case == reader_plan(salt, "R1", hashes, tuple(GREY)).order[4]
    for _ in range(6):
        rate_next(again, study, "R1")
    assert reading.next_item(again, study, "R1", "plain") is None
    assert len(again.done_cases(study, "R1")) == 10
    # another reader starts from their own beginning
    assert reading.next_item(again, study, "R2", "plain").done == 0


def test_uploaded_cases_come_back_after_a_restart_only_if_the_owner_kept_them(store):
    cases = _bundled(3, 8)
    dropped, _, _ = reading.create_study(store, FAKE, design(source={"type": "upload", "crop": 0}), cases)
    kept, _, _ = reading.create_study(store, FAKE, design(source={"type": "upload", "crop": 0}, keep_images=True), cases)
    reading.CACHE.__init__()
    assert reading.next_item(store, kept, "R1", "plain").total == 3
    with pytest.raises(BadInput, match="did not ask to keep"):
        reading.next_item(store, dropped, "R1", "plain")


def test_missing_answers_and_bad_reader_codes_are_refused(store):
    study, _, _ = reading.create_study(store, FAKE, design(), _bundled(10, 16))
    item = reading.next_item(store, study, "R1", "plain")
    with pytest.raises(BadInput, match="missing: A noise"):
        reading.record(store, study, "R1", item.case, {}, "A")
    full = {letter: {"noise": 3, "sharpness": 3} for letter in item.letters}
    with pytest.raises(BadInput, match="Pick the image you prefer"):
        reading.record(store, study, "R1", item.case, full, None)
    with pytest.raises(BadInput, match="reader code"):
        reading.next_item(store, study, "Dr Jane Doe", "plain")
    assert not store.done_cases(study, "R1")


def test_the_blinded_payload_names_no_variant(store):
    study, _, _ = reading.create_study(store, FAKE, design(), _bundled(10, 16))
    item = reading.next_item(store, study, "R1", "plain")
    assert isinstance(item, BlindedItem) and item.letters == tuple(LETTERS[:4])
    text = repr({k: v for k, v in item.__dict__.items() if k != "images"}).lower()
    for v in VARIANTS:
        assert v.key not in text and v.name.lower() not in text
    # the letters hide the variants the stored plan says, and the stored rows are by variant
    design_, salt, hashes = store.study(study)
    plan = reader_plan(salt, "R1", hashes, design_.variants)
    assert [int(im.flat[0]) for im in item.images] == [GREY[k] for k in plan.letters[item.position]]
    rate_next(store, study, "R1", prefer_grey=80)
    rows = store.ratings(study)
    for r in rows:
        if r["criterion"] == "noise":
            assert r["score"] == GREY[r["variant"]] // 60 + 1
        if r["criterion"] == PREFERENCE:
            assert r["score"] == int(r["variant"] == "lima")


def parse_imrmc(text: str):
    """The input rules of iMRMC's InputFile reader: header lines up to one starting with
    BEGIN DATA:, then reader,case,modality,score rows (whitespace removed); NR:/NM: in the header
    are sizes; truth rows have reader -1 or truth."""
    lines = text.splitlines()
    begin = next(i for i, line in enumerate(lines) if line.upper().startswith("BEGIN DATA:"))
    header = lines[:begin]
    sizes = {}
    for line in header:
        for token in ("N0:", "N1:", "NR:", "NM:"):
            at = line.upper().find(token)
            if at != -1:
                assert at == 0, f"a header line would be read as a size: {line!r}"
                sizes[token] = int(line[3:].strip())
    rows = []
    for line in lines[begin + 1:]:
        fields = [re.sub(r"\s", "", f) for f in line.split(",")]
        assert len(fields) == 4 and all(fields), line
        rows.append((fields[0], fields[1], fields[2], float(fields[3])))
    return header, sizes, rows


def test_csv_and_imrmc_exports_hold_every_rating_in_the_right_layout(store):
    study, _, _ = reading.create_study(store, FAKE, design(), _bundled(10, 16))
    for reader in ("R1", "R2"):
        for _ in range(10):
            rate_next(store, study, reader)
    rows = store.ratings(study)
    design_, _, hashes = store.study(study)
    table = list(csv.DictReader(io.StringIO(analysis.csv_text(study, FAKE, rows))))
    assert len(table) == 2 * 10 * 4 * 3 and tuple(table[0]) == analysis.CSV_COLUMNS
    assert {t["variant_name"] for t in table} == {v.name for v in VARIANTS}
    assert all(t["shown_as"] in "ABCD" for t in table)
    for criterion in design_.scored:
        header, sizes, data = parse_imrmc(analysis.imrmc_text(design_, FAKE, rows, criterion))
        assert sizes == {"NR:": 2, "NM:": 4}
        assert not [r for r in data if r[0] in ("-1", "truth")]
        assert len(data) == len({r[:3] for r in data}) == 2 * 10 * 4  # fully crossed, no duplicates
        assert {r[1] for r in data} == set(hashes) and {r[2] for r in data} == set(GREY)
        expected = {(r["reader_id"], r["case"], r["variant"]): r["score"] for r in rows if r["criterion"] == criterion}
        assert {r[:3]: r[3] for r in data} == expected
    assert "Method MIKE name" in analysis.imrmc_text(design_, FAKE, rows, "noise")


def test_bootstrap_on_known_fixtures():
    # one reader, two cases scored 1 and 5: resampled means are 1, 3 or 5 (p = 1/4, 1/2, 1/4)
    cube = np.array([[[1.0, 2.0], [5.0, 2.0]]])
    first, constant = analysis.bootstrap(cube, draws=4000, seed=3)
    assert first.mean == 3.0 and (first.low, first.high) == (1.0, 5.0) and first.n == 2
    assert (constant.mean, constant.low, constant.high) == (2.0, 2.0, 2.0)
    # readers are resampled too: two readers who disagree by a constant widen the interval
    two = np.array([[[3.0]] * 5, [[5.0]] * 5])
    est = analysis.bootstrap(two, draws=4000, seed=0)[0]
    assert est.mean == 4.0 and (est.low, est.high) == (3.0, 5.0)
    # missing ratings (NaN) are left out of the mean, not counted as zero
    assert analysis.bootstrap(np.array([[[4.0], [np.nan]]]), draws=200)[0].mean == 4.0


def test_summary_unblinds_with_means_win_rates_and_a_plot(store):
    study, owner, _ = reading.create_study(store, FAKE, design(), _bundled(10, 16))
    store.check_owner(study, owner)
    for wrong in ("", owner[:-1], None):
        with pytest.raises(BadInput, match="owner"):
            store.check_owner(study, wrong)
    for reader in ("R1", "R2"):
        for _ in range(10):
            rate_next(store, study, reader, prefer_grey=160)
    design_ = store.study(study)[0]
    summary = analysis.summarise(design_, store.ratings(study), draws=500)
    assert (summary.readers, summary.cases) == (2, 10)
    noise = summary.table["Mean rating: Noise"]
    assert [e.mean for e in noise] == [GREY[k] // 60 + 1 for k in design_.variants]
    win = summary.table["Win rate (preferred)"]
    assert [e.mean for e in win] == [float(k == "mike") for k in design_.variants]
    text = analysis.summary_markdown(summary, design_, FAKE)
    assert "Method MIKE name" in text and "100% [100, 100]" in text
    plot = analysis.summary_plot(summary, design_, FAKE)
    assert plot.ndim == 3 and plot.shape[0] > 100 and plot.std() > 10


def test_win_rate_without_a_preference_shares_ties():
    rows = [dict(reader_id="R1", case="c1", variant=v, criterion="noise", score=s, letter="A", rated_at="")
            for v, s in (("kilo", 5), ("lima", 5), ("mike", 1), ("oscar", 2))]
    cube, _, _ = analysis.wins(rows, design(criteria=("noise",), preference=False))
    assert cube[0, 0].tolist() == [0.5, 0.5, 0.0, 0.0]


def canary_dicom(folder: Path) -> Path:
    ds = pydicom.dcmread(ASSETS / "CT_small_I0_5e3.dcm")
    ds.PatientName, ds.PatientID = "CANARYNAME^ZEBRA", "CANARYID4711"
    ds.InstitutionName, ds.StudyDescription = "CANARYHOSPITAL", "CANARYSTUDY"
    path = folder / "CANARYFILE_patient.dcm"
    ds.save_as(path)
    return path


@pytest.mark.parametrize("keep", [False, True])
def test_no_patient_identifier_reaches_the_database(store, tmp_path, keep):
    from studio.study import ct

    path = canary_dicom(tmp_path)
    (pixels,) = ct.load_cases(str(path))
    study, _, _ = reading.create_study(store, FAKE, design(source={"type": "upload", "crop": 0}, keep_images=keep), [pixels])
    rate_next(store, study, "R1")
    db = Path(store.backend.path)
    blob = b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*")).upper()  # with any journal file
    for canary in (b"CANARY", str(path).upper().encode(), str(tmp_path).upper().encode()):
        assert canary not in blob
    _, salt, hashes = store.study(study)
    assert hashes == (case_hash(salt, pixels),)
    # the hash is salted: the same pixels in another study get another name
    assert case_hash("another salt", pixels) != hashes[0]


def test_a_sqlalchemy_url_works_like_the_embedded_file(tmp_path):
    pytest.importorskip("sqlalchemy")
    reading.CACHE.__init__()
    store = StudyStore(f"sqlite+pysqlite:///{tmp_path / 'server.sqlite'}")
    assert "sqlite database set in" in store.describe()
    study, _, _ = reading.create_study(store, FAKE, design(), _bundled(10, 16))
    rate_next(store, study, "R1")
    assert len(store.ratings(study)) == 4 * 3 and len(store.done_cases(study, "R1")) == 1


@pytest.mark.slow  # ~25 s alone on a loaded 2-core machine, mostly first imports of torch and bm3d
def test_ct_variants_come_from_the_ct_tabs_device_entries(monkeypatch):
    from studio import device
    from studio.study import ct

    monkeypatch.setenv("STUDIO_MODEL_SOURCE", "bundled")
    cases = ct.bundled_cases(10, 64)
    assert len(cases) == 10 and all(c.shape == (64, 64) for c in cases)
    assert len({case_hash("s", c) for c in cases}) == 10
    with device.recording_calls() as calls:
        out = ct.compute(cases[0], {"iterations": 5})
    assert [(name, args[:2]) for name, args, _, _ in calls] == [
        ("run_paper", ("filter2noise", "run")), ("run_paper", ("filter2noise", "baselines"))]
    assert all(pickled for *_, pickled in calls)
    assert set(out) == {v.key for v in ct.VARIANTS} and np.array_equal(out["noisy"], cases[0])

    def roughness(hu):  # what a denoiser removes: the pixel-to-pixel differences
        return float(np.abs(np.diff(hu, axis=1)).mean())

    for key in ("filter2noise", "bilateral", "bm3d"):
        assert out[key].shape == (64, 64)
        assert roughness(out[key]) < 0.8 * roughness(out["noisy"]), key
    shown = ct.display(out["bm3d"], ct.CT.windows[0])
    assert shown.dtype == np.uint8 and shown.shape == (64, 64)
