"""Python's own standard-library sources as offline data, split into train and held-out files by a
stable hash of each file's path relative to the library root (same split on any machine with the
same Python version). Third-party packages, test suites and generated tables are left out: they are
not "the standard library's code" and would skew whatever is trained on it."""
from __future__ import annotations

import hashlib
import os
import sysconfig
from pathlib import Path

EXCLUDED_PARTS = frozenset({"site-packages", "dist-packages", "test", "tests", "idle_test", "encodings",
                            "pydoc_data", "__pycache__"})


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_files(excluded: frozenset[str] = EXCLUDED_PARTS) -> list[Path]:
    """Every ``*.py`` under the library root outside ``excluded`` folders, in a fixed order."""
    root = stdlib_root()
    files = [p for p in root.rglob("*.py") if not excluded.intersection(p.relative_to(root).parts[:-1])]
    return sorted(files, key=lambda p: str(p.relative_to(root)))


def relative_name(path: Path) -> str:
    return str(Path(path).relative_to(stdlib_root())).replace(os.sep, "/")


def is_heldout(path: Path, percent: int, salt: str = "") -> bool:
    """True for about ``percent``% of files, decided by a hash of the relative path (and ``salt``,
    so two uses can draw independent splits)."""
    digest = hashlib.sha1((salt + relative_name(path)).encode()).hexdigest()
    return int(digest, 16) % 100 < percent


def split_files(percent: int, salt: str = "") -> tuple[list[Path], list[Path]]:
    train, heldout = [], []
    for path in stdlib_files():
        (heldout if is_heldout(path, percent, salt) else train).append(path)
    return train, heldout


def read_source(path: Path) -> str | None:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return None
