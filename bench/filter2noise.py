"""Filter2Noise bench: PSNR, SSIM and CPU seconds against every baseline, on simulated low-dose CT
(the Shepp-Logan phantom and pydicom's CT_small, two doses each), plus speed at 512x512 and the
region-edit latency. One torch thread throughout (the machine is shared).

The official code's defaults are measured when ``F2N_OFFICIAL_DIR`` names a checkout of
github.com/sypsyp97/Filter2Noise outside this repository (its licence is CC BY-NC: it is imported
from there and called, never copied here). ``F2N_OFFICIAL_CASES`` limits which cases it runs on
(comma-separated case names; default: the two 128x128 CT_small cases, as it takes minutes per case).

    python -m bench.filter2noise [--quick] [--write]

``--write`` (full runs only) writes ``assets/filter2noise/figures.json`` and renders
``MODEL_CARD.md`` from ``MODEL_CARD.template.md``; it is the only writer of either.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch

from adapters.common import figures as figs
from adapters.filter2noise import baselines as base
from adapters.filter2noise import modeling as f2n
from adapters.filter2noise.data import psnr_ssim, shepp_logan_hu, simulate_low_dose
from adapters.filter2noise.io import load_slice, pydicom_test_file

TAB = "filter2noise"
ASSETS = Path(__file__).resolve().parent.parent / "assets" / TAB


def cases(quick: bool) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    ref = np.load(ASSETS / "phantom_reference.npy")
    for dose in ("1e4",) if quick else ("1e4", "2.5e3"):
        out[f"phantom256_I0={dose}"] = (np.load(ASSETS / f"phantom_I0_{dose}.npy"), ref)
    ct = load_slice(pydicom_test_file("CT_small.dcm"))
    for photons in (5e3,) if quick else (2e4, 5e3):
        noisy, reference = simulate_low_dose(ct.hu, photons, pixel_mm=ct.spacing_mm[1], seed=0)
        out[f"CT_small128_I0={photons:g}"] = (noisy, reference)
    return out


def official_module(directory: str):
    """Import the official script from its own checkout; its plotting/logging imports are stubbed."""
    for name in ("matplotlib", "matplotlib.pyplot"):
        sys.modules.setdefault(name, types.ModuleType(name))
    if "loguru" not in sys.modules:
        loguru = types.ModuleType("loguru")
        loguru.logger = types.SimpleNamespace(info=lambda *a, **k: None, remove=lambda *a, **k: None,
                                              add=lambda *a, **k: None, warning=lambda *a, **k: None)
        sys.modules["loguru"] = loguru
    spec = importlib.util.spec_from_file_location("f2n_official", Path(directory) / "filter2noise.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_official(module, noisy_hu: np.ndarray) -> np.ndarray:
    """The official defaults: 2 stages, patch 8, AdamW 1e-3 / wd 0.01, OneCycle, 500 iterations, lambda 400."""
    module.setup_environment(77)
    x = torch.as_tensor(f2n.hu_to_unit(noisy_hu.astype(np.float32)))[None, None]
    model = module.DenoisingPipeline(num_stages=2, patch_size=8)
    model(x)  # materialise its lazy layers before the optimiser sees the parameters
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-3, epochs=500, steps_per_epoch=1)
    module.train_model(model, x, module.LossFunction("cpu", lambda_=400), optimizer, scheduler, epochs=500)
    model.eval()
    with torch.no_grad():
        out = model(x)
    return f2n.unit_to_hu(out[0, 0].numpy())


def _row(case, metric, value, baseline=None, ratio=None, note=""):
    return {"tab": TAB, "case": case, "metric": metric, "value": float(value), "baseline": baseline,
            "ratio": None if ratio is None else float(ratio), "note": note}


# structured results of the last run, for --write (the rows stay what bench.run_all prints)
RESULTS: dict = {}


def quality_rows(quick: bool) -> list[dict]:
    rows = []
    RESULTS["quality"] = quality = {}
    RESULTS["zs_iterations"] = 100 if quick else 300
    official_dir = os.environ.get("F2N_OFFICIAL_DIR")
    official = official_module(official_dir) if official_dir else None
    wanted = os.environ.get("F2N_OFFICIAL_CASES", "CT_small128_I0=20000,CT_small128_I0=5000").split(",")
    for case, (noisy, reference) in cases(quick).items():
        def metric(a, r):
            return psnr_ssim(a, r)[0]

        methods = {
            "noisy input": lambda n, r: (n, {}),
            "F2N (ours)": lambda n, r: (f2n.apply_model(f2n.fit(n, f2n.FitSettings()).model, n).denoised_hu, {}),
            "bilateral sigma-from-noise": lambda n, r: base.bilateral_from_noise(n),
            "bilateral oracle grid": lambda n, r: base.oracle_bilateral(n, r, metric),
            "BM3D sigma-est": lambda n, r: base.bm3d_estimated(n),
            "ZS-N2N": lambda n, r: base.zs_n2n(n, 100 if quick else 300),
        }
        if official is not None and case in wanted and not quick:
            methods["official F2N defaults"] = lambda n, r: (run_official(official, n), {})
        scores = {}
        for name, fn in methods.items():
            start = time.perf_counter()
            image, params = fn(noisy, reference)
            seconds = time.perf_counter() - start
            p, s = psnr_ssim(image, reference)
            scores[name] = (p, s, seconds)
            note = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
            rows.append(_row(case, f"PSNR dB [{name}]", p, note="data range 4095 HU on -1024..3071"))
            rows.append(_row(case, f"SSIM [{name}]", s))
            if name != "noisy input":
                rows.append(_row(case, f"CPU s [{name}]", seconds, note=note))
        quality[case] = {name: {"psnr": p, "ssim": s, "seconds": sec} for name, (p, s, sec) in scores.items()}
        ours = scores["F2N (ours)"]
        for name, (p, _ssim, seconds) in scores.items():
            if name in ("F2N (ours)", "noisy input"):
                continue
            rows.append(_row(case, "PSNR gain dB (ours - baseline)", ours[0] - p, baseline=name))
            rows.append(_row(case, "CPU time ratio (ours / baseline)", ours[2] / seconds, baseline=name, ratio=ours[2] / seconds))
    return rows


def speed_rows(quick: bool) -> list[dict]:
    noisy, reference = simulate_low_dose(shepp_logan_hu(512), 1e4, pixel_mm=0.5, seed=3)
    start = time.perf_counter()
    fit = f2n.fit(noisy, f2n.FitSettings())
    state = f2n.apply_model(fit.model, noisy)
    total = time.perf_counter() - start
    p, _ = psnr_ssim(state.denoised_hu, reference)
    RESULTS["speed"] = speed = {"seconds_512": total, "psnr_512": p, "psnr_512_noisy": psnr_ssim(noisy, reference)[0],
                                "iterations": f2n.FitSettings().iterations}
    rows = [_row("phantom512_I0=1e4", "F2N seconds at 512x512 (train + apply)", total,
                 note=f"goal < 30 s; {f2n.FitSettings().iterations} iterations; PSNR {p:.2f} dB "
                      f"(noisy {psnr_ssim(noisy, reference)[0]:.2f})")]
    boxes = {"128x128 box": (slice(192, 320), slice(192, 320)), "whole 512x512 slice": (slice(None), slice(None))}
    for label, (ys, xs) in boxes.items():
        region = np.zeros(noisy.shape, bool)
        region[ys, xs] = True
        times = []
        for factor in (1.5, 2.0, 0.5):
            start = time.perf_counter()
            f2n.set_region_factor(state, region, factor)
            times.append(time.perf_counter() - start)
        rows.append(_row("phantom512_I0=1e4", f"region edit ms ({label})", 1000 * float(np.median(times)),
                         note="goal < 150 ms; median of 3, no retraining"))
        speed["edit_ms_box" if "box" in label else "edit_ms_whole"] = 1000 * float(np.median(times))
    return rows


def bounded_baseline_rows(quick: bool) -> list[dict]:
    """What the tab's "Run baselines" does on a 512x512 slice with a reference: total seconds against
    the estimate its button states and the budget it enforces, and what each baseline got."""
    from adapters.filter2noise.config import BaselinesRequest
    from adapters.filter2noise.inference import baselines

    side = 128 if quick else 512
    noisy, reference = simulate_low_dose(shepp_logan_hu(side), 1e4, pixel_mm=0.5, seed=3)
    start = time.perf_counter()
    result = baselines(None, BaselinesRequest(noisy.astype(np.float32), reference.astype(np.float32)))
    total = time.perf_counter() - start
    case = f"phantom{side}_I0=1e4"
    RESULTS["bounded_baselines"] = {"side": side, "seconds": total, "estimate_s": result.estimate_s,
                                    "budget_s": result.budget_s, "skipped": list(result.skipped),
                                    "images": {i.name: {"seconds": i.seconds, "note": i.note,
                                                        "psnr": psnr_ssim(i.hu, reference)[0]} for i in result.images}}
    rows = [_row(case, "tab baselines total s (bounded)", total, ratio=total / result.budget_s,
                 note=f"button states about {result.estimate_s:.0f} s, at most {result.budget_s:.0f} s; "
                      f"ratio = total / budget; skipped: {len(result.skipped)}")]
    for item in result.images:
        rows.append(_row(case, f"tab baseline s [{item.name}]", item.seconds,
                         note=f"PSNR {psnr_ssim(item.hu, reference)[0]:.2f} dB; {item.note}"))
    return rows


def series_rows(quick: bool) -> list[dict]:
    """A series (CT_small at 5,000 photons, neighbouring slices by a smooth zoom): train once on three
    slices and apply to all, against training on every slice; PSNR per slice and seconds per slice."""
    from adapters.filter2noise.config import SeriesRequest
    from adapters.filter2noise.data import neighbour_slices
    from adapters.filter2noise.inference import run_series
    from adapters.filter2noise.loading import F2NBundle

    n = 3 if quick else 8
    settings = f2n.FitSettings(iterations=20) if quick else f2n.FitSettings()
    ct = load_slice(pydicom_test_file("CT_small.dcm"))
    clean = neighbour_slices(ct.hu, n)
    pairs = [simulate_low_dose(c, 5e3, pixel_mm=ct.spacing_mm[1], seed=i) for i, c in enumerate(clean)]
    noisy = np.stack([p[0] for p in pairs]).astype(np.float32)
    refs = [p[1] for p in pairs]
    RESULTS["series"] = out = {"slices": n}
    rows = []
    for shared in (True, False):
        result = run_series(F2NBundle(), SeriesRequest(noisy, settings, shared=shared))
        psnrs = [psnr_ssim(result.denoised[i], refs[i])[0] for i in range(n)]
        label = "train once on 3 slices" if shared else "train per slice"
        out[label] = {"psnr_mean": float(np.mean(psnrs)), "psnr_min": float(np.min(psnrs)),
                      "seconds_per_slice": result.seconds / n}
        rows.append(_row(f"CT_small128_series{n}_I0=5000", f"series PSNR dB mean [{label}]", float(np.mean(psnrs)),
                         note=f"min {np.min(psnrs):.2f}; noisy mean {np.mean([psnr_ssim(noisy[i], refs[i])[0] for i in range(n)]):.2f}"))
        rows.append(_row(f"CT_small128_series{n}_I0=5000", f"series seconds per slice [{label}]", result.seconds / n))
    return rows


def edge_and_flat(reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Edges: the top 10% gradient inside the object; flat: the bottom 40%, eroded away from edges."""
    from scipy import ndimage

    grad = np.hypot(ndimage.sobel(reference, 0), ndimage.sobel(reference, 1))
    inside = ndimage.binary_erosion(reference > -500, iterations=3)
    edges = inside & (grad > np.percentile(grad[inside], 90))
    flat = inside & ndimage.binary_erosion(grad < np.percentile(grad[inside], 40), iterations=2)
    return edges, flat


