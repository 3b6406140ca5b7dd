"""One shape for every paper's measured figures (``assets/<key>/figures.json``) and one renderer.

``bench/<key>.py --write`` is the only writer of that file; model cards are rendered from
``assets/<key>/MODEL_CARD.template.md`` plus the figures, and tabs show them through
`figures_markdown`. The shape::

    {
      "paper": "<key>",
      "provenance": {"command": "python -m bench.<key> --write", "measured": "<UTC ISO time>",
                     "git": "<commit>", "machine": "...", "torch_threads": 1, "seconds": 12.3},
      "tables": [{"id": "...", "title": "...", "columns": ["..."], "rows": [["..."]], "note": "..."}],
      "notes": ["plain sentences measured in the same run"],
      "data": {... free-form numbers a tab or test reads ...}
    }
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import re
import subprocess
from pathlib import Path
from typing import Any, Iterable, Sequence

REQUIRED_KEYS = ("paper", "provenance", "tables", "notes", "data")
PROVENANCE_KEYS = ("command", "measured", "git", "machine", "torch_threads", "seconds")


def table(id: str, title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]], note: str = "") -> dict:
    rows = [[_cell(v) for v in row] for row in rows]
    for row in rows:
        if len(row) != len(columns):
            raise ValueError(f"table {id}: a row has {len(row)} cells for {len(columns)} columns")
    return {"id": id, "title": title, "columns": list(columns), "rows": rows, "note": note}


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return float(f"{value:.6g}")
    return value if isinstance(value, (int, str)) or value is None else str(value)


def cpu_description() -> str:
    """The CPU's model name and widest matrix/vector unit (speed ratios on a CPU depend on both: the
    same bench gave different ratios on an AMX Xeon and an AVX2-only EPYC)."""
    try:
        info = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return platform.processor() or platform.machine()
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "")
    flags = next((set(line.split(":", 1)[1].split()) for line in info.splitlines() if line.startswith("flags")), set())
    unit = next((label for flag, label in (("amx_tile", "AMX"), ("avx512f", "AVX-512"), ("avx2", "AVX2")) if flag in flags), "")
    return ", ".join(part for part in (name or platform.machine(), unit) if part)


def provenance(command: str, seconds: float, machine: str | None = None) -> dict:
    import torch

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).resolve().parent, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {
        "command": command,
        "measured": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "git": commit or "unknown",
        "machine": machine or f"{cpu_description()}, {os.cpu_count()} cores",
        "torch_threads": torch.get_num_threads(),
        "seconds": round(float(seconds), 1),
    }


def figures(paper: str, provenance: dict, tables: Sequence[dict] = (), notes: Sequence[str] = (),
            data: dict | None = None) -> dict:
    out = {"paper": paper, "provenance": provenance, "tables": list(tables), "notes": list(notes), "data": data or {}}
    validate(out)
    return out


def validate(figs: dict) -> None:
    """Raise ValueError when ``figs`` is not in the shared shape."""
    missing = [k for k in REQUIRED_KEYS if k not in figs]
    if missing:
        raise ValueError(f"figures lack {missing}")
    lacking = [k for k in PROVENANCE_KEYS if k not in figs["provenance"]]
    if lacking:
        raise ValueError(f"figures provenance lacks {lacking}")
    ids = [t.get("id") for t in figs["tables"]]
    if len(ids) != len(set(ids)):
        raise ValueError("figures: table ids repeat")
    for t in figs["tables"]:
        for k in ("id", "title", "columns", "rows"):
            if k not in t:
                raise ValueError(f"figures table lacks {k}")
        if any(len(r) != len(t["columns"]) for r in t["rows"]):
            raise ValueError(f"figures table {t['id']}: ragged rows")
    if not all(isinstance(n, str) for n in figs["notes"]):
        raise ValueError("figures notes must be strings")


def load(directory: str | os.PathLike) -> dict | None:
    path = Path(directory) / "figures.json"
    if not path.is_file():
        return None
    figs = json.loads(path.read_text())
    validate(figs)
    return figs


def write(directory: str | os.PathLike, figs: dict) -> Path:
    """Write ``figures.json`` and re-render ``MODEL_CARD.md`` from its template when there is one."""
    validate(figs)
    directory = Path(directory)
    path = directory / "figures.json"
    path.write_text(json.dumps(figs, indent=2) + "\n")
    template = directory / "MODEL_CARD.template.md"
    if template.is_file():
        (directory / "MODEL_CARD.md").write_text(render_card(template.read_text(), figs))
    return path


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return "" if value is None else str(value).replace("|", "/").replace("\n", " ")


def table_markdown(t: dict) -> str:
    lines = [f"**{t['title']}**", "", "| " + " | ".join(t["columns"]) + " |", "|" + "---|" * len(t["columns"])]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in t["rows"]]
    if t.get("note"):
        lines += ["", t["note"]]
    return "\n".join(lines)


def provenance_markdown(figs: dict) -> str:
    p = figs["provenance"]
    return (f"Measured {p['measured']} by `{p['command']}` (commit {p['git']}, {p['machine']}, "
            f"{p['torch_threads']} torch thread{'s' if p['torch_threads'] != 1 else ''}, {p['seconds']:g} s).")


def figures_markdown(figs: dict | None, only: Sequence[str] | None = None) -> str:
    """Every table (or the ones named in ``only``), the notes and where the numbers come from."""
    if not figs:
        return "No measured figures yet: run the paper's bench with `--write`."
    tables = [t for t in figs["tables"] if only is None or t["id"] in only]
    parts = [table_markdown(t) for t in tables]
    if figs["notes"] and only is None:
        parts.append("\n".join(f"- {n}" for n in figs["notes"]))
    parts.append(provenance_markdown(figs))
    return "\n\n".join(parts)


_PLACEHOLDER = re.compile(r"\{\{\s*(tables|notes|provenance|table:[\w.-]+|data:[\w.-]+)\s*\}\}")


def render_card(template: str, figs: dict) -> str:
    """Fill ``{{tables}}``, ``{{table:<id>}}``, ``{{notes}}``, ``{{provenance}}`` and
    ``{{data:<dotted.key>}}`` in a model-card template; an unknown placeholder is an error."""
    by_id = {t["id"]: t for t in figs["tables"]}

    def fill(match: re.Match) -> str:
        name = match.group(1)
        if name == "tables":
            return "\n\n".join(table_markdown(t) for t in figs["tables"])
        if name == "notes":
            return "\n".join(f"- {n}" for n in figs["notes"])
        if name == "provenance":
            return provenance_markdown(figs)
        kind, _, ref = name.partition(":")
        if kind == "table":
            if ref not in by_id:
                raise KeyError(f"model card template names table '{ref}', which the figures lack")
            return table_markdown(by_id[ref])
        value: Any = figs["data"]
        for part in ref.split("."):
            value = value[part]
        return _fmt(value)

    return _PLACEHOLDER.sub(fill, template)
