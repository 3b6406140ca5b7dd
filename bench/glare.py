"""GLARE bench (frozen DINOv2-S/14 on 112 px tiles of the real Landsat-7 scene, seven real land-cover
classes): the three-seed curve of held-out mIoU vs labelled fraction for frozen and adapted features
(per loss set), read from the training log assets/glare/training_log.json (only training can
measure other seeds); the bundled seed-0 UniAdapters and heads re-measured here on every held-out
labelled pixel; and the time one tab run takes on one thread.

    python -m bench.glare [--quick]   print rows (bench.run_all reads `run`)
    python -m bench.glare --write     measure everything, write assets/glare/figures.json and
                                      render MODEL_CARD.md from MODEL_CARD.template.md
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

ASSETS = Path(__file__).resolve().parent.parent / "assets" / "glare"
LOG = ASSETS / "training_log.json"
FRACTION_KEYS = ("0.01", "0.05", "0.2", "1")
FRACTION_NAMES = {"0.01": "1%", "0.05": "5%", "0.2": "20%", "1": "100%"}
LOSS_SETS = ("global", "global+local", "global+local+regional")


def _row(case, metric, value, baseline=None, ratio=None, note=""):
    return {"tab": "glare", "case": case, "metric": metric, "value": float(value), "baseline": baseline,
            "ratio": None if ratio is None else float(ratio), "note": note}


def _mean_sd(values) -> tuple[float, float]:
    values = [v for v in values if v is not None and np.isfinite(v)]
    if not values:
        return float("nan"), float("nan")
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def summarise_log(log: dict) -> dict:
    """variant -> fraction -> {per_seed, mean, sd}; plus paired gains over frozen (same seed = same
    labelled pixels and head initialisation)."""
    runs = [r for r in log.get("runs", {}).values() if _is_main(r, log)]  # the others: `explorations`
    if not runs:
        return {}
    steps = statistics.mode(r["steps"] for r in runs)
    frozen = log.get("frozen", {})
    out = {"steps": steps, "variants": {}, "gains": {}, "cpu": {}}
    seeds_by_variant = {}
    for ls in LOSS_SETS:
        chosen = sorted((r for r in runs if r["loss_set"] == ls and r["steps"] == steps), key=lambda r: r["seed"])
        if chosen:
            seeds_by_variant[ls] = {r["seed"]: r for r in chosen}
    seeds = sorted({s for v in seeds_by_variant.values() for s in v})
    variants = {"frozen": {s: {"heads": frozen[str(s)]} for s in seeds if str(s) in frozen}} | seeds_by_variant
    for name, by_seed in variants.items():
        out["variants"][name] = {}
        for f in FRACTION_KEYS:
            per_seed = {s: r["heads"][f]["miou"] for s, r in sorted(by_seed.items())}
            mean, sd = _mean_sd(per_seed.values())
            out["variants"][name][f] = {"per_seed": per_seed, "mean": mean, "sd": sd}
    for ls, by_seed in seeds_by_variant.items():
        out["gains"][ls] = {}
        for f in FRACTION_KEYS:
            diffs = [r["heads"][f]["miou"] - frozen[str(s)][f]["miou"] for s, r in by_seed.items() if str(s) in frozen]
            mean, sd = _mean_sd(diffs)
            out["gains"][ls][f] = {"mean": mean, "sd": sd, "ahead": int(sum(d > 0 for d in diffs)), "seeds": len(diffs)}
        out["cpu"][ls] = round(sum(r["cpu_seconds"] + r.get("eval_cpu_seconds", 0) for r in by_seed.values()) / 60, 2)
    setup = log.get("setup", {})
    out["cpu_total_minutes"] = round((sum(out["cpu"].values()) * 60 + setup.get("prefix_pool_cpu_seconds", 0)
                                      + log.get("frozen_cpu_seconds", 0)) / 60, 1)
    out["setup"] = setup
    return out


def _is_main(run: dict, log: dict) -> bool:
    return (run.get("lr", log.get("setup", {}).get("lr")) == log.get("setup", {}).get("lr")
            and run.get("ssl_regions", ["train"]) == ["train"]
            and run.get("local_negatives", "tile") == "tile")


def _recipe(run: dict, log: dict) -> str:
    parts = [run["loss_set"]]
    if run.get("lr", log["setup"]["lr"]) != log["setup"]["lr"]:
        parts.append(f"adapter lr {run['lr']:g} (main {log['setup']['lr']:g})")
    if run.get("ssl_regions", ["train"]) != ["train"]:
        parts.append("unlabelled tiles from the training and held-out regions (held-out labels unread)")
    if run.get("local_negatives", "tile") != "tile":
        parts.append("local loss with other tiles' patches as negatives (main: the tile's own)")
    return ", ".join(parts)


def explorations(log: dict) -> dict:
    """Runs outside the main recipe (another adapter learning rate, self-supervision that also sees
    the held-out region's unlabelled tiles, or the local loss's negatives from other tiles): recipe -> mean ± sd mIoU and paired gains over frozen per
    fraction, as in `summarise_log`."""
    frozen = log.get("frozen", {})
    grouped: dict = {}
    for r in log.get("runs", {}).values():
        if not _is_main(r, log) and str(r["seed"]) in frozen:
            grouped.setdefault(_recipe(r, log), []).append(r)
    table = {}
    for name, rs in grouped.items():
        gains = {}
        for f in FRACTION_KEYS:
            diffs = [r["heads"][f]["miou"] - frozen[str(r["seed"])][f]["miou"] for r in rs]
            mean, sd = _mean_sd(diffs)
            gains[f] = {"mean": mean, "sd": sd, "ahead": int(sum(d > 0 for d in diffs)), "seeds": len(diffs)}
        table[name] = {"gains": gains, "miou": {f: _mean_sd([r["heads"][f]["miou"] for r in rs]) for f in FRACTION_KEYS},
                       "cpu_minutes": round(sum(r["cpu_seconds"] + r.get("eval_cpu_seconds", 0) for r in rs) / 60, 2)}
    return table


def bundled_scores(bundle) -> dict:
    """Held-out mIoU of the bundled (seed-0) heads on the bundled adapters' features, re-measured."""
    from adapters.dense import landsat
    from adapters.glare import data, features, heads

    image = landsat.scene().rgb
    points, classes = data.labelled_pixels("heldout")
    out = {}
    for variant in ("frozen", *bundle.adapters):
        on = variant != "frozen"
        maps, corners = features.tile_maps(bundle.encoder, image, flags=(on,), adapter=bundle.adapters.get(variant))
        feats = features.sample_points(maps[on], corners, bundle.tile, points)
        out[variant] = {f: heads.evaluate(bundle.head(variant, float(f)), feats, classes)["miou"] for f in FRACTION_KEYS}
    return out


