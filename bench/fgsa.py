"""FGSA bench (frozen DINOv2-S/14 + FGSA adapter): the bundled weights measured again on the held-out
scenes (textures and shapes never seen in training), the band lever (S-measure when a frequency
band is suppressed), the unseen-texture examples, latency; and the variant / seed ablation read from
the training log assets/fgsa/dino_log.json (written by training/fgsa/train_dino.py: only training
can measure the other variants and seeds).

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
LOG = "dino_log.json"
LOG_NOTE = "From the training log assets/fgsa/dino_log.json (training/fgsa/train_dino.py), not re-measured here."
LEVER_N = 100  # held-out scenes for the band lever at every site at once
LEVER_SUBSET = 24  # held-out scenes for the per-site band sweep (every band at every site)
LABELS = {"head": "frozen DINOv2-S + head", "conv": "conv branch alone (no FGSAttn)", "fgsa": "full FGSA adapter"}


def _row(case, metric, value, baseline=None, ratio=None, note=""):
    return {"tab": "fgsa", "case": case, "metric": metric, "value": float(value), "baseline": baseline,
            "ratio": None if ratio is None else float(ratio), "note": note}


def _median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def latency(bundle, image: torch.Tensor, repeats: int) -> dict:
    """Milliseconds per tab call at 1 torch thread (median; the machine is shared)."""
    from adapters.fgsa import inference

    before = torch.get_num_threads()
    scales = [1.0, 1.0, 1.0, 0.0, 0.0]
    out = {}
    try:
        for threads in (1,):
            torch.set_num_threads(threads)
            embedded = inference.frozen_embedding(bundle, image)

            def full_run():
                emb = inference.frozen_embedding(bundle, image)
                inference.run_adapter(bundle, image, "c1", scales, embedded=emb)
                inference.run_adapter(bundle, image, "c1", [1.0] * 5, embedded=emb)
                inference.run_frozen(bundle, image)

            out[threads] = {"full_run_ms": _median_ms(full_run, repeats),
                            "rerender_ms": _median_ms(lambda e=embedded: inference.run_adapter(bundle, image, "c1", scales, embedded=e), repeats),
                            "frozen_ms": _median_ms(lambda: inference.run_frozen(bundle, image), repeats)}
    finally:
        torch.set_num_threads(before)
    return out


def _s(probs, masks, pick=None) -> dict:
    from adapters.fgsa.metrics import sod_metrics

    p, g = probs.numpy(), masks[:, 0].numpy()
    if pick is not None:
        p, g = p[pick], g[pick]
    return sod_metrics(p, g)


def by_group(probs, masks, info, key: str) -> dict:
    out = {}
    for value in sorted({i[key] for i in info}):
        pick = [k for k, i in enumerate(info) if i[key] == value]
        out[value] = _s(probs, masks, pick) | {"n": len(pick)}
    return out


@torch.no_grad()
def band_lever(model, images, embedded, masks, info, n_subset: int) -> dict:
    """S-measure with one band set to 0: at every site at once (the scenes given: the first
    `LEVER_N` held-out ones) and at each site alone (the first `n_subset`); plus every band closed
    everywhere."""
    from adapters.fgsa.config import BAND_NAMES
    from adapters.fgsa.inference import site_gains
    from training.fgsa import train_dino as T

    sites = model.site_names()
    out = {"all": {}, "site": {}}
    base = T.predict(model, images, embedded)
    out["none"] = {"all": _s(base, masks)["S"], **{m: v["S"] for m, v in by_group(base, masks, info, "mode").items()}}
    for b, band in enumerate(BAND_NAMES):
        scales = [1.0] * len(BAND_NAMES)
        scales[b] = 0.0
        probs = T.predict(model, images, embedded, gains=site_gains(model, sites[0], scales, all_sites=True))
        out["all"][band] = {"all": _s(probs, masks)["S"], "MAE": _s(probs, masks)["MAE"],
                            **{m: v["S"] for m, v in by_group(probs, masks, info, "mode").items()}}
    closed = T.predict(model, images, embedded, gains=site_gains(model, sites[0], [0.0] * len(BAND_NAMES), all_sites=True))
    out["closed"] = {"all": _s(closed, masks)["S"], **{m: v["S"] for m, v in by_group(closed, masks, info, "mode").items()}}
    sub = slice(0, n_subset)
    sub_base = T.predict(model, images[sub], embedded[sub])
    out["subset_none"] = _s(sub_base, masks[sub])["S"]
    for site in sites:
        out["site"][site] = {}
        for b, band in enumerate(BAND_NAMES):
            scales = [1.0] * len(BAND_NAMES)
            scales[b] = 0.0
            probs = T.predict(model, images[sub], embedded[sub], gains=site_gains(model, site, scales))
            out["site"][site][band] = _s(probs, masks[sub])["S"]
    return out


@torch.no_grad()
def learned_gains(model, images, embedded) -> dict:
    """Mean learned gain of every ring at every site (first 32 held-out scenes) and each gate's mean |gamma|."""
    probes: dict = {}
    model.eval()
    model(images[:32], probes=probes, embedded=embedded[:32])
    out = {}
    for site in model.site_names():
        attn = model.site(site)
        gains = attn.analyse(probes[site])["learned_gain"].mean((0, 1))
        out[site] = {"gain": [round(float(g), 3) for g in gains], "gamma_mean_abs": float(attn.gamma.abs().mean())}
    out["injectors"] = {"first": float(model.first_injector.gamma.abs().mean()),
                        **{f"after group {i + 1}": float(inj.gamma.abs().mean()) for i, inj in enumerate(model.injectors)}}
    return out


