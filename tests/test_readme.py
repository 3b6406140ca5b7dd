"""The README's two set-up commands are the ones CI and the Space actually use."""
from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()


def fenced_commands() -> list[str]:
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", README, flags=re.S)]


def test_ci_runs_the_readme_test_command():
    ci_command = [line for line in (REPO / ".ci/run").read_text().splitlines() if line.startswith("pip install")]
    assert ci_command and ci_command[0] in fenced_commands()


def test_readme_run_command_starts_the_app_on_bundled_models():
    assert "pip install -r requirements.txt && python app.py" in fenced_commands()


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
    for module in tabs.registered_tabs():
        spec = module.INFO.spec
        if spec is not None and spec.hub_id:
            assert f"  - {spec.hub_id}\n" in front, f"{spec.hub_id} ({module.INFO.key}) missing from the Space's models"


def test_readme_tab_table_names_every_tab():
    import tabs

    table = README[README.index("<!-- tab-table -->"):README.index("<!-- /tab-table -->")]
    for module in tabs.registered_tabs():
        assert f"| {module.INFO.title} |" in table