def sigma_rows(quick: bool) -> list[dict]:
    """How much the sigma maps vary, and edge versus flat means (the official maps vary < 2%)."""
    noisy = np.load(ASSETS / "phantom_I0_1e4.npy")
    reference = np.load(ASSETS / "phantom_reference.npy")
    state = f2n.apply_model(f2n.fit(noisy, f2n.FitSettings()).model, noisy)
    edges, flat = edge_and_flat(reference)
    rows = []
    RESULTS["sigma"] = sigma = {}
    for stage in range(len(state.base_sigmas)):
        for name, st in f2n.sigma_map_stats(state, stage, edges, flat).items():
            sigma[f"stage{stage + 1}_{name}"] = st
            case = "phantom256_I0=1e4"
            rows.append(_row(case, f"stage {stage + 1} {name} coefficient of variation", st["cv"],
                             note=f"min {st['min']:.3g} max {st['max']:.3g}"))
            rows.append(_row(case, f"stage {stage + 1} {name} edge/flat mean", st["edge_mean"] / st["flat_mean"],
                             ratio=st["edge_mean"] / st["flat_mean"],
                             note=f"edge {st['edge_mean']:.3g}, flat {st['flat_mean']:.3g}"))
    return rows


# the development phantom lambda was chosen on (kept out of the cases above)
DEV_PHANTOM = {"size": 192, "pixel_mm": 1.3, "photons": 5e3, "seed": 7}
DEV_LAMBDAS = (100.0, 175.0, 250.0, 325.0, 400.0)