def latency(bundle, repeats: int) -> dict:
    """Median seconds of one tab run (adapted + frozen features, both heads, both PCA views) on the
    last held-out window (the tab's first example, 160 x 159 px), one torch thread."""
    from adapters.glare import inference
    from adapters.glare.config import SegmentRequest
    from adapters.glare.data import WINDOW_ROWS, heldout_window

    image, labels = heldout_window(len(WINDOW_ROWS) - 1)  # the tab's first example
    times = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        result = inference.run(bundle, SegmentRequest(image=image, labels=labels), device="cpu")
        if i:  # the first call warms up
            times.append(time.perf_counter() - start)
    return {"seconds": statistics.median(times), "repeats": repeats, "tiles": result.tiles,
            "size": f"{image.shape[1]}x{image.shape[0]}"}


def measure(quick: bool = False) -> dict:
    from adapters.glare.loading import load_bundled
    from bench import read_log

    bundle = load_bundled(ASSETS)
    log = read_log(LOG)
    adapter, frozen = bundle.param_counts()
    head = sum(p.numel() for p in next(iter(bundle.heads.values())).parameters())
    return {"log": summarise_log(log), "explorations": explorations(log),
            "explore_pool_minutes": round(sum(log.get("explore_pool_cpu_seconds", {}).values()) / 60, 2), "superseded": log.get("superseded", {}), "bundled": {} if quick else bundled_scores(bundle),
            "latency": latency(bundle, 1 if quick else 3),
            "params": {"adapter_and_head": adapter, "frozen": frozen, "adapter_only": adapter - head, "head": head}}


