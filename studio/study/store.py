"""Where studies and ratings live: an embedded SQLite file by default, or any database SQLAlchemy
can reach (``STUDIO_STUDY_DB``: a file path, ``sqlite:///...``, or e.g. ``postgresql://...``).

What is stored: the study design, a random salt, each case's salted pixel hash, the reader codes and
their ratings (per case, variant, criterion, with the letter it was shown under). Never a file
name, a DICOM header or any patient attribute; case pixels only when the study owner asked to keep
them (de-identified: the pixel array alone). Every column is TEXT or INTEGER so the same SQL runs on
SQLite and on a server database.
"""
from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import hmac
import io
import secrets
import sqlite3
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from adapters.common.errors import BadInput
from studio import settings
from studio.study.design import StudyDesign

DEFAULT_DB = Path(__file__).resolve().parents[2] / "data" / "studies.sqlite"

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS studies (study_id TEXT PRIMARY KEY, name TEXT NOT NULL, salt TEXT NOT NULL, "
    "owner_key_hash TEXT NOT NULL, design TEXT NOT NULL, created TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS cases (study_id TEXT NOT NULL, position INTEGER NOT NULL, case_hash TEXT NOT NULL, "
    "PRIMARY KEY (study_id, position))",
    "CREATE TABLE IF NOT EXISTS case_pixels (study_id TEXT NOT NULL, case_hash TEXT NOT NULL, pixels TEXT NOT NULL, "
    "PRIMARY KEY (study_id, case_hash))",
    "CREATE TABLE IF NOT EXISTS ratings (study_id TEXT NOT NULL, reader_id TEXT NOT NULL, case_hash TEXT NOT NULL, "
    "variant TEXT NOT NULL, letter TEXT NOT NULL, criterion TEXT NOT NULL, score INTEGER NOT NULL, "
    "rated_at TEXT NOT NULL, PRIMARY KEY (study_id, reader_id, case_hash, variant, criterion))",
)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class _SqliteBackend:
    """The standard library's sqlite3, one connection per unit of work (Gradio handlers run in threads)."""

    def __init__(self, path: str):
        self.path = path
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def transaction(self):
        conn = sqlite3.connect(self.path, timeout=30)
        try:
            with conn:
                yield lambda sql, params=None: conn.execute(sql, params or {}).fetchall()
        finally:
            conn.close()


class _SqlAlchemyBackend:
    def __init__(self, url: str):
        try:
            import sqlalchemy
        except ImportError:
            raise BadInput("STUDIO_STUDY_DB names a database URL, which needs the sqlalchemy package "
                           "(pip install sqlalchemy) and that database's driver.") from None
        self._text = sqlalchemy.text
        self.engine = sqlalchemy.create_engine(url)

    @contextmanager
    def transaction(self):
        with self.engine.begin() as conn:
            def run(sql, params=None):
                result = conn.execute(self._text(sql), params or {})
                return [tuple(row) for row in result] if result.returns_rows else []

            yield run


def _backend(location: str | None):
    location = location or settings.study_db() or str(DEFAULT_DB)
    if location.startswith("sqlite:///") and "?" not in location and "+" not in location.split(":", 1)[0]:
        return _SqliteBackend(location[len("sqlite:///"):] or ":memory:")
    if "://" in location:
        return _SqlAlchemyBackend(location)
    return _SqliteBackend(location)


def _key_hash(key: str) -> str:
    return hashlib.sha256(("adapter-studio-study-owner\x00" + key).encode()).hexdigest()


def _pack(pixels: np.ndarray) -> str:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(pixels, np.float32), allow_pickle=False)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _unpack(text: str) -> np.ndarray:
    return np.load(io.BytesIO(base64.b64decode(text)), allow_pickle=False)