def lambda_rows(quick: bool) -> list[dict]:
    """PSNR on the development phantom for each edge-loss weight (what chose lambda = 250)."""
    if quick:
        return []
    d = DEV_PHANTOM
    noisy, reference = simulate_low_dose(shepp_logan_hu(d["size"]), d["photons"], pixel_mm=d["pixel_mm"], seed=d["seed"])
    rows = []
    RESULTS["lambda"] = sweep = {}
    for weight in DEV_LAMBDAS:
        state = f2n.apply_model(f2n.fit(noisy, f2n.FitSettings(edge_weight=weight)).model, noisy)
        p, _ = psnr_ssim(state.denoised_hu, reference)
        sweep[f"{weight:g}"] = p
        rows.append(_row("dev_phantom192_I0=5e3", f"PSNR dB [F2N lambda={weight:g}]", p, note="development phantom, seed 7"))
    return rows


def run(quick: bool = False) -> list[dict]:
    torch.set_num_threads(1)
    RESULTS.clear()
    RESULTS["quick"] = quick
    return (quality_rows(quick) + sigma_rows(quick) + speed_rows(quick) + lambda_rows(quick)
            + bounded_baseline_rows(quick) + series_rows(quick))


# --- figures.json and the model card ------------------------------------------------------------

METHODS = (("noisy input", "Noisy"), ("F2N (ours)", "F2N (ours)"), ("official F2N defaults", "Official defaults"),
           ("bilateral oracle grid", "Bilateral oracle grid"), ("bilateral sigma-from-noise", "Bilateral from noise"),
           ("BM3D sigma-est", "BM3D sigma-est"), ("ZS-N2N", "ZS-N2N"))
