"""Creating a study and reading it: the variant images of each case are computed once (with
progress) and kept in a bounded in-memory cache; a reader gets the next unread case of their own
blinded order, and their ratings are stored by variant, never by what they were shown as alone.

Where a case's pixels come from when the cache has dropped them: the bundled cases are rebuilt
(deterministic, checked against the stored hash); uploads come back from the database only if the
owner asked to keep them; otherwise the study says so plainly.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Callable

import numpy as np

from adapters.common.errors import BadInput
from studio.study.design import (
    CRITERIA,
    LETTERS,
    PREFERENCE,
    SCALE,
    BlindedItem,
    StudyDesign,
    StudyKind,
    case_hash,
    check_reader,
    reader_plan,
)
from studio.study.store import StudyStore

KINDS: dict[str, StudyKind] = {}
CACHE_BYTES = 256 * 2**20  # variant images kept in memory across studies; least recently used dropped first
MAX_CASES = 200


def register(kind: StudyKind) -> StudyKind:
    KINDS[kind.key] = kind
    return kind


def get_kind(key: str) -> StudyKind:
    if key not in KINDS:
        raise BadInput("This study's kind of images is not available in this studio.")
    return KINDS[key]


class VariantCache:
    """(study, case) -> {"pixels": case, "variants": {key: pixels}}, bounded in bytes."""

    def __init__(self, max_bytes: int = CACHE_BYTES):
        self.max_bytes = max_bytes
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _size(entry) -> int:
        return entry["pixels"].nbytes + sum(a.nbytes for a in entry["variants"].values())

    def get(self, key):
        with self._lock:
            entry = self._items.get(key)
            if entry is not None:
                self._items.move_to_end(key)
            return entry

    def put(self, key, entry) -> None:
        with self._lock:
            self._items[key] = entry
            self._items.move_to_end(key)
            while len(self._items) > 1 and sum(self._size(e) for e in self._items.values()) > self.max_bytes:
                self._items.popitem(last=False)

    def drop_study(self, study_id: str) -> None:
        with self._lock:
            for key in [k for k in self._items if k[0] == study_id]:
                del self._items[key]


CACHE = VariantCache()

Progress = Callable[[float, str], None] | None


def _say(progress: Progress, fraction: float, text: str) -> None:
    if progress is not None:
        progress(fraction, text)


def _compute(kind: StudyKind, pixels: np.ndarray, design: StudyDesign, progress: Progress, lo: float, hi: float) -> dict:
    def scaled(fraction, text=""):
        _say(progress, lo + (hi - lo) * fraction, text)

    out = kind.compute(pixels, design.settings, scaled)
    missing = set(design.variants) - set(out)
    if missing:
        raise RuntimeError(f"the {kind.key} study kind made no image for {sorted(missing)}")
    return {key: np.asarray(out[key], np.float32) for key in design.variants}


def create_study(store: StudyStore, kind: StudyKind, design: StudyDesign, cases: list[np.ndarray],
                 progress: Progress = None) -> tuple[str, str, float]:
    """Store the study and compute every variant of every case now, so reading is instant.
    Returns (study code, owner key, seconds spent computing the variants)."""
    if not 1 <= len(cases) <= MAX_CASES:
        raise BadInput(f"A study needs 1 to {MAX_CASES} cases; {len(cases)} were given.")
    salt = store.new_salt()
    hashes = [case_hash(salt, c) for c in cases]
    study_id, owner_key = store.create(salt, design, hashes, cases)
    start = time.perf_counter()
    n = len(cases)
    for i, (h, pixels) in enumerate(zip(hashes, cases)):
        _say(progress, i / n, f"Preparing case {i + 1} of {n}")
        variants = _compute(kind, pixels, design, progress, i / n, (i + 1) / n)
        CACHE.put((study_id, h), {"pixels": np.asarray(pixels, np.float32), "variants": variants})
    return study_id, owner_key, time.perf_counter() - start


def _case_pixels(store: StudyStore, kind: StudyKind, study_id: str, design: StudyDesign, salt: str,
                 hashes: tuple[str, ...], case: str) -> np.ndarray:
    kept = store.kept_pixels(study_id, case)
    if kept is not None:
        return kept
    if design.source.get("type") == "bundled":
        rebuilt = kind.bundled_cases(int(design.source["count"]), int(design.source.get("crop") or 0))
        pixels = rebuilt[hashes.index(case)]
        if case_hash(salt, pixels) == case:
            return pixels
    raise BadInput("This study's uploaded cases are no longer held by the server (it restarted or dropped them), and "
                   "the study owner did not ask to keep de-identified images: create the study again to go on.")


def variants_of(store: StudyStore, kind: StudyKind, study_id: str, case: str, progress: Progress = None) -> dict:
    """Every variant of one case: from the cache, else computed again from the case's pixels."""
    entry = CACHE.get((study_id, case))
    if entry is None:
        design, salt, hashes = store.study(study_id)
        pixels = _case_pixels(store, kind, study_id, design, salt, hashes, case)
        _say(progress, 0.0, "Preparing this case")
        entry = {"pixels": np.asarray(pixels, np.float32), "variants": _compute(kind, pixels, design, progress, 0.0, 1.0)}
        CACHE.put((study_id, case), entry)
    return entry["variants"]


