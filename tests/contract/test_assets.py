"""Each paper's assets: a model card rendered from its template and the figures (so the card says
what the figures say), figures in the shared shape, small weight files that a training script
reproduces, and examples that exist."""
from __future__ import annotations

import re
from pathlib import Path

from adapters.common import figures
from tests.contract.conftest import spec_of

REPO = Path(__file__).resolve().parents[2]
MAX_WEIGHT_BYTES = 8 * 2**20


def test_figures_and_card_are_current(key):
    directory = REPO / "assets" / key
    figs = figures.load(directory)
    assert figs is not None, f"{key}: no figures.json (run python -m bench.{key} --write)"
    assert figs["paper"] == key and figs["tables"]
    assert f"bench.{key}" in figs["provenance"]["command"]
    template = (directory / "MODEL_CARD.template.md").read_text()
    assert (directory / "MODEL_CARD.md").read_text() == figures.render_card(template, figs)


def test_shipped_text_has_no_project_process_words(key):
    directory = REPO / "assets" / key
    texts = [(directory / "MODEL_CARD.md").read_text(), spec_of(key).description, spec_of(key).real]
    for text in texts:
        assert not re.search(r"\b(the issue|issue #|this session|closing note)\b", text, re.I)


def test_weights_are_small_and_reproduced_by_a_training_script(key):
    directory = REPO / "assets" / key
    sources = "\n".join(p.read_text() for p in (REPO / "training" / key).rglob("*.py"))
    for path in directory.rglob("*.safetensors"):
        assert path.stat().st_size < MAX_WEIGHT_BYTES, f"{path.name} is over 8 MB"
        assert path.stem in sources or path.name in sources, f"no script under training/{key}/ names {path.name}"


def test_examples_exist(tab):
    for row in tab.EXAMPLES:
        for cell in row:
            if isinstance(cell, str) and cell.startswith(str(REPO)):
                assert Path(cell).is_file(), f"missing example file {Path(cell).name}"