def measure(quick: bool = False) -> dict:
    from adapters.fgsa.loading import load_bundled
    from training.fgsa import train_dino as T

    bundle = load_bundled(ASSETS)
    model, head = bundle.adapter, bundle.frozen_head
    images, masks, info = T.dataset(T.HELDOUT)
    if quick:
        images, masks, info = images[:24], masks[:24], info[:24]
    embedded = T.prefix_tokens(model.backbone, images)  # fp32, recomputed from the pixels
    log = json.loads((ASSETS / LOG).read_text())
    out = {"log": log, "n": len(images)}
    probs = T.predict(model, images, embedded)
    head_probs = T.predict(head, images, embedded)
    out["adapter"] = {"all": _s(probs, masks), "mode": by_group(probs, masks, info, "mode"),
                      "texture": by_group(probs, masks, info, "background"), "shape": by_group(probs, masks, info, "shape")}
    out["frozen"] = {"all": _s(head_probs, masks), "mode": by_group(head_probs, masks, info, "mode"),
                     "texture": by_group(head_probs, masks, info, "background"), "shape": by_group(head_probs, masks, info, "shape")}
    picks = T.example_indices(info)
    out["examples"] = [dict(index=k, **info[k], S=_s(probs, masks, [k])["S"], MAE=_s(probs, masks, [k])["MAE"],
                            frozen_S=_s(head_probs, masks, [k])["S"]) for k in picks]
    out["latency"] = latency(bundle, images[:1], 2 if quick else 3)
    if not quick:
        n = LEVER_N
        out["lever"] = band_lever(model, images[:n], embedded[:n], masks[:n], info[:n], LEVER_SUBSET)
        out["gains"] = learned_gains(model, images, embedded)
    return out


def _r(v, n=4):
    return round(float(v), n)


def summarise_runs(log: dict) -> list[dict]:
    """One row per variant: mean ± std over its seeds (the training log's held-out figures)."""
    rows = []
    for variant in ("head", "conv", "fgsa"):
        runs = sorted((r for r in log["runs"] if r["variant"] == variant), key=lambda r: r["seed"])
        if not runs:
            continue

        def cell(path, runs=runs):
            values = [r["metrics"] for r in runs]
            for key in path:
                values = [v[key] for v in values]
            mean = float(np.mean(values))
            return f"{mean:.4f} ± {float(np.std(values)):.4f}" if len(values) > 1 else f"{mean:.4f}"

        rows.append(dict(variant=variant, label=LABELS[variant], seeds=[r["seed"] for r in runs],
                         per_seed_S=[_r(r["metrics"]["all"]["S"]) for r in runs], trainable=runs[0]["trainable_params"],
                         S=cell(("all", "S")), E=cell(("all", "E")), wF=cell(("all", "wF")), MAE=cell(("all", "MAE")),
                         scale_S=cell(("scale", "S")), texture_S=cell(("texture", "S")),
                         cpu_minutes=float(np.mean([r["cpu_seconds"] for r in runs])) / 60, steps=runs[0]["steps"]))
    return rows


def _mean(cell: str) -> float:
    return float(str(cell).split(" ")[0])