def window_for(kind: StudyKind, window: str | None) -> str:
    """The display the reader asked for, or the kind's first one when it has no such display (a
    reader's choice may come from another kind of study)."""
    return window if window in kind.windows else kind.windows[0]


def study_kind(store: StudyStore, study_id: str) -> StudyKind:
    return get_kind(store.study(study_id)[0].kind)


def next_item(store: StudyStore, study_id: str, reader_id: str, window: str,
              progress: Progress = None) -> BlindedItem | None:
    """The first case of this reader's order they have not rated (None when all are done)."""
    reader_id = check_reader(reader_id)
    design, salt, hashes = store.study(study_id)
    kind = get_kind(design.kind)
    plan = reader_plan(salt, reader_id, hashes, design.variants)
    done = store.done_cases(study_id, reader_id) & set(hashes)
    position = next((i for i, h in enumerate(plan.order) if h not in done), None)
    if position is None:
        return None
    case = plan.order[position]
    variants = variants_of(store, kind, study_id, case, progress)
    window = window_for(kind, window)
    letters = LETTERS[:len(design.variants)]
    images = tuple(kind.display(variants[key], window) for key in plan.letters[position])
    return BlindedItem(position, len(hashes), len(done), case, tuple(letters), images,
                       tuple(CRITERIA[c] for c in design.criteria), design.preference)


def record(store: StudyStore, study_id: str, reader_id: str, case: str,
           scores: dict[str, dict[str, int]], preferred: str | None = None) -> None:
    """Store one reader's answers for one case, given by letter: {letter: {criterion: score}}."""
    reader_id = check_reader(reader_id)
    design, salt, hashes = store.study(study_id)
    plan = reader_plan(salt, reader_id, hashes, design.variants)
    if case not in plan.order:
        raise BadInput("That case is not part of this study.")
    position = plan.order.index(case)
    letters = tuple(LETTERS[:len(design.variants)])
    missing = [f"{letter} {CRITERIA[c].question.lower()}" for letter in letters for c in design.criteria
               if (scores.get(letter) or {}).get(c) in (None, "")]
    if missing:
        raise BadInput("Rate every image on every question before going on; missing: " + ", ".join(missing) + ".")
    if design.preference and preferred not in letters:
        raise BadInput("Pick the image you prefer (" + ", ".join(letters) + ").")
    rows = {}
    for letter in letters:
        variant = plan.variant_for(position, letter)
        for c in design.criteria:
            score = int(scores[letter][c])
            if score not in SCALE:
                raise BadInput(f"Ratings go from {SCALE[0]} to {SCALE[-1]}.")
            rows[(variant, c)] = (letter, score)
        if design.preference:
            rows[(variant, PREFERENCE)] = (letter, int(letter == preferred))
    store.save(study_id, reader_id, case, rows)
