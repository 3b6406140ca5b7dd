"""Benchmarks: each `bench/<key>.py` measures in one run and is the only writer of its figures."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable


def write_measured(directory: Path, measure: Callable[[], Any], build: Callable[[Any, float], dict],
                   threads: int = 1) -> dict:
    """Measure with torch at `threads` threads (so the provenance records the thread count the
    figures were measured with), build the figures from the measurements and the seconds taken,
    and write figures.json and the model card into `directory`."""
    import torch

    from adapters.common import figures

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        start = time.perf_counter()
        measured = measure()
        figs = build(measured, time.perf_counter() - start)
    finally:
        torch.set_num_threads(previous)
    figures.write(directory, figs)
    return figs


def read_log(path: Path) -> dict:
    """A training log the figures cite (written by the paper's training script), or {} when absent."""
    return json.loads(path.read_text()) if path.is_file() else {}
