"""Cloud-Adapter bench (frozen DINOv2-S/14 on 112 px tiles of the real Landsat-7 scene, simulated
clouds): the bundled models measured again on the held-out tiles and on the shifted set, the
strength and per-depth levers, the simulator + model time per tile on one thread; and the
three-seed variant comparison read from the training log assets/cloud_adapter/training_log.json
(written by training/cloud_adapter/train.py: only training can measure other seeds).

    python -m bench.cloud_adapter [--quick]   print rows (bench.run_all reads `run`)
    python -m bench.cloud_adapter --write     measure everything, write assets/cloud_adapter/figures.json
                                              and render MODEL_CARD.md from MODEL_CARD.template.md
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

ASSETS = Path(__file__).resolve().parent.parent / "assets" / "cloud_adapter"
LOG = ASSETS / "training_log.json"
CLASSES = ("clear", "thick cloud", "thin cloud", "shadow")
LABELS = {"off": "frozen DINOv2-S + head (adapter off)", "lora": "LoRA-only (no context branch)", "full": "Cloud-Adapter (full)"}


def _row(case, metric, value, baseline=None, ratio=None, note=""):
    return {"tab": "cloud_adapter", "case": case, "metric": metric, "value": float(value), "baseline": baseline,
            "ratio": None if ratio is None else float(ratio), "note": note}


@torch.no_grad()
def evaluate(model, images, labels, batch: int = 16, **kwargs) -> dict:
    from adapters.dense.metrics import confusion, scores

    matrix = np.zeros((4, 4), np.int64)
    for i in range(0, len(images), batch):
        pred = model(torch.from_numpy(images[i:i + batch]), **kwargs).argmax(1).numpy()
        matrix += confusion(pred, labels[i:i + batch], 4)
    s = scores(matrix)
    return {"miou": s["miou"], "iou": [float(v) for v in s["iou"]], "f1": [float(v) for v in s["f1"]]}


def latency(bundle, repeats: int) -> dict:
    """Median seconds for what one slider move costs: simulate clouds on a held-out tile, then run
    the adapter and the frozen baseline on it (one torch thread)."""
    from adapters.cloud_adapter import inference
    from adapters.cloud_adapter.config import SegmentRequest
    from adapters.cloud_adapter.data import clear_tile, heldout_corners
    from adapters.cloud_adapter.simulate import CloudSettings, simulate

    ground = clear_tile("heldout", heldout_corners()[0])
    times, sim_times = [], []
    for i in range(repeats + 1):
        start = time.perf_counter()
        image, labels, _ = simulate(ground, CloudSettings(seed=i))
        simulated = time.perf_counter()
        inference.run(bundle, SegmentRequest(image=image, labels=labels), device="cpu")
        if i:  # the first call warms up
            times.append(time.perf_counter() - start)
            sim_times.append(simulated - start)
    return {"slider_seconds": statistics.median(times), "simulate_seconds": statistics.median(sim_times), "repeats": repeats}


def _mean_sd(values) -> tuple[float, float]:
    values = [v for v in values if v is not None and np.isfinite(v)]
    if not values:
        return float("nan"), float("nan")
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def summarise_log(log: dict) -> dict:
    """variant -> {seeds, miou (mean, sd), f1 per class (mean, sd), shifted miou, cpu minutes}."""
    out = {}
    all_runs = log.get("runs", [])
    if not all_runs:
        return out
    # the main recipe; runs at other step counts are shown apart
    steps = log.get("data", {}).get("main_steps") or statistics.mode(r["steps"] for r in all_runs)
    for variant in ("off", "lora", "full"):
        runs = sorted((r for r in all_runs if r["variant"] == variant and r["steps"] == steps), key=lambda r: r["seed"])
        if not runs:
            continue
        out[variant] = {
            "seeds": [r["seed"] for r in runs],
            "miou": _mean_sd([r["heldout"]["miou"] for r in runs]),
            "f1": [_mean_sd([r["heldout"]["f1"][c] for r in runs]) for c in range(4)],
            "iou": [_mean_sd([r["heldout"]["iou"][c] for r in runs]) for c in range(4)],
            "shifted": _mean_sd([r["shifted"]["miou"] for r in runs]),
            "per_seed_miou": [round(r["heldout"]["miou"], 4) for r in runs],
            "per_seed_f1": [[round(v, 4) for v in r["heldout"]["f1"]] for r in runs],
            "cpu_minutes": round(sum(r["cpu_seconds"] for r in runs) / 60, 1),
            "steps": runs[0]["steps"], "batch": runs[0]["batch"],
        }
    return out


def measure(quick: bool = False) -> dict:
    from adapters.cloud_adapter import data
    from adapters.cloud_adapter.loading import load_bundled

    torch.set_num_threads(1)
    bundle = load_bundled(ASSETS)
    heldout = data.heldout_set(draws=1 if quick else data.HELDOUT_DRAWS)
    shifted = data.shifted_set(draws=1 if quick else data.HELDOUT_DRAWS)
    models = {"off": bundle.off, "lora": bundle.lora, "full": bundle.full}
    bundled = {k: {"heldout": evaluate(m, *heldout), "shifted": evaluate(m, *shifted)} for k, m in models.items() if m is not None}
    strengths = {} if quick else {s: evaluate(bundle.full, *heldout, strength=s)["miou"] for s in (0.0, 0.5, 1.0, 1.5)}
    depth_off = {} if quick else {
        g: evaluate(bundle.full, *heldout, depths={g: False})["miou"] for g in ("shallow", "middle", "deep")}
    log = json.loads(LOG.read_text()) if LOG.is_file() else {"runs": []}
    adapter, frozen = bundle.param_counts()
    return {"n_heldout": int(len(heldout[0])), "n_shifted": int(len(shifted[0])), "bundled": bundled, "strength": strengths,
            "depth_off": depth_off, "latency": latency(bundle, 2 if quick else 5), "log": summarise_log(log), "runs": log.get("runs", []),
            "log_data": log.get("data", {}), "superseded": log.get("superseded", {}), "params": {"adapter_and_head": adapter, "frozen": frozen,
                                                        "adapter_only": sum(p.numel() for p in bundle.full.adapter.parameters()),
                                                        "head": sum(p.numel() for p in bundle.full.head.parameters())}}


def _pm(pair, digits=3) -> str:
    mean, sd = pair
    return "–" if not np.isfinite(mean) else f"{mean:.{digits}f} ± {sd:.{digits}f}"


def findings(m: dict) -> list[str]:
    notes = []
    s = m["log"]
    if "full" in s and "off" in s:
        gain = 100 * (s["full"]["miou"][0] - s["off"]["miou"][0])
        notes.append(f"Held-out mIoU over seeds {s['full']['seeds']}: full adapter {_pm(s['full']['miou'])}, frozen backbone + "
                     f"head {_pm(s['off']['miou'])}: {gain:+.1f} points (the aim was at least +5: "
                     f"{'met' if gain >= 5 else 'not met'}).")
    if "full" in s and "lora" in s:
        for c in (2, 3):
            d = s["full"]["f1"][c][0] - s["lora"]["f1"][c][0]
            seeds_ahead = sum(f[c] > g[c] for f, g in zip(s["full"]["per_seed_f1"], s["lora"]["per_seed_f1"]))
            notes.append(f"{CLASSES[c].capitalize()} F1: full {_pm(s['full']['f1'][c])} vs LoRA-only {_pm(s['lora']['f1'][c])} "
                         f"({d:+.3f}; full ahead in {seeds_ahead} of {min(len(s['full']['seeds']), len(s['lora']['seeds']))} seeds).")
    b = m["bundled"]
    if "full" in b and "off" in b:
        notes.append(f"Bundled seed-0 models re-measured here: held-out mIoU full {b['full']['heldout']['miou']:.3f}, off "
                     f"{b['off']['heldout']['miou']:.3f}" + (f", LoRA-only {b['lora']['heldout']['miou']:.3f}" if "lora" in b else "") +
                     f"; shifted set (clouds over non-satellite photographs) full {b['full']['shifted']['miou']:.3f}, off "
                     f"{b['off']['shifted']['miou']:.3f}.")
    lat = m["latency"]
    notes.append(f"One slider move (simulate clouds on a 112 px held-out tile, then the adapter and the frozen baseline) takes "
                 f"{lat['slider_seconds']:.2f} s median on one CPU thread here (simulator {lat['simulate_seconds']:.2f} s), on a "
                 f"shared machine.")
    return notes


def build_figures(m: dict, seconds: float) -> dict:
    from adapters.common import figures as F

    s = m["log"]
    tables = []
    rows = []
    for v in ("off", "lora", "full"):
        if v in s:
            r = s[v]
            rows.append([LABELS[v], len(r["seeds"]), _pm(r["miou"]), *[_pm(f) for f in r["f1"]], _pm(r["shifted"]), r["cpu_minutes"]])
    tables.append(F.table("variants", "Held-out tiles, mean ± sd over seeds (training log)",
                          ["variant", "seeds", "mIoU", *[f"F1 {c}" for c in CLASSES], "shifted mIoU", "CPU min (all seeds)"], rows,
                          note="From assets/cloud_adapter/training_log.json (training/cloud_adapter/train.py), not re-measured here. "
                               "Same head, data, steps and seed for every variant."))
    old = m["superseded"]
    groups = old if isinstance(old, list) else [old] if old.get("runs") else []
    for i, group in enumerate(groups):
        tables.append(F.table(f"superseded{i or ''}", "A recipe that was not kept (held-out)",
                              ["variant", "seed", "steps", "adapter lr", "mIoU", *[f"F1 {c}" for c in CLASSES]],
                              [[LABELS[r["variant"]], r["seed"], r["steps"], r["adapter_lr"], f"{r['heldout']['miou']:.3f}",
                                *[f"{x:.3f}" for x in r["heldout"]["f1"]]] for r in group["runs"]],
                              note=f"From the training log; {group['why']}. Kept so the trial is on record."))
    main_steps = next(iter(s.values()))["steps"] if s else None
    longer = [r for r in m["runs"] if r["steps"] != main_steps]
    if longer:
        tables.append(F.table("longer", "Other step counts (held-out)", ["variant", "seed", "steps", "mIoU", *[f"F1 {c}" for c in CLASSES], "CPU min"],
                              [[LABELS[r["variant"]], r["seed"], r["steps"], f"{r['heldout']['miou']:.3f}",
                                *[f"{x:.3f}" for x in r["heldout"]["f1"]], round(r["cpu_seconds"] / 60, 1)] for r in longer],
                              note="From the training log; the same recipe at other step counts."))
    b = m["bundled"]
    rows = [[LABELS[v], f"{b[v]['heldout']['miou']:.3f}", *[f"{x:.3f}" for x in b[v]["heldout"]["iou"]], f"{b[v]['shifted']['miou']:.3f}"]
            for v in ("off", "lora", "full") if v in b]
    tables.append(F.table("bundled", f"Bundled seed-0 models, re-measured: IoU on {m['n_heldout']} held-out samples",
                          ["model", "mIoU", *[f"IoU {c}" for c in CLASSES], f"shifted mIoU ({m['n_shifted']})"], rows))
    if m["strength"]:
        tables.append(F.table("levers", "Levers on the bundled adapter (held-out mIoU)",
                              ["setting", "mIoU"],
                              [[f"strength {k:g}", f"{v:.3f}"] for k, v in m["strength"].items()] +
                              [[f"{g} blocks off", f"{v:.3f}"] for g, v in m["depth_off"].items()],
                              note="Strength 0 runs the frozen backbone into the adapter's own head (not the separately "
                                   "trained baseline head) with the context channels it was trained with at zero, "
                                   "so it scores below the baseline."))
    lat = m["latency"]
    tables.append(F.table("latency", "Time per slider move on one CPU thread (median)", ["what", "seconds"],
                          [["simulate clouds (112 px tile)", f"{lat['simulate_seconds']:.3f}"],
                           ["simulate + adapter + frozen baseline", f"{lat['slider_seconds']:.3f}"]]))
    p = m["params"]
    data = {"params": {k: f"{v:,}" for k, v in p.items()} | {"share": f"{100 * p['adapter_only'] / p['frozen']:.2f}%"},
            "training": {k: v for k, v in (m["log_data"] | {"steps": next(iter(s.values()))["steps"] if s else None,
                                                              "batch": next(iter(s.values()))["batch"] if s else None}).items()},
            "summary": {v: {"seeds": r["seeds"], "miou": r["miou"], "f1": r["f1"]} for v, r in s.items()},
            "latency": lat}
    return F.figures("cloud_adapter", F.provenance("python -m bench.cloud_adapter --write", seconds), tables, findings(m), data)


def rows_from(m: dict) -> list[dict]:
    rows = [_row("slider move", "seconds", m["latency"]["slider_seconds"], note="simulate + adapter + frozen, 112 px, 1 thread")]
    for v, r in m["bundled"].items():
        rows.append(_row(f"bundled {v}", "heldout_mIoU", r["heldout"]["miou"], note=f"{m['n_heldout']} held-out samples"))
    return rows


def run(quick: bool = False) -> list[dict]:
    return rows_from(measure(quick))


def main(argv=None) -> None:
    """--write measures everything once and is the only writer of figures.json and MODEL_CARD.md."""
    from adapters.common import figures as F

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--write", action="store_true", help="write assets/cloud_adapter/figures.json and MODEL_CARD.md")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    started = time.perf_counter()
    m = measure(quick=args.quick and not args.write)
    if not args.write:
        for row in rows_from(m):
            print(json.dumps(row))
        return
    figs = build_figures(m, time.perf_counter() - started)
    F.write(ASSETS, figs)
    print(f"wrote {ASSETS / 'figures.json'} and MODEL_CARD.md ({figs['provenance']['seconds']} s)", *figs["notes"], sep="\n- ")


if __name__ == "__main__":
    main()