class StudyStore:
    def __init__(self, location: str | None = None):
        self.backend = _backend(location)
        with self.backend.transaction() as run:
            for statement in SCHEMA:
                run(statement)

    # --- studies ---------------------------------------------------------------------------
    @staticmethod
    def new_salt() -> str:
        return secrets.token_hex(16)

    def create(self, salt: str, design: StudyDesign, case_hashes, pixels=None) -> tuple[str, str]:
        """A new study with its cases in the given order; returns (study code, owner key). Readers
        need the code; results (the unblinding) need the owner key, of which only a hash is kept.
        ``pixels`` are stored only when the design says the owner asked to keep them."""
        if len(set(case_hashes)) != len(case_hashes):
            raise BadInput("Two cases of the study are identical; each case must be a different image.")
        study_id, owner_key = secrets.token_hex(5), secrets.token_urlsafe(12)
        with self.backend.transaction() as run:
            run("INSERT INTO studies (study_id, name, salt, owner_key_hash, design, created) "
                "VALUES (:s, :n, :salt, :o, :d, :t)",
                dict(s=study_id, n=design.name, salt=salt, o=_key_hash(owner_key), d=design.to_json(), t=_now()))
            for position, h in enumerate(case_hashes):
                run("INSERT INTO cases (study_id, position, case_hash) VALUES (:s, :p, :h)", dict(s=study_id, p=position, h=h))
            if design.keep_images and pixels is not None:
                for h, array in zip(case_hashes, pixels):
                    run("INSERT INTO case_pixels (study_id, case_hash, pixels) VALUES (:s, :h, :x)",
                        dict(s=study_id, h=h, x=_pack(array)))
        return study_id, owner_key

    def check_owner(self, study_id: str, owner_key: str) -> None:
        with self.backend.transaction() as run:
            rows = run("SELECT owner_key_hash FROM studies WHERE study_id = :s", dict(s=study_id))
        if not rows or not hmac.compare_digest(rows[0][0], _key_hash(str(owner_key or "").strip())):
            raise BadInput("The study code and owner key do not match: results are shown to the study owner only.")

    def name(self, study_id: str) -> str:
        with self.backend.transaction() as run:
            rows = run("SELECT name FROM studies WHERE study_id = :s", dict(s=study_id))
        if not rows:
            raise BadInput("No study has that code (the study owner gets it when creating the study).")
        return rows[0][0]

    def study(self, study_id: str) -> tuple[StudyDesign, str, tuple[str, ...]]:
        """(design, salt, case hashes in study order)."""
        with self.backend.transaction() as run:
            rows = run("SELECT design, salt FROM studies WHERE study_id = :s", dict(s=study_id))
            if not rows:
                raise BadInput("No study has that code (the study owner gets it when creating the study).")
            cases = run("SELECT case_hash FROM cases WHERE study_id = :s ORDER BY position", dict(s=study_id))
        return StudyDesign.from_json(rows[0][0]), rows[0][1], tuple(r[0] for r in cases)

    def kept_pixels(self, study_id: str, case: str) -> np.ndarray | None:
        with self.backend.transaction() as run:
            rows = run("SELECT pixels FROM case_pixels WHERE study_id = :s AND case_hash = :h", dict(s=study_id, h=case))
        return _unpack(rows[0][0]) if rows else None

    # --- ratings ---------------------------------------------------------------------------
    def save(self, study_id: str, reader_id: str, case: str, scores: dict[tuple[str, str], tuple[str, int]]) -> None:
        """Replace one reader's ratings of one case: {(variant, criterion): (letter, score)}."""
        with self.backend.transaction() as run:
            run("DELETE FROM ratings WHERE study_id = :s AND reader_id = :r AND case_hash = :h",
                dict(s=study_id, r=reader_id, h=case))
            at = _now()
            for (variant, criterion), (letter, score) in sorted(scores.items()):
                run("INSERT INTO ratings (study_id, reader_id, case_hash, variant, letter, criterion, score, rated_at) "
                    "VALUES (:s, :r, :h, :v, :l, :c, :x, :t)",
                    dict(s=study_id, r=reader_id, h=case, v=variant, l=letter, c=criterion, x=int(score), t=at))

    def done_cases(self, study_id: str, reader_id: str) -> set[str]:
        with self.backend.transaction() as run:
            rows = run("SELECT DISTINCT case_hash FROM ratings WHERE study_id = :s AND reader_id = :r",
                       dict(s=study_id, r=reader_id))
        return {r[0] for r in rows}

    def ratings(self, study_id: str) -> list[dict]:
        """Every rating of the study, one dict per (reader, case, variant, criterion)."""
        with self.backend.transaction() as run:
            rows = run("SELECT reader_id, case_hash, variant, letter, criterion, score, rated_at FROM ratings "
                       "WHERE study_id = :s ORDER BY reader_id, rated_at, case_hash, variant, criterion",
                       dict(s=study_id))
        keys = ("reader_id", "case", "variant", "letter", "criterion", "score", "rated_at")
        return [dict(zip(keys, r)) for r in rows]

    def describe(self) -> str:
        """Where the ratings go, without a server path: for the tab's status line."""
        if isinstance(self.backend, _SqliteBackend):
            return "an embedded SQLite database on this server"
        return f"the {self.backend.engine.dialect.name} database set in STUDIO_STUDY_DB"