def findings(m: dict, rows: list[dict]) -> list[str]:
    by = {r["variant"]: r for r in rows}
    out = []
    if {"fgsa", "conv", "head"} <= set(by):
        f, c, h = (_mean(by[v]["S"]) for v in ("fgsa", "conv", "head"))
        seeds = "; ".join(f"{v} seeds {', '.join(str(s) for s in by[v]['seeds'])}" for v in ("fgsa", "conv", "head"))
        order = "full > conv alone > frozen+head" if f > c > h else "NOT full > conv alone > frozen+head"
        out.append(f"Ablation on the {m['log']['heldout']['n']} held-out scenes (training log; {seeds}; means over seeds): full adapter S "
                   f"{f:.3f}, conv branch alone {c:.3f}, frozen DINOv2-S + head {h:.3f}: {order}. FGSAttn's own gain over the "
                   f"conv branch: {f - c:+.3f} S (target ≥ +0.02: {'met' if f - c >= 0.02 else 'not met'}); the adapter's gain "
                   f"over frozen+head: {f - h:+.3f}.")
        few = [v for v in ("fgsa", "conv", "head") if len(by[v]["seeds"]) < 3]
        if few:
            out.append("Fewer than 3 seeds (CPU time) for: " + ", ".join(f"{LABELS[v]} ({len(by[v]['seeds'])})" for v in few)
                       + "; per-seed S: " + "; ".join(f"{v} {', '.join(f'{x:.3f}' for x in by[v]['per_seed_S'])}"
                                                      for v in ("fgsa", "conv", "head"))
                       + ". Differences smaller than the seed-to-seed spread are not established.")
    toy = m["log"].get("toy")
    if toy and "fgsa" in by:
        out.append(f"Against the previous bundled model (TinyViT trained here at 64x64) on the same held-out scenes: S "
                   f"{toy['adapter']['all']['S']:.3f} (its frozen + head {toy['frozen_head']['all']['S']:.3f}) vs "
                   f"{_mean(by['fgsa']['S']):.3f} for FGSA on DINOv2-S.")
    lever = m.get("lever")
    if lever:
        drops = {band: lever["none"]["all"] - v["all"] for band, v in lever["all"].items()}
        band = max(drops, key=drops.get)
        out.append(f"The band lever: suppressing the '{band}' band at every FGSAttn site lowers S on the first {LEVER_N} "
                   f"held-out scenes from "
                   f"{lever['none']['all']:.3f} to {lever['all'][band]['all']:.3f} ({-drops[band]:+.3f}; target ≤ −0.1: "
                   f"{'met' if drops[band] >= 0.1 else 'not met'}); on scale-mode scenes {lever['none'].get('scale', float('nan')):.3f} → "
                   f"{lever['all'][band].get('scale', float('nan')):.3f}. Closing every band everywhere gives {lever['closed']['all']:.3f}.")
        site_drops = sorted(((f"{s}:{b}", lever["subset_none"] - v) for s, bands in lever["site"].items() for b, v in bands.items()),
                            key=lambda kv: -kv[1])[:4]
        out.append(f"Largest single-site drops (first {LEVER_SUBSET} held-out scenes, S {lever['subset_none']:.3f} unedited): "
                   + ", ".join(f"{k} ({-v:+.3f})" for k, v in site_drops) + ".")
    ex = m["examples"]
    best = max(ex, key=lambda e: e["S"])
    out.append("Unseen-texture examples (first scale-mode held-out scene of each held-out photograph; fixed rule): "
               + ", ".join(f"{e['background']}/{e['shape']} S {e['S']:.3f} (frozen+head {e['frozen_S']:.3f})" for e in ex)
               + f". Best: {best['background']} {best['S']:.3f} (target ≥ 0.75: {'met' if best['S'] >= 0.75 else 'not met'}).")
    tex = m["adapter"]["texture"]
    out.append("Per held-out photograph (bundled adapter): " + ", ".join(f"{k} S {v['S']:.3f} (n={v['n']})" for k, v in tex.items()) + ".")
    return out


