"""The layering: nothing under adapters/ imports gradio or studio, no paper imports another paper,
shared packages import no paper, and every STUDIO_* variable is read in studio/settings.py."""
from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ADAPTERS = REPO / "adapters"


def paper_packages() -> set[str]:
    return {p.parent.name for p in ADAPTERS.glob("*/__init__.py") if "SPEC" in p.read_text()}


def imported_modules(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            names += [f"{node.module}.{a.name}" for a in node.names]
    return names


def test_adapters_import_neither_gradio_nor_studio_nor_another_paper():
    papers = paper_packages()
    assert {"filter2noise", "fgsa", "i2v", "kangaroo"} <= papers
    problems = []
    for path in ADAPTERS.rglob("*.py"):
        rel = path.relative_to(ADAPTERS)
        owner = rel.parts[0] if len(rel.parts) > 1 else None
        for name in imported_modules(path):
            top = name.split(".")[0]
            if top in {"gradio", "studio", "tabs", "app"}:
                problems.append(f"{rel}: imports {name}")
            if top == "adapters" and len(name.split(".")) > 1:
                other = name.split(".")[1]
                if other in papers and other != owner:
                    problems.append(f"{rel}: imports paper {other}")
    assert not problems, "\n".join(problems)


def test_there_are_no_flat_paper_modules_left():
    assert sorted(p.name for p in ADAPTERS.glob("*.py")) == ["__init__.py"]


def test_every_paper_package_has_the_fixed_roles():
    for key in paper_packages():
        present = {p.stem for p in (ADAPTERS / key).glob("*.py")}
        missing = {"__init__", "config", "modeling", "loading", "inference", "testing"} - present
        assert not missing, f"{key} lacks {sorted(missing)}"
        assert (REPO / "tabs" / f"{key}.py").is_file() and (REPO / "bench" / f"{key}.py").is_file()
        assert (REPO / "training" / key).is_dir() and (REPO / "tests" / "papers" / key).is_dir()


ENV_READ = re.compile(r"""(environ\.get\(|getenv\(|environ\[|environ\.setdefault\(|environ\.pop\()\s*f?["']STUDIO_""")


def test_studio_variables_are_read_in_settings_only():
    offenders = []
    for path in REPO.rglob("*.py"):
        rel = path.relative_to(REPO)
        if rel.parts[0] in {"tests", ".venv"} or rel == Path("studio/settings.py"):
            continue
        if ENV_READ.search(path.read_text()):
            offenders.append(str(rel))
    assert not offenders, f"read STUDIO_* outside studio/settings.py: {offenders}"
