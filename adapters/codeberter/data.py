"""Training and evaluation data from the running interpreter's standard library, and subword
alignment.

- Token types: files are split by a hash of their path (`HELDOUT_PERCENT` held out); each file is cut
  into windows of whole lines, typed with `labels.python_tokens` on the whole file (so a window
  knows a name's kind from code outside it). Labels sit on the **first subword** of each Python
  token; other subwords are ignored (-100), and a subword that would start two Python tokens belongs
  to the first one (the second is not scored; `Encoded.owned` says which were).
- Bugs: short functions of train (or held-out) files with one synthetic bug injected: a variable
  misuse (one use of a variable or parameter replaced by another name the function uses; the repair
  is a pointer to any other occurrence of the right name) or an operator swap (``==``/``!=``,
  ``<``/``<=``, ``+``/``-``, ``and``/``or`` …; the repair is the right operator). Exact ground truth:
  the bug's token and its fix.
"""
from __future__ import annotations

import ast
import random
import textwrap
from dataclasses import dataclass

from adapters.codeberter.labels import TYPE_INDEX, Token, safe_python_tokens
from adapters.common import stdlib

HELDOUT_PERCENT = 10
SPLIT_SALT = "codeberter"
IGNORE = -100

# Operators a swap may produce and repair into; one class each in the repair head.
OPERATORS = ("==", "!=", "<", "<=", ">", ">=", "+", "-", "*", "/", "//", "%", "and", "or")
OPERATOR_INDEX = {op: i for i, op in enumerate(OPERATORS)}
SWAPS = {"==": ("!=",), "!=": ("==",), "<": ("<=", ">"), "<=": ("<", ">="), ">": (">=", "<"), ">=": (">", "<="),
         "+": ("-",), "-": ("+",), "*": ("/", "+"), "/": ("*", "//"), "//": ("/", "%"), "%": ("//",),
         "and": ("or",), "or": ("and",)}
NAME_KINDS = ("variable", "parameter")


def split_files():
    return stdlib.split_files(HELDOUT_PERCENT, SPLIT_SALT)


@dataclass(frozen=True)
class Encoded:
    """One sequence for the frozen model: ids and, per subword, the type label (or IGNORE)."""

    ids: tuple[int, ...]
    labels: tuple[int, ...]
    offsets: tuple[tuple[int, int], ...]  # character span of each subword in the text
    owned: tuple[int, ...]  # per Python token: index of its first subword, or -1 (not scored)


def subword_offsets(tokenizer, text: str, max_len: int) -> tuple[list[int], list[tuple[int, int]]]:
    """Ids and character offsets of ``text`` for ``tokenizer``, special tokens included (they get
    offset (0, 0) and are never labelled), truncated to ``max_len``."""
    enc = tokenizer(text, return_offsets_mapping=True, truncation=True, max_length=max_len)
    offsets = [tuple(o) for o in enc["offset_mapping"]]
    special = set(tokenizer.all_special_ids)
    offsets = [(0, 0) if i in special else o for i, o in zip(enc["input_ids"], offsets)]
    return list(enc["input_ids"]), offsets


def first_subwords(tokens: list[Token], offsets: list[tuple[int, int]]) -> list[int]:
    """Per Python token, the index of its first subword (the first whose span overlaps it), or -1
    when there is none or that subword already starts an earlier token."""
    out, taken, j = [], set(), 0
    for tok in tokens:
        while j < len(offsets) and (offsets[j][1] <= tok.start or offsets[j] == (0, 0)):
            j += 1
        k = j
        while k < len(offsets) and offsets[k] == (0, 0):
            k += 1
        if k < len(offsets) and offsets[k][0] < tok.end and k not in taken:
            out.append(k)
            taken.add(k)
        else:
            out.append(-1)
    return out


def encode(tokenizer, text: str, tokens: list[Token], max_len: int) -> Encoded:
    ids, offsets = subword_offsets(tokenizer, text, max_len)
    owned = first_subwords(tokens, offsets)
    labels = [IGNORE] * len(ids)
    for tok, k in zip(tokens, owned):
        if k >= 0:
            labels[k] = TYPE_INDEX[tok.kind]
    return Encoded(tuple(ids), tuple(labels), tuple(offsets), tuple(owned))


def windows(source: str, tokens: list[Token], max_chars: int) -> list[tuple[str, list[Token]]]:
    """Consecutive whole lines of ``source`` up to ``max_chars`` each, with their tokens shifted to
    window offsets (a token crossing a window's end, e.g. a long docstring, is left out)."""
    out, start = [], 0
    lines = source.splitlines(keepends=True)
    i = 0
    while i < len(lines):
        chunk = ""
        while i < len(lines) and (not chunk or len(chunk) + len(lines[i]) <= max_chars):
            chunk += lines[i]
            i += 1
        end = start + len(chunk)
        inside = [Token(t.start - start, t.end - start, t.text, t.kind) for t in tokens if start <= t.start and t.end <= end]
        if inside and chunk.strip():
            out.append((chunk[:max_chars * 2], inside))
        start = end
    return out


def type_examples(tokenizer, files, max_len: int, max_chars: int, limit: int | None = None,
                  seed: int = 0) -> list[Encoded]:
    """Encoded windows of ``files`` (shuffled with ``seed``, at most ``limit``)."""
    out = []
    for path in files:
        source = stdlib.read_source(path)
        tokens = safe_python_tokens(source) if source else None
        if not tokens:
            continue
        for text, inside in windows(source, tokens, max_chars):
            out.append(encode(tokenizer, text, inside, max_len))
    random.Random(seed).shuffle(out)
    return out[:limit] if limit else out


