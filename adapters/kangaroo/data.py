"""Text that ships with Python: the standard library's own sources and docstrings.

The Kangaroo exit adapter is trained on it (and on the frozen model's own answers to prompts built
from it), so the repo needs no download. Files are split into train and held-out sets by a hash of
their relative path (stable across machines with the same Python version); the bench's prompts and
the held-out agreement come from held-out files.
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


# --- instruction prompts (for a chat model) ----------------------------------------------------

CODE_TEMPLATES = (
    "Write a Python function `{signature}` that does this: {doc}",
    "Complete this Python function:\n\n```python\ndef {signature}:\n    \"\"\"{doc}\"\"\"\n```",
    "Implement `{signature}` in Python. {doc}",
)
ENGLISH_TEMPLATES = (
    "Explain in plain English what this means: {doc}",
    "Summarise in two sentences: {doc}",
    "What is the purpose of a function described as follows? {doc}",
)


def _first_paragraph(doc: str, max_chars: int = 240) -> str | None:
    text = " ".join(doc.strip().split("\n\n")[0].split())
    if not 20 <= len(text) <= max_chars or not any(c.isalpha() for c in text[:1]):
        return None
    return text


def documented_functions(files: list[Path]) -> list[tuple[str, str]]:
    """(signature, first docstring paragraph) of every documented function in `files`."""
    import ast

    found = []
    for path in files:
        text = read_text(path)
        if not text:
            continue
        try:
            tree = ast.parse(text)
        except (SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_"):
                doc = ast.get_docstring(node)
                paragraph = _first_paragraph(doc) if doc else None
                if paragraph:
                    args = ", ".join(a.arg for a in node.args.args)
                    found.append((f"{node.name}({args})", paragraph))
    return found


def instruction_prompts(split: str, n: int, seed: int = 0) -> list[tuple[str, str]]:
    """`n` (kind, user message) pairs, half "code" and half "english", built from the documented
    functions of the `split` ("train" or "heldout") files: each asks for code from a docstring or
    for an explanation of one. Deterministic for a given seed and Python version."""
    train, heldout = split_files()
    functions = documented_functions(train if split == "train" else heldout)
    rng = random.Random(seed)
    rng.shuffle(functions)
    out: list[tuple[str, str]] = []
    for i, (signature, doc) in enumerate(functions[:n]):
        kind = "code" if i % 2 == 0 else "english"
        templates = CODE_TEMPLATES if kind == "code" else ENGLISH_TEMPLATES
        out.append((kind, rng.choice(templates).format(signature=signature, doc=doc)))
    return out
