"""The benches' shared writer: figures are measured at the requested thread count (and the
provenance says so), the process's own thread count comes back afterwards, and the card is rendered."""
from __future__ import annotations

import json

import torch

from adapters.common import figures
from bench import write_measured


def test_measures_at_the_thread_count_writes_and_restores(tmp_path):
    (tmp_path / "MODEL_CARD.template.md").write_text("# Card\n\n{{tables}}\n")
    before = torch.get_num_threads()
    seen = {}

    def measure():
        seen["threads"] = torch.get_num_threads()
        return {"value": 0.5}

    def build(measured, seconds):
        seen["seconds"] = seconds
        rows = [["x", measured["value"]]]
        return figures.figures("demo", figures.provenance("python -m bench.demo --write", seconds),
                               [figures.table("t", "A table", ["case", "value"], rows)])

    figs = write_measured(tmp_path, measure, build, threads=1)
    assert seen["threads"] == 1 and seen["seconds"] >= 0
    assert figs["provenance"]["torch_threads"] == 1
    assert torch.get_num_threads() == before
    assert json.loads((tmp_path / "figures.json").read_text())["tables"][0]["rows"] == [["x", 0.5]]
    assert "| x | 0.5 |" in (tmp_path / "MODEL_CARD.md").read_text()