# --- synthetic bugs --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Bug:
    """A function with one injected bug: where (character span in ``code``), what was there and
    what kind of bug it is."""

    code: str  # the buggy function
    start: int
    end: int
    wrong: str  # the token now at the bug
    right: str  # the token that belongs there
    kind: str  # "variable misuse" or "operator swap"
    original: str  # the function before the bug


def functions(files, max_chars: int) -> list[str]:
    """Source of each function of ``files`` (dedented) with at most ``max_chars`` characters."""
    out = []
    for path in files:
        source = stdlib.read_source(path)
        try:
            tree = ast.parse(source) if source else None
        except (SyntaxError, ValueError):
            continue
        if tree is None:
            continue
        lines = source.splitlines(keepends=True)
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.decorator_list:
                text = textwrap.dedent("".join(lines[node.lineno - 1: node.end_lineno]))
                if 40 <= len(text) <= max_chars:
                    out.append(text)
    return out


def inject(code: str, rng: random.Random, kind: str | None = None) -> Bug | None:
    """One random bug of ``kind`` (either kind when None) in ``code``, or None if it has no place
    for one."""
    tokens = safe_python_tokens(code)
    if not tokens:
        return None
    kinds = [kind] if kind else rng.sample(["variable misuse", "operator swap"], 2)
    for chosen in kinds:
        bug = _misuse(code, tokens, rng) if chosen == "variable misuse" else _swap(code, tokens, rng)
        if bug:
            return bug
    return None


def _misuse(code: str, tokens: list[Token], rng: random.Random) -> Bug | None:
    names = [t for t in tokens if t.kind in NAME_KINDS]
    counts: dict[str, int] = {}
    for t in names:
        counts[t.text] = counts.get(t.text, 0) + 1
    distinct = sorted(counts)
    if len(distinct) < 2:
        return None
    # A misuse is a read of the wrong name: not the def's own parameters, not an assignment target.
    # The right name must still appear elsewhere, so the repair can point at it.
    header_end = _header_end(tokens)
    following = {t.start: tokens[i + 1].text if i + 1 < len(tokens) else "" for i, t in enumerate(tokens)}
    sites = [t for t in names if counts[t.text] >= 2 and t.start > header_end and not _assigns(following[t.start])]
    if not sites:
        return None
    site = rng.choice(sites)
    wrong = rng.choice([n for n in distinct if n != site.text])
    return Bug(code[:site.start] + wrong + code[site.end:], site.start, site.start + len(wrong), wrong, site.text,
               "variable misuse", code)


def _header_end(tokens: list[Token]) -> int:
    """Where the first ``def`` header ends (its colon outside brackets); -1 without one."""
    depth, seen_def = 0, False
    for t in tokens:
        seen_def = seen_def or t.text == "def"
        if t.text in "([{" and t.kind == "delimiter":
            depth += 1
        elif t.text in ")]}" and t.kind == "delimiter":
            depth -= 1
        elif seen_def and depth == 0 and t.text == ":":
            return t.start
    return -1


def _assigns(text: str) -> bool:
    return text == "=" or (text.endswith("=") and text not in ("==", "!=", "<=", ">="))


def _swap(code: str, tokens: list[Token], rng: random.Random) -> Bug | None:
    sites = [t for t in tokens if t.text in SWAPS and t.kind in ("operator", "keyword")]
    # A unary minus or a `*args` star is not a binary operator: keep those whose left neighbour ends a value.
    previous = {t.start: tokens[i - 1] for i, t in enumerate(tokens) if i}
    sites = [t for t in sites if t.start in previous and (previous[t.start].kind not in ("operator", "delimiter", "keyword")
                                                          or previous[t.start].text in (")", "]", "}"))]
    if not sites:
        return None
    site = rng.choice(sites)
    wrong = rng.choice(SWAPS[site.text])
    return Bug(code[:site.start] + wrong + code[site.end:], site.start, site.start + len(wrong), wrong, site.text,
               "operator swap", code)


@dataclass(frozen=True)
class BugExample:
    """A bug encoded for the frozen model: the bug's subword, and the repair targets (subwords
    holding the right name, or the right operator's class)."""

    ids: tuple[int, ...]
    offsets: tuple[tuple[int, int], ...]
    location: int
    pointer_targets: tuple[int, ...]  # subwords that start the right name (variable misuse)
    operator: int  # class of the right operator, or -1


def encode_bug(tokenizer, bug: Bug, max_len: int) -> BugExample | None:
    ids, offsets = subword_offsets(tokenizer, bug.code, max_len)
    tokens = safe_python_tokens(bug.code)
    if not tokens:
        return None
    owned = first_subwords(tokens, offsets)
    location, targets = -1, []
    for tok, k in zip(tokens, owned):
        if tok.start == bug.start:
            location = k
        elif bug.kind == "variable misuse" and tok.text == bug.right and k >= 0:
            targets.append(k)
    if location < 0 or (bug.kind == "variable misuse" and not targets):
        return None
    operator = OPERATOR_INDEX[bug.right] if bug.kind == "operator swap" else -1
    return BugExample(tuple(ids), tuple(offsets), location, tuple(targets), operator)


def bug_examples(tokenizer, files, n: int, max_len: int, max_chars: int, seed: int) -> list[tuple[Bug, BugExample]]:
    """``n`` (bug, encoded) pairs from the functions of ``files``, one bug per function drawn with
    ``seed`` (functions shuffled first)."""
    rng = random.Random(seed)
    pool = functions(files, max_chars)
    rng.shuffle(pool)
    out = []
    for code in pool:
        bug = inject(code, rng)
        encoded = encode_bug(tokenizer, bug, max_len) if bug else None
        if encoded:
            out.append((bug, encoded))
            if len(out) >= n:
                break
    return out
