"""Filter2Noise bench: PSNR, SSIM and CPU seconds against every baseline, on simulated low-dose CT
(the Shepp-Logan phantom and pydicom's CT_small, two doses each), plus speed at 512x512 and the
region-edit latency. One torch thread throughout (the machine is shared).

The official code's defaults are measured when ``F2N_OFFICIAL_DIR`` names a checkout of
github.com/sypsyp97/Filter2Noise outside this repository (its licence is CC BY-NC: it is imported
from there and called, never copied here). ``F2N_OFFICIAL_CASES`` limits which cases it runs on
(comma-separated case names; default: the two 128x128 CT_small cases, as it takes minutes per case).

    python -m bench.filter2noise [--quick]
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

from adapters import filter2noise as f2n
from adapters import filter2noise_baselines as base
from adapters.filter2noise_io import load_slice, pydicom_test_file
from adapters.filter2noise_sim import psnr_ssim, shepp_logan_hu, simulate_low_dose

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


def quality_rows(quick: bool) -> list[dict]:
    rows = []
    official_dir = os.environ.get("F2N_OFFICIAL_DIR")
    official = official_module(official_dir) if official_dir else None
    wanted = os.environ.get("F2N_OFFICIAL_CASES", "CT_small128_I0=20000,CT_small128_I0=5000").split(",")
    for case, (noisy, reference) in cases(quick).items():
        def metric(a, r):
            return psnr_ssim(a, r)[0]

        methods = {
            "noisy input": lambda: (noisy, {}),
            "F2N (ours)": lambda: (f2n.apply_model(f2n.fit(noisy, f2n.FitSettings()).model, noisy).denoised_hu, {}),
            "bilateral sigma-from-noise": lambda: base.bilateral_from_noise(noisy),
            "bilateral oracle grid": lambda: base.oracle_bilateral(noisy, reference, metric),
            "BM3D sigma-est": lambda: base.bm3d_estimated(noisy),
            "ZS-N2N": lambda: base.zs_n2n(noisy, 100 if quick else 300),
        }
        if official is not None and case in wanted and not quick:
            methods["official F2N defaults"] = lambda: (run_official(official, noisy), {})
        scores = {}
        for name, fn in methods.items():
            start = time.perf_counter()
            image, params = fn()
            seconds = time.perf_counter() - start
            p, s = psnr_ssim(image, reference)
            scores[name] = (p, s, seconds)
            note = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
            rows.append(_row(case, f"PSNR dB [{name}]", p, note="data range 4095 HU on -1024..3071"))
            rows.append(_row(case, f"SSIM [{name}]", s))
            if name != "noisy input":
                rows.append(_row(case, f"CPU s [{name}]", seconds, note=note))
        ours = scores["F2N (ours)"]
        for name, (p, s, seconds) in scores.items():
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
    for stage in range(len(state.base_sigmas)):
        for name, st in f2n.sigma_map_stats(state, stage, edges, flat).items():
            case = "phantom256_I0=1e4"
            rows.append(_row(case, f"stage {stage + 1} {name} coefficient of variation", st["cv"],
                             note=f"min {st['min']:.3g} max {st['max']:.3g}"))
            rows.append(_row(case, f"stage {stage + 1} {name} edge/flat mean", st["edge_mean"] / st["flat_mean"],
                             ratio=st["edge_mean"] / st["flat_mean"],
                             note=f"edge {st['edge_mean']:.3g}, flat {st['flat_mean']:.3g}"))
    return rows


def run(quick: bool = False) -> list[dict]:
    torch.set_num_threads(1)
    return quality_rows(quick) + sigma_rows(quick) + speed_rows(quick)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    for row in run(args.quick):
        ratio = "" if row["ratio"] is None else f" ratio={row['ratio']:.3f}"
        base_ = f" vs {row['baseline']}" if row["baseline"] else ""
        print(f"{row['case']:<22} {row['metric']:<45} {row['value']:10.3f}{base_}{ratio}  {row['note']}", flush=True)


if __name__ == "__main__":
    main()
