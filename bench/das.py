"""DAS bench on the small VLM (frozen DINOv2-S + projector + frozen SmolLM2-135M-Instruct).

    python -m bench.das [--quick] [--threads N] [--write]

One run measures, for k = 3, 6, 9, 12 skipped layers of 30, on questions about scenes of held-out
compositions (colour-shape pairs and shape counts never rendered for training; `adapters.vlm.scenes`):
greedy first-word VQA accuracy (open) and the closed-set choice, and their agreement with the full
model's answers, for the full model, the searched skip set with its layers replaced by adapters, the
same layers removed, and a random skip set of the same k (seeded; its layers replaced by their
adapters from the search). Per variant: multiply-adds per generated token, and the
one-thread wall time of a prefill and 16 greedy tokens (best of 5 rounds that take every variant in turn). The first tab example's time.

`--write` is the only writer of assets/das/figures.json and renders assets/das/MODEL_CARD.md; the
training record is read from assets/das/das_training_log.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402

TAB = "das"
HELDOUT_SCENES = 120
PER_TYPE = 10
LATENCY_TOKENS = 16
LATENCY_QUESTION = "What colour is the triangle?"
RANDOM_SEED = 1234
LATENCY_ROUNDS = 5


def random_skip_set(candidates, k: int, seed: int = RANDOM_SEED) -> tuple[int, ...]:
    import numpy as np

    rng = np.random.default_rng([seed, k])
    return tuple(sorted(int(i) for i in rng.choice(list(candidates), k, replace=False)))


def measure_all(quick: bool = False, threads: int = 1) -> dict:
    from adapters.common.imaging import read_rgb_image
    from adapters.das import inference
    from adapters.das.config import KS, make_request
    from adapters.das.loading import load_bundled
    from adapters.das.metrics import agreement, answer_fn, decode_seconds, macs_per_token
    from adapters.vlm.evaluate import question_items, vqa_accuracy
    from adapters.vlm.scenes import CHANCE, make_scene
    from studio.loader import ASSETS

    torch.set_num_threads(threads)
    bundle = load_bundled(ASSETS / TAB)
    vlm, das = bundle.vlm, bundle.das
    scenes = [make_scene(i, "heldout") for i in range(40 if quick else HELDOUT_SCENES)]
    items = question_items(scenes, 4 if quick else PER_TYPE)
    needed = sorted({i for i, _ in items})
    patches = torch.zeros(max(needed) + 1, 256, 384)
    for i in needed:
        patches[i] = vlm.image_patches(scenes[i].image)[0]
    latency_patches = vlm.image_patches(scenes[needed[0]].image)

    def evaluate(layers, mode):
        predictions: list = []
        table = vqa_accuracy(vlm, patches, items, answer_fn=answer_fn(bundle, layers, mode), predictions=predictions)
        return table, predictions

    def timings(configs) -> list[dict]:
        """Best of `LATENCY_ROUNDS` interleaved rounds per (layers, mode): a burst of load from the
        other jobs on a shared CPU then costs every variant alike."""
        best = [None] * len(configs)
        for _ in range(2 if quick else LATENCY_ROUNDS):
            for i, (layers, mode) in enumerate(configs):
                t = decode_seconds(bundle, layers, mode, latency_patches, LATENCY_QUESTION, LATENCY_TOKENS, repeats=1)
                if best[i] is None or t["seconds"] < best[i]["seconds"]:
                    best[i] = t
        return [t | {"macs_per_token": macs_per_token(bundle.lm, das, layers, mode)}
                for t, (layers, mode) in zip(best, configs)]

    start = time.perf_counter()
    full_table, full_predictions = evaluate((), "full")
    full = {"accuracy": full_table}
    rows = []
    for k in KS:
        for name, layers, mode in (("searched", das.top_k(k), "adapters"), ("searched", das.top_k(k), "removed"),
                                   ("random", random_skip_set(das.config.candidates, k), "adapters")):
            table, predictions = evaluate(layers, mode)
            rows.append({"k": k, "set": name, "mode": mode, "layers": list(layers), "accuracy": table,
                         "agreement": agreement(full_predictions, predictions)})
            print(f"k={k} {name} {mode}: open {table['all']['accuracy']:.3f} "
                  f"agree {rows[-1]['agreement']['open']:.3f}", file=sys.stderr, flush=True)
    eval_seconds = time.perf_counter() - start
    measured = timings([((), "full")] + [(tuple(r["layers"]), r["mode"]) for r in rows])
    full["timing"] = measured[0]
    for r, t in zip(rows, measured[1:]):
        r["timing"] = t

    from tabs.das import EXAMPLES  # the rows the tab offers

    first = EXAMPLES[0]
    request = make_request(first[1], read_rgb_image(first[0]), first[2], first[3], first[4])
    t0, c0 = time.perf_counter(), time.process_time()
    example = inference.run(bundle, request)
    example_seconds, example_cpu = time.perf_counter() - t0, time.process_time() - c0
    adapter_params, frozen_params = bundle.param_counts()
    return {"full": full, "rows": rows, "chance": CHANCE, "items": len(items), "per_type": 4 if quick else PER_TYPE,
            "eval_seconds": eval_seconds, "threads": threads,
            "probabilities": [round(float(p), 4) for p in das.probabilities()],
            "top_k": {str(k): list(das.top_k(k)) for k in KS}, "fine_tuned": bundle.info.get("fine_tuned", []),
            "example": {"seconds": example_seconds, "cpu_seconds": example_cpu, "question": first[1], "k": first[2],
                        "answers": {a.variant: a.text for a in example.answers}},
            "adapter_params": adapter_params, "frozen_params": frozen_params,
            "projector_params": bundle.projector_params(), "info": bundle.info}


def _row(m: dict, k: int, name: str, mode: str) -> dict:
    return next(r for r in m["rows"] if r["k"] == k and r["set"] == name and r["mode"] == mode)


def run(quick: bool = False, threads: int = 1) -> list[dict]:
    """Rows for `bench.run_all`."""
    m = measure_all(quick=quick, threads=threads)
    full = m["full"]
    rows = [{"tab": TAB, "case": "full model", "metric": "held-out VQA accuracy",
             "value": round(full["accuracy"]["all"]["accuracy"], 3), "baseline": None, "ratio": None,
             "note": f"{m['items']} questions"}]
    for r in m["rows"]:
        case = f"k={r['k']} {r['set']} set, {'adapters' if r['mode'] == 'adapters' else 'removed'}"
        rows.append({"tab": TAB, "case": case, "metric": "agreement with the full model (open answer)",
                     "value": round(r["agreement"]["open"], 3), "baseline": "full model: 1",
                     "ratio": round(r["agreement"]["open"], 3),
                     "note": f"accuracy {r['accuracy']['all']['accuracy']:.3f}"})
        rows.append({"tab": TAB, "case": case, "metric": "ms per token, one thread",
                     "value": round(r["timing"]["ms_per_token"], 1), "baseline": "full model",
                     "ratio": round(r["timing"]["ms_per_token"] / full["timing"]["ms_per_token"], 3), "note": ""})
    rows.append({"tab": TAB, "case": "first example", "metric": "seconds", "value": round(m["example"]["seconds"], 2),
                 "baseline": None, "ratio": None, "note": f"{threads} thread(s)"})
    return rows


def build_figures(m: dict, log: dict, seconds: float, quick: bool) -> dict:
    from adapters.common import figures
    from adapters.vlm.scenes import QUESTION_TYPES

    full = m["full"]
    fa, ft = full["accuracy"]["all"], full["timing"]
    columns = ["k", "skip set", "skipped layers", "accuracy (open)", "accuracy (closed set)",
               "agrees with full (open)", "agrees with full (closed set)", "ms per token", "M multiply-adds per token"]
    table_rows = [[0, "none: full model", "-", f"{fa['accuracy']:.1%}", f"{fa['choice']:.1%}", "100%", "100%",
                   f"{ft['ms_per_token']:.0f}", f"{ft['macs_per_token'] / 1e6:.0f}"]]
    names = {("searched", "adapters"): "searched, adapters", ("searched", "removed"): "searched, removed",
             ("random", "adapters"): "random, adapters"}
    for r in m["rows"]:
        a, g, t = r["accuracy"]["all"], r["agreement"], r["timing"]
        table_rows.append([r["k"], names[(r["set"], r["mode"])], " ".join(map(str, r["layers"])),
                           f"{a['accuracy']:.1%}", f"{a['choice']:.1%}", f"{g['open']:.1%}", f"{g['choice']:.1%}",
                           f"{t['ms_per_token']:.0f}", f"{t['macs_per_token'] / 1e6:.0f}"])
    main = figures.table(
        "skipping", "Skipping k of 30 layers: held-out VQA accuracy, agreement with the full model's answers, "
                    "one-thread latency and multiply-adds per generated token",
        columns, table_rows,
        note=(f"{m['items']} questions ({m['per_type']} per question type) on scenes that each contain a colour-shape "
              f"pair or shape count never rendered for training. Accuracy: the first word of the greedy answer "
              f"(open) and the highest-ranked of the question type's answers (closed set). Agreement: the share of "
              f"questions given the full model's open answer / closed-set choice. ms per token: the best of {LATENCY_ROUNDS} "
              f"interleaved rounds' wall time of the prompt ({LATENCY_QUESTION!r} with the picture) and {LATENCY_TOKENS} greedy tokens, divided by "
              f"{LATENCY_TOKENS}, on {m['threads']} thread(s) of a CPU shared with other jobs. Multiply-adds: the "
              f"weight matrices of the layers that run, the replacing adapters and the output head (attention "
              f"scores left out). Random set: seeded; its adapters are the ones trained during the "
              f"search only (the searched set's top-12 layers were trained further)."))
    per_type = figures.table(
        "full_per_type", "The full model per question type (held-out compositions), and chance",
        ["", *QUESTION_TYPES, "all"],
        [["open answer", *[f"{full['accuracy'][k]['accuracy']:.0%}" if k in full["accuracy"] else "-"
                           for k in QUESTION_TYPES], f"{fa['accuracy']:.1%}"],
         ["closed set", *[f"{full['accuracy'][k]['choice']:.0%}" if k in full["accuracy"] else "-"
                          for k in QUESTION_TYPES], f"{fa['choice']:.1%}"],
         ["chance (closed set)", *[f"{m['chance'][k]:.0%}" for k in QUESTION_TYPES], "-"]])
    probs = m["probabilities"]
    prob_table = figures.table(
        "probabilities", "Learned skip probability sigmoid(score) per layer (layer 0 is never skipped)",
        ["layers", *[str(i) for i in range(10)]],
        [[f"{lo}-{lo + 9}", *[f"{probs[i]:.2f}" for i in range(lo, lo + 10)]] for lo in (0, 10, 20)])

    def at(k, name, mode):
        return _row(m, k, name, mode)

    notes = []
    k6a, k6r = at(6, "searched", "adapters"), at(6, "searched", "removed")
    notes.append(
        f"At k = 6 (layers {', '.join(map(str, k6a['layers']))}): adapters {k6a['accuracy']['all']['accuracy']:.1%} "
        f"open / {k6a['accuracy']['all']['choice']:.1%} closed-set accuracy vs the full model's {fa['accuracy']:.1%} / "
        f"{fa['choice']:.1%} (difference {100 * (k6a['accuracy']['all']['accuracy'] - fa['accuracy']):+.1f} / "
        f"{100 * (k6a['accuracy']['all']['choice'] - fa['choice']):+.1f} points); removal "
        f"{k6r['accuracy']['all']['accuracy']:.1%} / {k6r['accuracy']['all']['choice']:.1%} "
        f"({100 * (k6r['accuracy']['all']['accuracy'] - fa['accuracy']):+.1f} / "
        f"{100 * (k6r['accuracy']['all']['choice'] - fa['choice']):+.1f}). Agreement with the full model's answers: "
        f"adapters {k6a['agreement']['open']:.1%} open / {k6a['agreement']['choice']:.1%} closed set, removal "
        f"{k6r['agreement']['open']:.1%} / {k6r['agreement']['choice']:.1%}.")
    gap_open = 100 * (k6a["accuracy"]["all"]["accuracy"] - fa["accuracy"])
    gap_choice = 100 * (k6a["accuracy"]["all"]["choice"] - fa["choice"])
    loss_open = 100 * (fa["accuracy"] - k6r["accuracy"]["all"]["accuracy"])
    loss_choice = 100 * (fa["choice"] - k6r["accuracy"]["all"]["choice"])
    macs = [ft["macs_per_token"], *[at(k, "searched", "adapters")["timing"]["macs_per_token"]
                                    for k in sorted({r["k"] for r in m["rows"]})]]
    notes.append(
        "Against the aims at k = 6: adapters lose at most 3 points against the full model: "
        f"{'met' if gap_open >= -3 else 'not met'} in open accuracy ({gap_open:+.1f}), "
        f"{'met' if gap_choice >= -3 else 'not met'} in closed-set accuracy ({gap_choice:+.1f}); removal loses more "
        f"than 10 points: {'met' if loss_open > 10 else 'not met'} in open accuracy ({loss_open:.1f}), "
        f"{'met' if loss_choice > 10 else 'not met'} in closed-set accuracy ({loss_choice:.1f}); multiply-adds per "
        f"token fall with k: {'yes' if all(b < a for a, b in zip(macs, macs[1:])) else 'no'}. The full model itself "
        f"is at or below chance on these held-out compositions, so the accuracy gaps say little; agreement with the "
        f"full model is the measure of what skipping changes.")
    latency = [at(k, "searched", "adapters")["timing"]["ms_per_token"] for k in sorted({r["k"] for r in m["rows"]})]
    notes.append("One-thread ms per token with adapters, k = 0 (full), 3, 6, 9, 12: "
                 + ", ".join(f"{v:.0f}" for v in [ft["ms_per_token"], *latency])
                 + (" (falls with k at every step)." if all(b < a for a, b in zip([ft["ms_per_token"], *latency], latency))
                    else " (not monotone in this run: the CPU is shared, see the multiply-adds for the exact cost)."))
    ex = m["example"]
    notes.append(f"First tab example ({ex['question']!r}, k = {ex['k']}): {ex['seconds']:.1f} s wall for all three "
                 f"answers on {m['threads']} thread(s), {ex['cpu_seconds']:.1f} CPU s; full model {ex['answers']['full']!r}, "
                 f"adapters {ex['answers']['adapters']!r}, removed {ex['answers']['removed']!r}.")
    notes.append(f"Trained here: replacing adapters and skip scores {m['adapter_params']:,} parameters (rank-16 "
                 f"bottleneck per candidate layer 1-29); the projector {m['projector_params']:,} (trained before, "
                 f"frozen here); frozen {m['frozen_params']:,}.")
    record = next((v for key, v in sorted(log.items()) if key.startswith("seed")), None)
    if record:
        notes.append(
            f"Training (seed {record['seed']}, one thread): search {record['search_steps']} steps with "
            f"{record['search_rounds']} reward rounds of {record['planned']['candidates']} candidate skip sets, then "
            f"{record['finetune_steps']} steps fine-tuning the adapters of the top-12 layers; "
            f"{record['cpu_s'] / 60:.1f} CPU min in all (loss of the skipped model {record['search_loss_first10']} -> "
            f"{record['search_loss_last10']} over the search, {record['finetune_loss_first10']} -> "
            f"{record['finetune_loss_last10']} over fine-tuning); feature caching "
            f"{log.get('features_cpu_s', 0) / 60:.1f} CPU min.")
    data = {"measured": m, "training": log, "quick": quick}
    command = "python -m bench.das --write" + (" --quick" if quick else "")
    return figures.figures(TAB, figures.provenance(command, seconds), [main, per_type, prob_table], notes, data)


def write(quick: bool = False, threads: int = 1) -> dict:
    from bench import read_log, write_measured
    from studio.loader import ASSETS

    directory = ASSETS / TAB
    log = read_log(directory / "das_training_log.json")
    return write_measured(directory, lambda: measure_all(quick=quick, threads=threads),
                          lambda measured, seconds: build_figures(measured, log, seconds, quick), threads)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--write", action="store_true", help="write assets/das/figures.json and MODEL_CARD.md")
    args = parser.parse_args(argv)
    if args.write:
        from adapters.common.figures import figures_markdown

        print(figures_markdown(write(quick=args.quick, threads=args.threads)))
        return
    print(json.dumps(measure_all(quick=args.quick, threads=args.threads), indent=1, default=str))


if __name__ == "__main__":
    main()