def _pm(pair_or_dict, digits=3) -> str:
    mean, sd = (pair_or_dict["mean"], pair_or_dict["sd"]) if isinstance(pair_or_dict, dict) else pair_or_dict
    return "–" if not np.isfinite(mean) else f"{mean:.{digits}f} ± {sd:.{digits}f}"


def findings(m: dict) -> list[str]:
    notes = []
    s = m["log"]
    for ls, gains in s.get("gains", {}).items():
        parts = [f"{FRACTION_NAMES[f]} {100 * g['mean']:+.1f} ± {100 * g['sd']:.1f} points (ahead in {g['ahead']} of {g['seeds']} seeds)"
                 for f, g in gains.items()]
        low = [gains[f] for f in ("0.01", "0.05")]
        verdict = ("adapted ahead at 1% and 5% in every seed" if all(g["ahead"] == g["seeds"] for g in low)
                   else "adapted ahead on average at 1% and 5%, not in every seed" if all(g["mean"] > 0 for g in low)
                   else "adapted not ahead at both 1% and 5%")
        notes.append(f"{ls}: held-out mIoU gain of adapted over frozen features, same labelled pixels and head seed: "
                     + "; ".join(parts) + f". Verdict: {verdict}.")
    if s:
        notes.append(f"Training CPU time, everything (prefix cache, {len(s.get('cpu', {}))} loss sets x seeds, head fits): "
                     f"{s['cpu_total_minutes']} min on one thread (budget 45).")
    b = m["bundled"]
    if b:
        notes.append("Bundled seed-0 heads re-measured here (held-out mIoU at 1% / 5%): " + "; ".join(
            f"{v} {r['0.01']:.3f} / {r['0.05']:.3f}" for v, r in b.items()) + ".")
    lat = m["latency"]
    notes.append(f"One tab run on a {lat['size']} window ({lat['tiles']} tiles, adapted and frozen features, both heads and "
                 f"both PCA views) takes {lat['seconds']:.2f} s median on one CPU thread here, on a shared machine.")
    return notes


