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


def write_from_log(tab: str, measure_all: Callable[..., Any], build_figures: Callable[[Any, dict, float, bool], dict],
                   quick: bool = False, threads: int = 1, log_name: str = "training_log.json") -> dict:
    """`write_measured` for a paper whose figures also cite its training log in assets/<tab>/."""
    from studio.loader import ASSETS

    directory = ASSETS / tab
    log = read_log(directory / log_name)
    return write_measured(directory, lambda: measure_all(quick=quick, threads=threads),
                          lambda measured, seconds: build_figures(measured, log, seconds, quick), threads)


def cli(doc: str, tab: str, write: Callable[..., dict], rows: Callable[..., list], argv=None) -> None:
    """The bench command line: ``[--quick] [--threads N] [--write]``; prints the figures or the rows."""
    import argparse

    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--write", action="store_true", help=f"write assets/{tab}/figures.json and MODEL_CARD.md")
    args = parser.parse_args(argv)
    if args.write:
        from adapters.common.figures import figures_markdown

        print(figures_markdown(write(quick=args.quick, threads=args.threads)))
        return
    for row in rows(quick=args.quick, threads=args.threads):
        print(row)
