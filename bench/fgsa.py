"""FGSA bench: re-render latency after a ring edit vs a full run, adapter vs frozen-baseline cost,
1 vs 2 torch threads; the bundled model's held-out figures, band reliance, band suppression and
learned ring gains, measured again; and the multi-seed ablation and investigation runs read from
the training log assets/fgsa/ablation.json (written by training/fgsa/card.py: only training can
measure them).

    python -m bench.fgsa [--quick]      print rows (bench.run_all reads `run`)
    python -m bench.fgsa --write        measure everything, write assets/fgsa/figures.json and render
                                        MODEL_CARD.md from MODEL_CARD.template.md
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

ASSETS = Path(__file__).resolve().parent.parent / "assets" / "fgsa"
LOG = "ablation.json"
LOG_NOTE = "From the training log assets/fgsa/ablation.json (training/fgsa/card.py), not re-measured here."


def _row(case, metric, value, baseline=None, ratio=None, note=""):
    return {"tab": "fgsa", "case": case, "metric": metric, "value": float(value), "baseline": baseline,
            "ratio": None if ratio is None else float(ratio), "note": note}


def _median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def latency(bundle, repeats: int) -> dict:
    """Milliseconds per call at 1 and 2 torch threads (median of `repeats`)."""
    from adapters.fgsa import inference
    from adapters.fgsa.data import make_dataset

    images, _, _ = make_dataset(2000, 2, ("spectral",), bundle.image_size)
    image = torch.from_numpy(images[:1])
    before = torch.get_num_threads()
    out = {}
    scales = [1.0, 1.0, 1.0, 0.0, 0.0]
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            embedded = inference.frozen_embedding(bundle, image)

            def full_run():
                emb = inference.frozen_embedding(bundle, image)
                inference.run_adapter(bundle, image, "c1", scales, embedded=emb)
                inference.run_adapter(bundle, image, "c1", [1.0] * 5, embedded=emb)
                inference.run_frozen(bundle, image)

            def edit(embedded=embedded):
                inference.run_adapter(bundle, image, "c1", scales, embedded=embedded)

            out[threads] = {"full_run_ms": _median_ms(full_run, repeats), "rerender_ms": _median_ms(edit, repeats),
                            "frozen_ms": _median_ms(lambda: inference.run_frozen(bundle, image), repeats)}
    finally:
        torch.set_num_threads(before)
    return out


def measure(quick: bool = False) -> dict:
    """Everything the figures need: measured on the bundled model now, plus the training log."""
    from adapters.fgsa.loading import load_bundled
    from training.fgsa import card as C
    from training.fgsa import train as T

    bundle = load_bundled(ASSETS)
    log = json.loads((ASSETS / LOG).read_text())
    out = {"log": log, "latency": latency(bundle, 5 if quick else 20)}
    images, masks, modes = T.dataset(T.TEST)
    out["adapter_metrics"] = T.evaluate(bundle.adapter, images, masks, modes)
    out["frozen_metrics"] = T.evaluate(bundle.frozen_head, images, masks, modes) if bundle.frozen_head is not None else None
    if not quick:
        model = bundle.adapter
        out["band_suppression"] = C.band_suppression(model, images, masks, modes)
        out["ring_gains"] = C.learned_ring_gains(model, images, modes)
        out["gates"] = C.gate_means(model)
    return out


def rows_from(m: dict) -> list[dict]:
    """The rows bench.run_all prints (same cases and metrics as before the figures file)."""
    rows = []
    for threads, t in m["latency"].items():
        rows.append(_row(f"threads={threads}", "rerender_ms", t["rerender_ms"], "full run (both models, learned + edited)",
                         t["rerender_ms"] / t["full_run_ms"], "ring edit re-runs the adapter path from the cached frozen patch embedding"))
        rows.append(_row(f"threads={threads}", "full_run_ms", t["full_run_ms"], None, None, "64x64, adapter twice + frozen baseline once"))
        rows.append(_row(f"threads={threads}", "adapter_vs_frozen_forward", t["rerender_ms"], "frozen backbone + head forward",
                         t["rerender_ms"] / t["frozen_ms"], f"frozen+head {t['frozen_ms']:.1f} ms"))
    summary = m["log"]["summary"]
    base_s = _mean(next(r for r in summary if r["variant"] == "head")["S"])
    for r in summary:
        s = _mean(r["S"])
        rows.append(_row(r["variant"], "S_measure_heldout", s, "frozen backbone + head", s / base_s,
                         f"mean over seeds {r['seeds']}: {r['S']}; {r['trainable']:,} trainable; {r['cpu_minutes']:.1f} CPU min/run (training log)"))
    reliance = _reliance(m)
    s_none = statistics.mean(r["none"]["spectral"] for r in reliance.values())
    s_known = statistics.mean(r["known_bands_off"]["spectral"] for r in reliance.values())
    mae_none = statistics.mean(r["spectral_mae"]["none"] for r in reliance.values())
    mae_known = statistics.mean(r["spectral_mae"]["known_bands_off"] for r in reliance.values())
    rows.append(_row("known bands off", "spectral_S", s_known, "no edit", s_known / s_none,
                     f"object+background bands zeroed at every FGSAttn site; no edit {s_none:.3f}; seeds {list(reliance)}"))
    rows.append(_row("known bands off", "spectral_MAE", mae_known, "no edit", mae_known / mae_none,
                     f"no edit {mae_none:.3f}; seeds {list(reliance)}"))
    a = m["adapter_metrics"]["all"]["S"]
    logged = json.loads((ASSETS / "adapter.json").read_text())["run"]["metrics"]["all"]["S"]
    rows.append(_row("bundled fgsa", "S_measure_heldout_measured", a, "the same run's figure in its training log", a / logged,
                     "the bundled adapter on the held-out scenes, measured now"))
    return rows


def _mean(cell: str) -> float:
    return float(str(cell).split(" ")[0])


def _reliance(m: dict) -> dict:
    """Per-seed band reliance: the bundled seed measured now (when measured), the others from the log."""
    reliance = dict(m["log"]["reliance"])
    sup = m.get("band_suppression")
    if sup is not None:
        reliance[str(m["log"]["bundled_seed"])] = {k: sup[k] for k in ("none", "known_bands_off", "all_closed", "spectral_mae")}
    return reliance


def run(quick: bool = False) -> list[dict]:
    return rows_from(measure(quick))


# --- figures.json and the model card --------------------------------------------------------------


def _ablation_table(id, title, rows, prefix="", full=None, note=""):
    from adapters.common import figures as F

    full = full or next((r["trainable"] for r in rows if r["variant"] == "full"), None)
    return F.table(id, title, ["variant", "trainable params", "% of full FT", "S ↑", "E ↑", "wF ↑", "MAE ↓", "CPU min / run"],
                   [[r["label"], r["trainable"], f"{100 * r['trainable'] / full:.1f}%" if full else "n/a", r[prefix + "S"],
                     r[prefix + "E"], r[prefix + "wF"], r[prefix + "MAE"], f"{r['cpu_minutes']:.1f}"] for r in rows], note)


def build_figures(m: dict, seconds: float) -> dict:
    from adapters.common import figures as F
    from adapters.fgsa.loading import header_param_counts
    from training.fgsa import card as C
    from training.fgsa import train as T

    log = m["log"]
    seed = log["bundled_seed"]
    rows = log["summary"]
    seeds = ", ".join(str(s) for s in rows[0]["seeds"])
    sup, reliance = m["band_suppression"], _reliance(m)
    tables = [
        _ablation_table("ablation", f"Ablation (held-out synthetic scenes, mean ± std over seeds {seeds}; pysodmetrics)", rows,
                        note=LOG_NOTE),
        _ablation_table("ablation_camouflage", "Camouflage-mode scenes only", rows, "camouflage_", note=LOG_NOTE),
        _ablation_table("ablation_spectral", "Spectral-mode scenes only", rows, "spectral_", note=LOG_NOTE),
    ]
    bundled_rows = []
    for name, metrics in (("full FGSA adapter (bundled)", m["adapter_metrics"]), ("frozen backbone + head (bundled)", m["frozen_metrics"])):
        if metrics is None:
            continue
        for mode in ("all", "camouflage", "spectral"):
            v = metrics[mode]
            bundled_rows.append([name, mode, round(v["S"], 4), round(v["E"], 4), round(v["wF"], 4), round(v["MAE"], 4)])
    tables.append(F.table("bundled", f"The bundled weights (seed {seed}) on the {T.TEST['n']} held-out scenes, measured by this bench",
                          ["model", "scenes", "S ↑", "E ↑", "wF ↑", "MAE ↓"], bundled_rows))

    def rel_row(name, rel, source):
        return [name, round(rel["none"]["camouflage"], 3), round(rel["none"]["spectral"], 3), round(rel["known_bands_off"]["spectral"], 3),
                round(rel["all_closed"]["spectral"], 3), round(rel["all_closed"]["camouflage"], 3), source]

    rel_rows = [rel_row(f"fgsa (bundled design) seed {s}", rel, "measured now" if str(s) == str(seed) else "training log")
                for s, rel in reliance.items()]
    for tag, extra in log["extra"].items():
        rel_rows += [rel_row(f"fgsa{tag} seed {s}", rel, "training log") for s, rel in extra["reliance"].items()]
    tables.append(F.table("reliance", "How much does the model rely on FGSAttn? (S-measure on held-out scenes)",
                          ["model", "camouflage S", "spectral S", "spectral S, known bands off", "spectral S, all closed",
                           "camouflage S, all closed", "source"], rel_rows,
                          "The bundled seed is measured again from the shipped weights; the other seeds and the investigation "
                          "runs exist only as training runs and are read from the training log."))
    full = next((r["trainable"] for r in rows if r["variant"] == "full"), None)
    inv_rows = []
    for tag, extra in log["extra"].items():
        for r in extra["rows"]:
            inv_rows.append([f"fgsa{tag}", json.dumps(extra["settings"], sort_keys=True), len(r["seeds"]), r["trainable"],
                             f"{100 * r['trainable'] / full:.1f}%" if full else "n/a", r["S"], r["E"], r["wF"], r["MAE"], f"{r['cpu_minutes']:.1f}"])
    tables.append(F.table("investigations", "Investigation runs (everything else as the bundled design)",
                          ["run", "settings", "seeds", "trainable params", "% of full FT", "S ↑", "E ↑", "wF ↑", "MAE ↓", "CPU min / run"],
                          inv_rows, LOG_NOTE + " `fgsa-gate-lr-1e-3` predates the separate gate parameter group: its gates also had "
                          "weight decay 0.01, so re-running it with today's script differs slightly."))
    sup_rows = [["(no edit)", round(sup["none"]["camouflage"], 3), round(sup["none"]["spectral"], 3)]]
    sup_rows += [[k, round(v["camouflage"], 3), round(v["spectral"], 3)] for k, v in sup.items() if k not in ("none", "spectral_mae")]
    tables.append(F.table("band_suppression", f"Is the frequency lever real? (bundled seed {seed}, S-measure when one band is set to 0)",
                          ["site:band", "camouflage S", "spectral S"], sup_rows))
    gain_rows = [[site, round(info["gamma_mean_abs"], 3), ", ".join(f"{g:.2f}" for g in info["gain"]), str(info["object_rings"]),
                  str(info["background_rings"])] for site, info in m["ring_gains"].items()]
    tables.append(F.table("ring_gains", f"Learned ring gains (seed {seed}, mean over spectral test scenes)",
                          ["site", "gate mean abs", "learned gain per ring (0 = DC)", "rings of the object band", "rings of the background band"],
                          gain_rows))
    lat_rows = [[f"{threads}", round(t["full_run_ms"], 1), round(t["rerender_ms"], 1), round(t["frozen_ms"], 1),
                 round(t["rerender_ms"] / t["full_run_ms"], 3)] for threads, t in m["latency"].items()]
    tables.append(F.table("latency", "Latency on this machine (64x64, median ms)",
                          ["torch threads", "full run (adapter twice + frozen baseline)", "band edit (adapter from cached embedding)",
                           "frozen backbone + head", "edit / full run"], lat_rows))

    # the findings sentences: the training log with the bundled seed's measurements replaced by today's
    summary = dict(log)
    summary.update(band_suppression=sup, ring_gains=m["ring_gains"], reliance=reliance)
    gates = {site: list(values) for site, values in log["gates"].items()}
    for site, value in m["gates"].items():
        if site in gates and gates[site]:
            gates[site][list(log["reliance"]).index(str(seed)) if str(seed) in log["reliance"] else 0] = value
    summary["gates"] = gates
    notes = [line[2:] if line.startswith("- ") else line for line in C.findings(summary)]

    adapter_params, frozen_params = header_param_counts(ASSETS)
    total_cpu = log["backbone_pretrain_cpu_seconds"] / 60 + sum(r["cpu_minutes"] * len(r["seeds"]) for r in rows)
    for extra in log["extra"].values():
        total_cpu += sum(r["cpu_minutes"] * len(r["seeds"]) for r in extra["rows"])
    data = {
        "training": {"total_cpu_minutes": round(total_cpu, 1), "pretrain_cpu_minutes": round(log["backbone_pretrain_cpu_seconds"] / 60, 1),
                     "pretrain_steps": log["backbone_pretrain_steps"], "pretrain_batch": T.BACKBONE_BATCH,
                     "train_scenes": log["data"]["train"]["n"], "test_scenes": log["data"]["test"]["n"], "steps": log["steps"],
                     "batch": log["batch"], "seed": seed, "fgsa_mode_text": C.MODE_TEXT[log["fgsa_mode"]],
                     "ring_init_text": "at 1 on every ring" if log["ring_init"] == "ones" else "from a default Linear init"},
        "bands": {"object": f"{log['data']['object_band'][0]}–{log['data']['object_band'][1]}",
                  "background": f"{log['data']['background_band'][0]}–{log['data']['background_band'][1]}"},
        "params": {"adapter": adapter_params, "frozen": frozen_params},
        "bundled": {"adapter": m["adapter_metrics"], "frozen": m["frozen_metrics"]},
        "reliance_mean": {"spectral_S_none": float(np.mean([r["none"]["spectral"] for r in reliance.values()])),
                          "spectral_S_known_bands_off": float(np.mean([r["known_bands_off"]["spectral"] for r in reliance.values()])),
                          "spectral_MAE_none": float(np.mean([r["spectral_mae"]["none"] for r in reliance.values()])),
                          "spectral_MAE_known_bands_off": float(np.mean([r["spectral_mae"]["known_bands_off"] for r in reliance.values()]))},
        "latency": {str(k): v for k, v in m["latency"].items()},
        "example_site": log["example_site"],
    }
    return F.figures("fgsa", F.provenance("python -m bench.fgsa --write", seconds), tables, notes, data)


def write() -> dict:
    from adapters.common import figures as F

    start = time.perf_counter()
    torch.set_num_threads(1)
    m = measure(quick=False)
    figs = build_figures(m, time.perf_counter() - start)
    F.write(ASSETS, figs)
    return figs


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--write", action="store_true", help="write assets/fgsa/figures.json and MODEL_CARD.md")
    args = parser.parse_args(argv)
    if args.write:
        figs = write()
        print(f"wrote {ASSETS / 'figures.json'} and MODEL_CARD.md ({figs['provenance']['seconds']} s)")
        rows = rows_from_figures(figs)
    else:
        rows = run(quick=args.quick)
    for row in rows:
        ratio = "" if row["ratio"] is None else f" ratio {row['ratio']:.3f} vs {row['baseline']}"
        print(f"{row['case']:>16} {row['metric']:<28} {row['value']:10.3f}{ratio}  {row['note']}")


def rows_from_figures(figs: dict) -> list[dict]:
    d = figs["data"]
    return [_row("bundled fgsa", f"{mode}_{metric}", d["bundled"][model][mode][metric], note=model)
            for model in ("adapter", "frozen") if d["bundled"][model] for mode in ("all", "camouflage", "spectral")
            for metric in ("S", "MAE")] + \
           [_row("known bands off", "spectral_S", d["reliance_mean"]["spectral_S_known_bands_off"], "no edit",
                 d["reliance_mean"]["spectral_S_known_bands_off"] / d["reliance_mean"]["spectral_S_none"])]


if __name__ == "__main__":
    main()