TIMED = ("F2N (ours)", "official F2N defaults", "BM3D sigma-est", "ZS-N2N")
CASE_NAMES = {"phantom256_I0=1e4": "Phantom 256², I0=1e4", "phantom256_I0=2.5e3": "Phantom 256², I0=2.5e3",
              "CT_small128_I0=20000": "CT_small 128², I0=2e4", "CT_small128_I0=5000": "CT_small 128², I0=5e3"}


def _cell(result: dict | None, timed: bool) -> str:
    if result is None:
        return "not run"
    text = f"{result['psnr']:.2f} / {result['ssim']:.3f}"
    return text + (f" ({result['seconds']:.1f} s)" if timed else "")


def build_figures(seconds: float) -> dict:
    r = RESULTS
    quality = r["quality"]
    columns = ["Case"] + [label if name != "ZS-N2N" else f"ZS-N2N ({r['zs_iterations']} it.)" for name, label in METHODS]
    rows = [[CASE_NAMES.get(case, case)] + [_cell(scores.get(name), name in TIMED) for name, _ in METHODS]
            for case, scores in quality.items()]
    tables = [figs.table(
        "quality", "PSNR (dB) / SSIM against the noiseless reconstruction (CPU seconds in brackets)", columns, rows,
        note="Both images clipped to -1024..3071 HU (data range 4095 HU, which equals data range 1 on the official "
             "code's scale). 'not run': the official code is measured only when F2N_OFFICIAL_DIR names its checkout.")]
    gains = {case: {name: scores["F2N (ours)"]["psnr"] - scores[name]["psnr"] for name in scores if name != "F2N (ours)"}
             for case, scores in quality.items()}
    sigma = r["sigma"]
    sig_rows = []
    for key, st in sigma.items():
        stage, name = key.split("_", 1)
        sig_rows.append([stage.replace("stage", "stage "), name, st["cv"], st["edge_mean"], st["flat_mean"],
                         st["edge_mean"] / st["flat_mean"], st["min"], st["max"]])
    tables.append(figs.table(
        "sigma_maps", "Sigma maps on the phantom at I0=1e4: variation and edge versus flat tissue",
        ["Stage", "Map", "Coefficient of variation", "Edge mean", "Flat mean", "Edge / flat", "Min", "Max"], sig_rows,
        note="Spatial sigmas in mm, range sigma in HU. Edges: the top 10% gradient of the reference inside the object; "
             "flat: the bottom 40%, eroded away from edges."))
    sp = r["speed"]
    tables.append(figs.table(
        "speed", "Speed on a 512x512 simulated phantom (0.5 mm, I0=1e4), one torch thread",
        ["What", "Value", "Goal"],
        [["train + apply (s)", sp["seconds_512"], "< 30 s"],
         ["region edit, 128x128 box (ms, median of 3)", sp["edit_ms_box"], "< 150 ms"],
         ["region edit, whole slice (ms, median of 3)", sp["edit_ms_whole"], ""]]))
    if "lambda" in r:
        tables.append(figs.table(
            "lambda", "Edge-loss weight on the development phantom (192 px, 1.3 mm, I0=5e3, seed 7; not a bench case)",
            ["lambda", "PSNR (dB)"], [[float(k), v] for k, v in r["lambda"].items()]))
    oracle = {c: g["bilateral oracle grid"] for c, g in gains.items()}
    above = [f"{v:+.2f}" for v in oracle.values() if v > 0]
    below = [f"{CASE_NAMES.get(c, c)} ({v:+.2f} dB)" for c, v in oracle.items() if v <= 0]
    notes = [f"F2N is above the oracle-tuned bilateral filter on {len(above)} of {len(oracle)} cases "
             f"({', '.join(above)} dB)" + (f"; below it on {', '.join(below)}." if below else ".")]
    if any("official F2N defaults" in g for g in gains.values()):
        official = {c: g["official F2N defaults"] for c, g in gains.items() if "official F2N defaults" in g}
        notes.append("Against the official defaults: " + ", ".join(f"{CASE_NAMES.get(c, c)} {v:+.2f} dB" for c, v in official.items()) + ".")
    cvs = [st["cv"] for st in sigma.values()]
    ratios = [st["edge_mean"] / st["flat_mean"] for st in sigma.values()]
    params = f2n.count_parameters(f2n.Filter2Noise())
    data = {
        "params": {"total": params, "per_stage": params // f2n.F2NConfig().stages},
        "iterations": sp["iterations"],
        "zs_iterations": r["zs_iterations"],
        "quality": quality,
        "gain_vs_oracle_db": oracle,
        "sigma": {
            "cv_min_pct": 100 * min(cvs), "cv_max_pct": 100 * max(cvs),
            "edge_flat_min": min(ratios), "edge_flat_max": max(ratios),
            **{f"{k}_{m}": v[m] for k, v in sigma.items() for m in ("edge_mean", "flat_mean", "cv")},
        },
        "speed": sp,
        "lambda": r.get("lambda", {}),
    }
    prov = figs.provenance("python -m bench.filter2noise --write", seconds)
    return figs.figures(TAB, prov, tables, notes, data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--write", action="store_true", help="write figures.json and render MODEL_CARD.md (full run only)")
    args = parser.parse_args()
    if args.write and args.quick:
        parser.error("--write needs a full run (no --quick)")
    start = time.perf_counter()
    for row in run(args.quick):
        ratio = "" if row["ratio"] is None else f" ratio={row['ratio']:.3f}"
        base_ = f" vs {row['baseline']}" if row["baseline"] else ""
        print(f"{row['case']:<22} {row['metric']:<45} {row['value']:10.3f}{base_}{ratio}  {row['note']}", flush=True)
    if args.write:
        path = figs.write(ASSETS, build_figures(time.perf_counter() - start))
        print("wrote", path.relative_to(ASSETS.parent.parent), "and MODEL_CARD.md", flush=True)


if __name__ == "__main__":
    main()
