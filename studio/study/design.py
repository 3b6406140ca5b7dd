"""What a reader study is, and the blinding.

A *kind* is what a tab declares: the variants it can make of one case (e.g. the noisy CT slice and
three denoisers), how to read a case from a file, the bundled cases it offers and how a case is
drawn on screen. A *design* is one study: a kind, the chosen criteria, whether a preference is
asked, where the cases came from. Cases are known only by a salted hash of their pixels.

Blinding is a pure function of (study salt, reader id): the case order and, per case, the letters
A, B, C, ... given to the variants. Nothing about it needs storing, so a reader resumes exactly where
the same order left off, and two readers get different orders.
"""
from __future__ import annotations

import hashlib
import json
import re
import string
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from adapters.common.errors import BadInput

LETTERS = string.ascii_uppercase
SCALE = (1, 2, 3, 4, 5)
PREFERENCE = "preference"  # the criterion key under which a preference pick is stored (1 picked, 0 not)
MAX_VARIANTS = 4  # the tab lays out this many image slots
MAX_CRITERIA = 3
READER_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


@dataclass(frozen=True)
class Variant:
    key: str  # stored and exported; never shown to a reader
    name: str  # shown only once the study is unblinded


@dataclass(frozen=True)
class Criterion:
    key: str
    question: str
    low: str  # what 1 means
    high: str  # what 5 means


# every criterion any kind may ask; a kind names the ones its readers see (`StudyKind.criteria`)
CRITERIA = {
    "noise": Criterion("noise", "Noise", "1 = severe noise", "5 = no visible noise"),
    "sharpness": Criterion("sharpness", "Sharpness of edges and detail", "1 = very blurred", "5 = sharp"),
    "acceptability": Criterion("acceptability", "Diagnostic acceptability", "1 = unacceptable", "5 = fully acceptable"),
    "coverage": Criterion("coverage", "How much of the hidden object the mask covers", "1 = misses it",
                          "5 = all of it"),
    "background": Criterion("background", "Background left unmarked", "1 = much background marked", "5 = none marked"),
    "boundary": Criterion("boundary", "Boundary follows the object's outline", "1 = a blob", "5 = exact outline"),
    "fidelity": Criterion("fidelity", "Faithful to the still image", "1 = unrecognisable", "5 = the same picture"),
    "motion": Criterion("motion", "Motion as asked", "1 = none or wrong", "5 = clearly as asked"),
    "steadiness": Criterion("steadiness", "Steady from frame to frame", "1 = flickers or melts", "5 = steady"),
}
IMAGE_QUALITY = ("noise", "sharpness", "acceptability")
CT_CROPS = (("Whole slice", 0), ("64 px tiles", 64), ("96 px tiles", 96), ("128 px tiles", 128))


@dataclass(frozen=True)
class NumberSetting:
    """One number the study owner sets for every case (e.g. training iterations of a trained method)."""

    key: str
    label: str
    low: float
    high: float
    step: float
    default: float

    def check(self, value) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise BadInput(f"{self.label}: give a number.") from None
        if not np.isfinite(number) or not self.low <= number <= self.high:
            raise BadInput(f"{self.label} must be between {self.low:g} and {self.high:g}.")
        return int(number) if float(self.step).is_integer() else number


@dataclass(frozen=True)
class TextSetting:
    """One short text the study owner sets for every case (e.g. the prompt a generator is given)."""

    key: str
    label: str
    default: str
    max_chars: int = 120

    def check(self, value) -> str:
        text = " ".join(str(value or "").split())
        if not text or len(text) > self.max_chars or not text.isprintable():
            raise BadInput(f"{self.label}: give 1 to {self.max_chars} printable characters.")
        return text