def build_figures(m: dict, seconds: float) -> dict:
    from adapters.common import figures as F
    from adapters.fgsa.loading import header_param_counts
    from adapters.fgsa.scenes import HELDOUT_SHAPES, HELDOUT_TEXTURES, TRAIN_SHAPES, TRAIN_TEXTURES

    log = m["log"]
    rows = summarise_runs(log)
    tables = [F.table("ablation", f"Ablation on {log['heldout']['n']} held-out scenes (unseen photographs and shapes; "
                      "pysodmetrics; mean ± std over the seeds listed)",
                      ["variant", "seeds", "S per seed", "trainable params", "S ↑", "E ↑", "wF ↑", "MAE ↓", "scale-mode S", "texture-mode S",
                       "CPU min / run"],
                      [[r["label"], ", ".join(map(str, r["seeds"])), ", ".join(f"{s:.3f}" for s in r["per_seed_S"]), r["trainable"], r["S"],
                        r["E"], r["wF"], r["MAE"], r["scale_S"], r["texture_S"], f"{r['cpu_minutes']:.1f}"] for r in rows], LOG_NOTE)]
    if log.get("toy"):
        toy_rows = [[label, _r(v["all"]["S"]), _r(v["all"]["E"]), _r(v["all"]["wF"]), _r(v["all"]["MAE"]), _r(v["scale"]["S"]),
                     _r(v["texture"]["S"])] for label, v in (("previous model: TinyViT 64x64 + FGSA", log["toy"]["adapter"]),
                                                             ("previous model: TinyViT 64x64 frozen + head", log["toy"]["frozen_head"]))]
        tables.append(F.table("previous", "The previous bundled model (a 472k-parameter ViT trained here at 64x64) on the same held-out scenes",
                              ["model", "S ↑", "E ↑", "wF ↑", "MAE ↓", "scale-mode S", "texture-mode S"], toy_rows,
                              "Images area-resized to 64x64, masks upsampled to 224x224, as its tab did. " + LOG_NOTE))
    bundled_rows = []
    for name, key in (("full FGSA adapter (bundled)", "adapter"), ("frozen DINOv2-S + head (bundled)", "frozen")):
        v = m[key]["all"]
        bundled_rows.append([name, "all", m["n"], _r(v["S"]), _r(v["E"]), _r(v["wF"]), _r(v["MAE"])])
        for group in ("mode", "texture", "shape"):
            for value, g in m[key][group].items():
                label = {"mode": "mode", "texture": "background photograph", "shape": "shape"}[group]
                bundled_rows.append([name, f"{label}: {value}", g["n"], _r(g["S"]), _r(g["E"]), _r(g["wF"]), _r(g["MAE"])])
    tables.append(F.table("bundled", f"The bundled weights (seed {log['bundled_seed']}) on the held-out scenes, measured by this bench",
                          ["model", "scenes", "n", "S ↑", "E ↑", "wF ↑", "MAE ↓"], bundled_rows,
                          "The frozen prefix (blocks 0-7) is recomputed here in fp32 from the pixels; training used an fp16 cache of it."))
    lever = m["lever"]
    lever_rows = [["(no edit)", "every site", _r(lever["none"]["all"], 3), _r(lever["none"].get("scale", float("nan")), 3),
                   _r(lever["none"].get("texture", float("nan")), 3)]]
    lever_rows += [[f"{band} = 0", "every site", _r(v["all"], 3), _r(v.get("scale", float("nan")), 3), _r(v.get("texture", float("nan")), 3)]
                   for band, v in lever["all"].items()]
    lever_rows.append(["every band = 0", "every site", _r(lever["closed"]["all"], 3), _r(lever["closed"].get("scale", float("nan")), 3),
                       _r(lever["closed"].get("texture", float("nan")), 3)])
    tables.append(F.table("band_lever", f"The band lever: S-measure on the first {LEVER_N} held-out scenes with one frequency band "
                          "suppressed at every FGSAttn site",
                          ["edit", "where", "S (all)", "S (scale mode)", "S (texture mode)"], lever_rows))
    site_rows = [[site, _r(lever["subset_none"], 3)] + [_r(bands[b], 3) for b in bands] for site, bands in lever["site"].items()]
    from adapters.fgsa.config import BAND_NAMES

    tables.append(F.table("band_lever_sites", f"One band suppressed at one site (first {LEVER_SUBSET} held-out scenes, S-measure)",
                          ["site", "no edit"] + [f"{b} = 0" for b in BAND_NAMES], site_rows))
    gain_rows = [[site, _r(v["gamma_mean_abs"], 3), ", ".join(f"{g:.2f}" for g in v["gain"])]
                 for site, v in m["gains"].items() if site != "injectors"]
    gain_rows += [[f"injector ({k})", _r(v, 3), ""] for k, v in m["gains"]["injectors"].items()]
    tables.append(F.table("ring_gains", "Learned ring gains (mean over 32 held-out scenes) and gate sizes",
                          ["site", "gate mean |gamma|", "learned gain per ring (0 = DC)"], gain_rows))
    tables.append(F.table("examples", "The tab's examples: held-out scenes on photographs never seen in training",
                          ["example", "mode", "background", "object", "shape", "adapter S", "adapter MAE", "frozen+head S"],
                          [[f"{i:02d}", e["mode"], e["background"], e["obj"], e["shape"], _r(e["S"], 3), _r(e["MAE"], 3), _r(e["frozen_S"], 3)]
                           for i, e in enumerate(m["examples"])]))
    tables.append(F.table("latency", "Latency on this machine (224x224, median ms)",
                          ["torch threads", "full run (prefix, adapter twice, frozen baseline)", "band edit (adapter from cached prefix)",
                           "frozen backbone + head", "edit / full run"],
                          [[str(t), round(v["full_run_ms"], 1), round(v["rerender_ms"], 1), round(v["frozen_ms"], 1),
                            round(v["rerender_ms"] / v["full_run_ms"], 3)] for t, v in m["latency"].items()]))
    adapter_params, frozen_params = header_param_counts(ASSETS)
    runs = log["runs"]
    data = {
        "training": {"seed": log["bundled_seed"], "steps": log["steps"], "batch": log["batch"], "lr": log["lr"], "gate_lr": log["gate_lr"],
                     "train_scenes": log["train"]["n"], "heldout_scenes": log["heldout"]["n"],
                     "cache_cpu_minutes": round(sum(log["cache_cpu_seconds"].values()) / 60, 1),
                     "train_cpu_minutes": round(sum(r["cpu_seconds"] for r in runs) / 60, 1), "runs": len(runs),
                     "start_block": log["backbone"]["start"]},
        "textures": {"train": ", ".join(TRAIN_TEXTURES), "heldout": ", ".join(HELDOUT_TEXTURES)},
        "shapes": {"train": ", ".join(TRAIN_SHAPES), "heldout": ", ".join(HELDOUT_SHAPES)},
        "params": {"adapter": adapter_params, "frozen": frozen_params},
        "bundled": {"adapter": m["adapter"]["all"], "frozen": m["frozen"]["all"]},
        "lever": {"none": lever["none"]["all"], **{b: v["all"] for b, v in lever["all"].items()}, "closed": lever["closed"]["all"]},
        "examples": m["examples"],
        "latency": {str(k): v for k, v in m["latency"].items()},
    }
    return F.figures("fgsa", F.provenance("python -m bench.fgsa --write", seconds), tables, findings(m, rows), data)


