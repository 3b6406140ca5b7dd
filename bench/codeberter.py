"""CodeBERTER bench on the bundled model: held-out token-type accuracy with the NER adapter (at several
scales), with the linear probe on the frozen features and with the adapter's head on frozen features;
bug localisation and repair of the bundled bug models (above the NER adapter vs alone) on held-out
functions with injected bugs; and the time of one tab request. All in one run.

    python -m bench.codeberter [--quick] [--threads N] [--write]

Figures only training can measure (the encoder comparison, the three-seed bug ablation, CPU minutes)
are read from assets/codeberter/training_log.json, which `training/codeberter/train.py` writes, and
cited as such. `--write` (the full bench unless --quick) is the only writer of
assets/codeberter/figures.json and renders MODEL_CARD.md from MODEL_CARD.template.md.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402  (after the path set-up above)

TAB = "codeberter"
SCALES = (0.0, 0.5, 1.0, 1.5)
EVAL_SEED = 0
BUG_SEED = 1  # the training script's held-out bug draw


def measure_all(quick: bool = False, threads: int = 1) -> dict:
    from adapters.codeberter import data, inference
    from adapters.codeberter.config import BUG_MAX_LEN, MAX_CHARS, MAX_FUNCTION_CHARS, MAX_LEN, make_request
    from adapters.codeberter.loading import load_bundled
    from adapters.codeberter.metrics import bug_accuracy, type_accuracy
    from studio.loader import ASSETS

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        bundle = load_bundled(ASSETS / TAB)
        enc, tok = bundle.encoder, bundle.tokenizer
        _, heldout_files = data.split_files()
        windows = data.type_examples(tok, heldout_files, MAX_LEN, MAX_CHARS, limit=60 if quick else 240, seed=EVAL_SEED)
        types = {"probe": type_accuracy(enc, bundle.probe_head, [], windows)}
        for scale in (1.0,) if quick else SCALES:
            types[f"adapter x{scale:g}"] = type_accuracy(enc, bundle.type_head, [(bundle.ner, scale)], windows)
        bugs = [b for _, b in data.bug_examples(tok, heldout_files, 60 if quick else 300, BUG_MAX_LEN,
                                                MAX_FUNCTION_CHARS, seed=BUG_SEED)]
        special = bundle.special_ids
        bug = {"with": bug_accuracy(enc, bundle.bug[True][1], [(bundle.ner, 1.0), (bundle.bug[True][0], 1.0)], bugs, special),
               "alone": bug_accuracy(enc, bundle.bug[False][1], [(bundle.bug[False][0], 1.0)], bugs, special)}
        examples = json.loads((ASSETS / TAB / "examples.json").read_text())
        seconds = []
        for row in examples[: 2 if quick else len(examples)]:
            request = make_request(row["code"], 1.0)
            start = time.perf_counter()
            inference.run(bundle, request)
            seconds.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(previous)
    return {"types": types, "bug": bug, "windows": len(windows), "bugs": len(bugs), "request_seconds": seconds,
            "threads": threads, "adapter_params": bundle.param_counts()[0], "frozen_params": bundle.param_counts()[1],
            "bug_params": bundle.bug_params(), "model": bundle.name}


def run(quick: bool = False, threads: int = 1) -> list[dict]:
    """Rows for `bench.run_all`: adapter vs probe accuracy, bug localisation with vs without."""
    m = measure_all(quick=quick, threads=threads)
    adapter, probe = m["types"]["adapter x1"]["token"], m["types"]["probe"]["token"]
    with_ner, alone = m["bug"]["with"]["all"]["localisation"], m["bug"]["alone"]["all"]["localisation"]
    return [
        {"tab": TAB, "case": "held-out token types", "metric": "accuracy, NER adapter", "value": round(adapter, 4),
         "baseline": "linear probe on frozen features", "ratio": round(adapter / max(probe, 1e-9), 3),
         "note": f"{m['types']['probe']['tokens']} tokens of {m['windows']} held-out windows"},
        {"tab": TAB, "case": "held-out injected bugs", "metric": "localisation, above NER adapter",
         "value": round(with_ner, 4), "baseline": "task adapter alone", "ratio": round(with_ner / max(alone, 1e-9), 3),
         "note": f"{m['bugs']} bugs, bundled seed-0 models"},
        {"tab": TAB, "case": "tab request", "metric": "seconds (median)", "value": round(statistics.median(m["request_seconds"]), 3),
         "baseline": None, "ratio": None, "note": f"{len(m['request_seconds'])} examples, {threads} thread(s)"},
    ]


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _mean_sd(values: list[float]) -> str:
    if not values:
        return "n/a"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.1f} ± {100 * sd:.1f}%"


def build_figures(m: dict, log: dict, seconds: float, quick: bool) -> dict:
    from adapters.codeberter.labels import TYPES
    from adapters.common import figures

    types = m["types"]
    type_rows = [[name, _pct(r["token"]), r["tokens"]] for name, r in types.items()]
    type_table = figures.table(
        "types", f"Token-type accuracy on held-out library files ({m['windows']} windows, measured now)",
        ["model", "accuracy", "tokens scored"], type_rows,
        note=("probe: LayerNorm + linear head trained on the frozen features; adapter xS: the NER adapter at scale S "
              "with its own head (x0 is that head on frozen features, i.e. the adapter switched off)."))
    per_type = figures.table(
        "per_type", "Accuracy per token type (held out, measured now)", ["type", "NER adapter", "linear probe"],
        [[t, _pct(types["adapter x1"]["per_type"].get(t, 0.0)), _pct(types["probe"]["per_type"].get(t, 0.0))]
         for t in TYPES if t in types["probe"]["per_type"]])
    bug_rows = []
    for label, key in (("task adapter above the NER adapter", "with"), ("task adapter alone", "alone")):
        r = m["bug"][key]
        bug_rows.append([label, _pct(r["all"]["localisation"]), _pct(r["all"]["joint"]),
                         _pct(r.get("variable misuse", {}).get("localisation", 0.0)),
                         _pct(r.get("operator swap", {}).get("localisation", 0.0))])
    bug_table = figures.table(
        "bugs", f"Bug localisation and repair, bundled (seed 0) models, {m['bugs']} held-out injected bugs (measured now)",
        ["model", "localisation", "localisation + fix", "loc., variable misuse", "loc., operator swap"], bug_rows)
    tables = [type_table, per_type, bug_table]
    notes = []
    seeds = log.get("bug", {})
    if seeds:
        def values(prefix, field, kind="all"):
            return [v[kind][field] for k, v in sorted(seeds.items()) if k.startswith(prefix + "-") and kind in v]

        rows = [[label, _mean_sd(values(p, "localisation")), _mean_sd(values(p, "joint")),
                 ", ".join(_pct(v) for v in values(p, "localisation"))]
                for label, p in (("above the frozen NER adapter (stacked)", "with"), ("alone", "without"))]
        tables.append(figures.table(
            "seeds", "Bug task, three seeds (mean ± sd; recorded by the training script in training_log.json)",
            ["task adapter", "localisation", "localisation + fix", "per seed (localisation)"], rows))
    encoders = log.get("encoders", {})
    if encoders:
        settings = log.get("settings", {})
        rows = [[name, _pct(e["probe"]["heldout_accuracy"]["token"]), _pct(e["ner"]["heldout_accuracy"]["token"]),
                 f"{e['ner']['cpu_s'] / 60:.1f}"] for name, e in encoders.items()]
        tables.append(figures.table(
            "encoders", f"Choice of frozen encoder: held-out accuracy after {settings.get('compare_steps')} adapter steps "
                        "(recorded by the training script)",
            ["encoder", "linear probe", "NER adapter", "adapter CPU min"], rows,
            note=(f"SmolLM2-135M is causal (a token sees only what comes before it) and was measured on its first "
                  f"{settings.get('smollm2_layers')} of 30 blocks to fit the CPU budget; MiniLM is bidirectional and "
                  f"uncased. The better NER adapter was kept and trained on.")))
    median_s = statistics.median(m["request_seconds"])
    notes.append(f"One tab request (typing with adapter and probe, two bug searches) took {median_s:.2f} s "
                 f"(median over {len(m['request_seconds'])} examples, {m['threads']} thread(s)).")
    if log:
        notes.append(f"Training took {log.get('cpu_minutes_total')} CPU minutes in all (one thread per process).")
    settings = log.get("settings", {})
    text = {
        "adapter_accuracy": _pct(types["adapter x1"]["token"]), "probe_accuracy": _pct(types["probe"]["token"]),
        "off_accuracy": _pct(types["adapter x0"]["token"]) if "adapter x0" in types else "n/a",
        "with_loc": _pct(m["bug"]["with"]["all"]["localisation"]), "alone_loc": _pct(m["bug"]["alone"]["all"]["localisation"]),
        "adapter_params": f"{m['adapter_params']:,}", "frozen_params": f"{m['frozen_params']:,}",
        "bug_params": f"{m['bug_params']:,}", "cpu_minutes": str(log.get("cpu_minutes_total")),
        "chosen": str(log.get("chosen")), "ner_steps": str(settings.get("ner_steps")),
        "bug_steps": str(settings.get("bug_steps")), "bug_train": str(settings.get("bug_train")),
        "batch": str(settings.get("batch")), "bug_batch": str(settings.get("bug_batch")),
        "compare_steps": str(settings.get("compare_steps")), "smollm2_layers": str(settings.get("smollm2_layers")),
        "heldout_percent": str(settings.get("heldout_percent")), "max_len": str(settings.get("max_len")),
        "bug_max_len": str(settings.get("bug_max_len")), "bottleneck": str(settings.get("bottleneck")),
        "with_seeds": _mean_sd([v["all"]["localisation"] for k, v in seeds.items() if k.startswith("with-")]),
        "alone_seeds": _mean_sd([v["all"]["localisation"] for k, v in seeds.items() if k.startswith("without-")]),
    }
    data = {"measured": m, "training": log, "quick": quick, "text": text}
    command = "python -m bench.codeberter --write" + (" --quick" if quick else "")
    return figures.figures(TAB, figures.provenance(command, seconds), tables, notes, data)


def write(quick: bool = False, threads: int = 1) -> dict:
    from bench import read_log, write_measured
    from studio.loader import ASSETS

    directory = ASSETS / TAB
    log = read_log(directory / "training_log.json")
    return write_measured(directory, lambda: measure_all(quick=quick, threads=threads),
                          lambda measured, seconds: build_figures(measured, log, seconds, quick), threads)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--write", action="store_true", help="write assets/codeberter/figures.json and MODEL_CARD.md")
    args = parser.parse_args(argv)
    if args.write:
        figs = write(quick=args.quick, threads=args.threads)
        from adapters.common.figures import figures_markdown

        print(figures_markdown(figs))
    else:
        for row in run(quick=args.quick, threads=args.threads):
            print(json.dumps(row))


if __name__ == "__main__":
    main()