@dataclass(frozen=True)
class StudyKind:
    """What a tab declares so that its outputs can be read blinded."""

    key: str
    title: str  # says what the cases are, never which variants exist
    variants: tuple[Variant, ...]
    # (case pixels, design settings, progress) -> {variant key: pixels}; runs the device work
    compute: Callable[[np.ndarray, dict, Callable | None], dict]
    # (pixels, window name) -> uint8 image; every variant of a case is drawn with the same window
    display: Callable[[np.ndarray, str], np.ndarray]
    windows: tuple[str, ...]
    # (file, crop px or 0) -> the cases it holds, pixels only (no header, no name): one per frame of a series
    load_cases: Callable[[str, int], list]
    bundled_cases: Callable[[int, int], list]  # (count, crop) -> pixel arrays, deterministic
    default_settings: dict = field(default_factory=dict)
    settings_note: Callable[[dict], str] = lambda settings: ""
    # (case shape, settings) -> seconds to prepare one case on one free CPU thread (for the bound and the warning)
    estimate_seconds: Callable[[tuple, dict], float] = lambda shape, settings: 1.0
    criteria: tuple[str, ...] = IMAGE_QUALITY  # keys of CRITERIA the owner may ask
    # (label, crop px) choices of case size; 0 = the whole image
    crops: tuple[tuple[str, int], ...] = (("Whole image", 0),)
    files_label: str = "Your cases, one image per case"
    file_types: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
    number_setting: NumberSetting | None = None
    text_setting: TextSetting | None = None
    unit: str = "cases"  # what the bundled cases are called in the set-up line
    # (count, crop) -> the bundled cases' shapes without making them (for the estimate shown before
    # anything runs, where making them is slow); None: make them
    bundled_shapes: Callable[[int, int], list] | None = None

    def settings_from(self, number=None, text=None) -> dict:
        """The design's settings: the kind's defaults with the owner's checked values."""
        out = dict(self.default_settings)
        if self.number_setting is not None:
            out[self.number_setting.key] = self.number_setting.check(number)
        if self.text_setting is not None:
            out[self.text_setting.key] = self.text_setting.check(text)
        return out

    def variant(self, key: str) -> Variant:
        return next(v for v in self.variants if v.key == key)


@dataclass(frozen=True)
class StudyDesign:
    name: str
    kind: str
    variants: tuple[str, ...]
    criteria: tuple[str, ...]
    preference: bool
    source: dict  # {"type": "bundled", "count": n, "crop": px} or {"type": "upload", "crop": px}
    settings: dict  # the kind's compute settings (e.g. iterations)
    keep_images: bool = False  # the owner asked to keep the de-identified case pixels

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "StudyDesign":
        data = json.loads(text)
        data["variants"], data["criteria"] = tuple(data["variants"]), tuple(data["criteria"])
        return cls(**data)

    @property
    def scored(self) -> tuple[str, ...]:
        """Every stored criterion key, the preference last."""
        return self.criteria + ((PREFERENCE,) if self.preference else ())


def check_design(kind: StudyKind, name, criteria, preference) -> tuple[str, tuple[str, ...], bool]:
    name = str(name or "").strip()
    if not 1 <= len(name) <= 80:
        raise BadInput("Give the study a name (up to 80 characters).")
    criteria = tuple(c for c in kind.criteria if c in (criteria or ()))
    if not criteria and not preference:
        raise BadInput("Pick at least one question to rate, or ask for a preference.")
    if len(criteria) > MAX_CRITERIA:
        raise BadInput(f"Pick at most {MAX_CRITERIA} questions.")
    if not 2 <= len(kind.variants) <= MAX_VARIANTS:
        raise BadInput(f"A study compares 2 to {MAX_VARIANTS} variants.")
    return name, criteria, bool(preference)


def check_reader(reader_id) -> str:
    reader_id = str(reader_id or "").strip()
    if not READER_ID.fullmatch(reader_id):
        raise BadInput("Enter a reader code of 1-32 letters, digits, '-' or '_' (a code, not your name).")
    return reader_id


def case_hash(salt: str, pixels: np.ndarray) -> str:
    """The only name a case has: a salted hash of its pixels (no file name, no header)."""
    pixels = np.ascontiguousarray(pixels, np.float32)
    digest = hashlib.sha256(salt.encode() + str(pixels.shape).encode() + pixels.tobytes())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class ReaderPlan:
    """One reader's blinded schedule: positions are reading order."""

    order: tuple[str, ...]  # case hashes in this reader's order
    letters: tuple[tuple[str, ...], ...]  # per position: the variant key shown under A, B, ...

    def variant_for(self, position: int, letter: str) -> str:
        return self.letters[position][LETTERS.index(letter)]


def reader_plan(salt: str, reader_id: str, case_hashes, variant_keys) -> ReaderPlan:
    seed = int.from_bytes(hashlib.sha256(f"{salt}\x00{reader_id}".encode()).digest()[:8], "big")
    rng = np.random.default_rng(seed)
    cases = list(case_hashes)
    order = rng.permutation(len(cases))
    letters = [tuple(variant_keys[i] for i in rng.permutation(len(variant_keys))) for _ in cases]
    return ReaderPlan(tuple(cases[i] for i in order), tuple(letters[i] for i in order))


@dataclass(frozen=True)
class BlindedItem:
    """What a reader is shown for one case: letters and pictures, nothing that names a variant."""

    position: int  # 0-based place in this reader's order
    total: int
    done: int  # cases this reader has finished
    case: str  # the salted case hash
    letters: tuple[str, ...]
    images: tuple[np.ndarray, ...]  # in letter order, drawn with one window
    questions: tuple[Criterion, ...]
    preference: bool
