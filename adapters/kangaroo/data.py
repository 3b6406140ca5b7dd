"""Text that ships with Python: the standard library's own sources and docstrings.

The bundled Kangaroo model is trained on it, so the repo needs no download. Files are split into
train and held-out sets by a hash of their relative path (stable across machines with the same
Python version); prompts for evaluation, the bench and the tab's examples come from held-out files.
"""
from __future__ import annotations

import hashlib
import os
import random
import sysconfig
from pathlib import Path

# Third-party packages, the test suite, codec tables and generated doc data are not "the standard
# library's sources" and would skew the model towards tables of numbers.
EXCLUDED_PARTS = {"site-packages", "dist-packages", "test", "tests", "idle_test", "encodings", "pydoc_data", "__pycache__"}
HELDOUT_PERCENT = 5


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_files() -> list[Path]:
    root = stdlib_root()
    files = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root)
        if EXCLUDED_PARTS.intersection(rel.parts[:-1]):
            continue
        files.append(path)
    return sorted(files, key=lambda p: str(p.relative_to(root)))


def is_heldout(path: Path) -> bool:
    rel = str(path.relative_to(stdlib_root())).replace(os.sep, "/")
    return int(hashlib.sha1(rel.encode()).hexdigest(), 16) % 100 < HELDOUT_PERCENT


def read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return None


def split_files() -> tuple[list[Path], list[Path]]:
    train, heldout = [], []
    for path in stdlib_files():
        (heldout if is_heldout(path) else train).append(path)
    return train, heldout


def heldout_prompts(n: int, seed: int = 0, min_chars: int = 60, max_chars: int = 240) -> list[str]:
    """`n` prompts cut from held-out files at line starts of `def`/`class` statements and
    docstrings, so each asks the model to continue ordinary library code."""
    rng = random.Random(seed)
    _, heldout = split_files()
    candidates: list[str] = []
    for path in heldout:
        text = read_text(path)
        if not text:
            continue
        lines = text.splitlines(keepends=True)
        for i, line in enumerate(lines):
            stripped = line.lstrip()
            if stripped.startswith(("def ", "class ", '"""')) and i + 1 < len(lines):
                prompt = "".join(lines[max(0, i - 2): i + 2])
                if min_chars <= len(prompt) <= max_chars:
                    candidates.append(prompt)
    rng.shuffle(candidates)
    return candidates[:n]
