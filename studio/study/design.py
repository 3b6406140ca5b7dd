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


CRITERIA = {
    "noise": Criterion("noise", "Noise", "1 = severe noise", "5 = no visible noise"),
    "sharpness": Criterion("sharpness", "Sharpness of edges and detail", "1 = very blurred", "5 = sharp"),
    "acceptability": Criterion("acceptability", "Diagnostic acceptability", "1 = unacceptable", "5 = fully acceptable"),
}


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
    criteria = tuple(c for c in CRITERIA if c in (criteria or ()))
    if not criteria and not preference:
        raise BadInput("Pick at least one question to rate, or ask for a preference.")
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
