"""Ground-truth token types of Python source, from Python's own `tokenize` and `ast`.

Every token of the source that carries text (not NEWLINE/INDENT/DEDENT/ENDMARKER) gets one type:
the lexical class from `tokenize` (keyword, string, number, operator, delimiter, comment) and, for
names, a kind read from the syntax tree: the name a `def` or `class` binds, a parameter (the `arg`
itself, a keyword-argument name in a call, or any use of a parameter of an enclosing function), an
attribute (after a dot), an imported name (anywhere in an import statement, or a use of a name the
file imports), a builtin (a use of a builtin the file does not rebind), a function or class the file
defines (when used), and otherwise a variable. Pure standard library; no torch.
"""
from __future__ import annotations

import ast
import builtins
import io
import keyword
import tokenize
from dataclasses import dataclass

TYPES = ("keyword", "builtin", "function", "class", "parameter", "variable", "attribute", "imported",
         "string", "number", "operator", "delimiter", "comment")
TYPE_INDEX = {name: i for i, name in enumerate(TYPES)}
DELIMITERS = frozenset("()[]{},:;.") | {"->", "@"}
BUILTIN_NAMES = frozenset(dir(builtins))
SKIPPED = frozenset({tokenize.NEWLINE, tokenize.NL, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER,
                     tokenize.ENCODING})


@dataclass(frozen=True)
class Token:
    start: int  # character offsets into the source text
    end: int
    text: str
    kind: str  # one of TYPES


class _NameKinds(ast.NodeVisitor):
    """(line, utf-8 column) of every name-like node -> its kind."""

    def __init__(self, tree: ast.AST):
        self.kinds: dict[tuple[int, int], str] = {}
        self.imported: set[str] = set()
        self.functions: set[str] = set()
        self.classes: set[str] = set()
        self.assigned: set[str] = set()
        self.import_spans: list[tuple[int, int, int, int]] = []
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                self.import_spans.append((node.lineno, node.col_offset, node.end_lineno, node.end_col_offset))
                for alias in node.names:
                    self.imported.add((alias.asname or alias.name).split(".")[0])
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                self.functions.add(node.name)
            elif isinstance(node, ast.ClassDef):
                self.classes.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                self.assigned.add(node.id)
        self.scopes: list[set[str]] = []
        self.visit(tree)

    def _function(self, node) -> None:
        for decorator in getattr(node, "decorator_list", []):
            self.visit(decorator)
        args = node.args
        for default in args.defaults + [d for d in args.kw_defaults if d is not None]:
            self.visit(default)
        every = args.posonlyargs + args.args + args.kwonlyargs + [a for a in (args.vararg, args.kwarg) if a]
        for arg in every:
            self.kinds[(arg.lineno, arg.col_offset)] = "parameter"
            if arg.annotation is not None:
                self.visit(arg.annotation)
        if getattr(node, "returns", None) is not None:
            self.visit(node.returns)
        self.scopes.append({a.arg for a in every})
        body = node.body if isinstance(node.body, list) else [node.body]
        for statement in body:
            self.visit(statement)
        self.scopes.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_keyword(self, node: ast.keyword) -> None:
        if node.arg is not None:
            self.kinds[(node.lineno, node.col_offset)] = "parameter"
        self.visit(node.value)

    def visit_Name(self, node: ast.Name) -> None:
        name = node.id
        if any(name in scope for scope in self.scopes):
            kind = "parameter"
        elif name in self.imported:
            kind = "imported"
        elif name in self.functions:
            kind = "function"
        elif name in self.classes:
            kind = "class"
        elif name in BUILTIN_NAMES and name not in self.assigned:
            kind = "builtin"
        else:
            kind = "variable"
        self.kinds[(node.lineno, node.col_offset)] = kind


def _utf8_to_char(line: str, col: int) -> int:
    return len(line.encode("utf-8")[:col].decode("utf-8", errors="ignore")) if not line.isascii() else col


def python_tokens(source: str) -> list[Token]:
    """The typed tokens of ``source`` (raises SyntaxError/tokenize.TokenError/ValueError on code
    Python itself cannot parse)."""
    tree = ast.parse(source)
    names = _NameKinds(tree)
    lines = source.splitlines(keepends=True)
    line_start = [0]
    for line in lines:
        line_start.append(line_start[-1] + len(line))
    name_kinds = {(row, _utf8_to_char(lines[row - 1], col)): kind for (row, col), kind in names.kinds.items()
                  if row - 1 < len(lines)}
    import_spans = [((a, _utf8_to_char(lines[a - 1], b)), (c, _utf8_to_char(lines[c - 1], d)))
                    for a, b, c, d in names.import_spans]

    out: list[Token] = []
    previous = ""
    pending = None  # "function" / "class" right after `def` / `class`
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type in SKIPPED:
            continue
        start = line_start[tok.start[0] - 1] + tok.start[1]
        end = line_start[tok.end[0] - 1] + tok.end[1]
        text = tok.string
        if tok.type == tokenize.COMMENT:
            kind = "comment"
        elif tok.type == tokenize.STRING or tok.type in _FSTRING_TYPES:
            kind = "string"
        elif tok.type == tokenize.NUMBER:
            kind = "number"
        elif tok.type == tokenize.OP:
            kind = "delimiter" if text in DELIMITERS else "operator"
        elif tok.type == tokenize.NAME:
            if keyword.iskeyword(text) or (keyword.issoftkeyword(text) and tok.start not in name_kinds):
                kind = "keyword"
            elif pending:
                kind = pending
            elif previous == ".":
                kind = "attribute"
            elif any(a <= tok.start < b for a, b in import_spans):
                kind = "imported"
            else:
                kind = name_kinds.get(tok.start, "variable")
        else:  # ERRORTOKEN and the like: stray characters
            kind = "operator"
        pending = {"def": "function", "class": "class"}.get(text) if tok.type == tokenize.NAME else None
        out.append(Token(start, end, text, kind))
        previous = text
    return out


_FSTRING_TYPES = frozenset(getattr(tokenize, n) for n in ("FSTRING_START", "FSTRING_MIDDLE", "FSTRING_END")
                           if hasattr(tokenize, n))


def safe_python_tokens(source: str) -> list[Token] | None:
    try:
        return python_tokens(source)
    except (SyntaxError, ValueError, tokenize.TokenError, IndentationError, RecursionError):
        return None