def rows_from(m: dict) -> list[dict]:
    rows = []
    for threads, t in m["latency"].items():
        rows.append(_row(f"threads={threads}", "rerender_ms", t["rerender_ms"], "full run", t["rerender_ms"] / t["full_run_ms"],
                         "band edit: the adapter path from the cached frozen prefix (blocks 0-7)"))
        rows.append(_row(f"threads={threads}", "full_run_ms", t["full_run_ms"], None, None, "224x224: prefix, adapter twice, frozen baseline"))
    for name in ("adapter", "frozen"):
        v = m[name]["all"]
        rows.append(_row(f"bundled {name}", "S_measure_heldout", v["S"], note=f"{m['n']} held-out scenes, MAE {v['MAE']:.3f}"))
    for r in summarise_runs(m["log"]):
        rows.append(_row(r["variant"], "S_measure_heldout_log", _mean(r["S"]), note=f"seeds {r['seeds']} (training log)"))
    return rows


def run(quick: bool = False) -> list[dict]:
    return rows_from(measure(quick))


def write() -> dict:
    from adapters.common import figures as F

    start = time.perf_counter()
    torch.set_num_threads(1)
    m = measure(quick=False)
    figs = build_figures(m, time.perf_counter() - start)
    F.write(ASSETS, figs)
    return figs


def rows_from_figures(figs: dict) -> list[dict]:
    d = figs["data"]
    rows = [_row(f"bundled {k}", f"heldout_{metric}", d["bundled"][k][metric]) for k in ("adapter", "frozen") for metric in ("S", "MAE")]
    rows += [_row(f"{band} = 0 everywhere", "heldout_S", v, "no edit", v / d["lever"]["none"]) for band, v in d["lever"].items() if band != "none"]
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--write", action="store_true", help="write assets/fgsa/figures.json and MODEL_CARD.md")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.write:
        figs = write()
        print(f"wrote {ASSETS / 'figures.json'} and MODEL_CARD.md ({figs['provenance']['seconds']} s)")
        for note in figs["notes"]:
            print("-", note)
        rows = rows_from_figures(figs)
    else:
        rows = run(quick=args.quick)
    for row in rows:
        ratio = "" if row["ratio"] is None else f" ratio {row['ratio']:.3f} vs {row['baseline']}"
        print(f"{row['case']:>22} {row['metric']:<24} {row['value']:10.3f}{ratio}  {row['note']}")


if __name__ == "__main__":
    main()