def build_figures(m: dict, seconds: float) -> dict:
    from adapters.common import figures as F

    s = m["log"]
    tables = []
    if s:
        rows = [[("frozen DINOv2-S" if v == "frozen" else f"adapted: {v}"), len(next(iter(r.values()))["per_seed"]),
                 *[_pm(r[f]) for f in FRACTION_KEYS]] for v, r in s["variants"].items()]
        tables.append(F.table("curve", "Held-out mIoU vs labelled fraction, mean ± sd over seeds (training log)",
                              ["features + linear head", "seeds", *[FRACTION_NAMES[f] for f in FRACTION_KEYS]], rows,
                              note="From assets/glare/training_log.json (training/glare/train.py), not re-measured here. "
                                   "A seed's score is the mean over five draws of labelled pixels (one at 100%), the same "
                                   "draws and head initialisations for every variant; the seed also seeds the "
                                   "self-supervised run of each loss set."))
        rows = [[ls, *[f"{100 * g[f]['mean']:+.1f} ± {100 * g[f]['sd']:.1f} ({g[f]['ahead']}/{g[f]['seeds']})"
                       for f in FRACTION_KEYS]] for ls, g in s["gains"].items()]
        tables.append(F.table("gains", "Adapted minus frozen, mIoU points, paired by seed (seeds ahead / seeds)",
                              ["loss set", *[FRACTION_NAMES[f] for f in FRACTION_KEYS]], rows))
        setup = s["setup"]
        tables.append(F.table("budget", "Training cost (CPU minutes, one thread)", ["part", "CPU min"],
                              [["frozen-prefix cache (blocks 0-5 of every view)", round(setup.get("prefix_pool_cpu_seconds", 0) / 60, 2)],
                               *[[f"{ls}: self-supervised runs + head fits, all seeds", v] for ls, v in s["cpu"].items()],
                               ["total (with the frozen heads)", s["cpu_total_minutes"]],
                               ["not counted above: the other recipes' views, runs and head fits",
                                round(sum(r["cpu_minutes"] for r in (m.get("explorations") or {}).values())
                                      + m.get("explore_pool_minutes", 0), 2)],
                               ["not counted above: the superseded trial's self-supervised runs",
                                round(sum(r["cpu_seconds"] for r in (m.get("superseded") or {}).get("runs", {}).values()) / 60, 2)]]))
    explored = m.get("explorations") or {}
    # written even with no rows: the card names this table
    rows = [[name, *[f"{_pm(r['miou'][f])} ({100 * r['gains'][f]['mean']:+.1f}; {r['gains'][f]['ahead']}/{r['gains'][f]['seeds']})"
                     for f in FRACTION_KEYS], r["cpu_minutes"]] for name, r in explored.items()]
    tables.append(F.table("explorations", "Other recipes, tried after the main curve (held-out mIoU; gain over frozen in "
                          "points; seeds ahead)",
                          ["recipe", *[FRACTION_NAMES[f] for f in FRACTION_KEYS], "CPU min"], rows,
                          note="From the training log. Tried after seeing the main curve on the held-out pixels, so these "
                               "are explorations, not held-out results; nothing from them is bundled."))
    old = m.get("superseded") or {}
    if old.get("runs"):
        frozen = old.get("frozen", {}).get("0", {})
        rows = [["frozen DINOv2-S", 0, *[frozen.get(f, {}).get("miou") for f in FRACTION_KEYS]]] if frozen else []
        rows += [[f"adapted: {r['loss_set']}", r["seed"], *[r["heads"][f]["miou"] for f in FRACTION_KEYS]]
                 for r in old["runs"].values()]
        tables.append(F.table("superseded", "A trial recipe that was not kept: strong colour jitter (held-out mIoU, one label draw)",
                              ["features + linear head", "seed", *[FRACTION_NAMES[f] for f in FRACTION_KEYS]], rows,
                              note=f"From the training log; {old['why']}."))
    b = m["bundled"]
    if b:
        tables.append(F.table("bundled", "Bundled seed-0 adapters and heads, re-measured: held-out mIoU",
                              ["features + linear head", *[FRACTION_NAMES[f] for f in FRACTION_KEYS]],
                              [[v, *[r[f] for f in FRACTION_KEYS]] for v, r in b.items()]))
    lat = m["latency"]
    tables.append(F.table("latency", "Time per tab run on one CPU thread (median)", ["what", "seconds"],
                          [[f"{lat['size']} window, {lat['tiles']} tiles, adapted + frozen", round(lat["seconds"], 3)]]))
    p = m["params"]
    curve = {}
    for v, r in s.get("variants", {}).items():
        curve[v] = {"fractions": [float(f) for f in FRACTION_KEYS], "mean": [r[f]["mean"] for f in FRACTION_KEYS],
                    "sd": [r[f]["sd"] for f in FRACTION_KEYS], "seeds": len(r[FRACTION_KEYS[0]]["per_seed"])}
    data = {"params": {k: f"{v:,}" for k, v in p.items()} | {"share": f"{100 * p['adapter_only'] / p['frozen']:.2f}%"},
            "training": s.get("setup", {}) | {"cpu_total_minutes": s.get("cpu_total_minutes")},
            "curve": curve, "latency": lat}
    return F.figures("glare", F.provenance("python -m bench.glare --write", seconds), tables, findings(m), data)


def rows_from(m: dict) -> list[dict]:
    rows = [_row("tab run", "seconds", m["latency"]["seconds"], note=f"{m['latency']['size']} window, 1 thread")]
    for ls, g in m["log"].get("gains", {}).items():
        for f in ("0.01", "0.05"):
            rows.append(_row(f"{ls} {FRACTION_NAMES[f]}", "mIoU_gain", g[f]["mean"], note=f"{g[f]['ahead']}/{g[f]['seeds']} seeds ahead"))
    return rows


def run(quick: bool = False) -> list[dict]:
    torch.set_num_threads(1)
    return rows_from(measure(quick))


def main(argv=None) -> None:
    """--write measures everything once and is the only writer of figures.json and MODEL_CARD.md."""
    from bench import write_measured

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--write", action="store_true", help="write assets/glare/figures.json and MODEL_CARD.md")
    args = parser.parse_args(argv)
    if not args.write:
        for row in run(args.quick):
            print(json.dumps(row))
        return
    figs = write_measured(ASSETS, lambda: measure(quick=False), build_figures)
    print(f"wrote {ASSETS / 'figures.json'} and MODEL_CARD.md ({figs['provenance']['seconds']} s)", *figs["notes"], sep="\n- ")


if __name__ == "__main__":
    main()
