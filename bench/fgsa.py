"""FGSA bench: re-render latency after a ring edit vs a full run, adapter vs frozen-baseline cost,
1 vs 2 torch threads, and the ablation figures shipped in assets/fgsa/ablation.json.

    python -m bench.fgsa [--quick]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

ASSETS = Path(__file__).resolve().parent.parent / "assets" / "fgsa"


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


def run(quick: bool = False) -> list[dict]:
    from adapters import fgsa_infer
    from adapters.fgsa_data import make_dataset
    from adapters.fgsa_model import load_bundled

    repeats = 5 if quick else 20
    rows = []
    bundle = load_bundled(ASSETS)
    images, masks, _ = make_dataset(2000, 2, ("spectral",), bundle.image_size)
    image = torch.from_numpy(images[:1])
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            embedded = fgsa_infer.frozen_embedding(bundle, image)
            scales = [1.0, 1.0, 1.0, 0.0, 0.0]

            def full_run():
                emb = fgsa_infer.frozen_embedding(bundle, image)
                fgsa_infer.run_adapter(bundle, image, "c1", scales, embedded=emb)
                fgsa_infer.run_adapter(bundle, image, "c1", [1.0] * 5, embedded=emb)
                fgsa_infer.run_frozen(bundle, image)

            def edit():
                fgsa_infer.run_adapter(bundle, image, "c1", scales, embedded=embedded)

            full_ms, edit_ms = _median_ms(full_run, repeats), _median_ms(edit, repeats)
            frozen_ms = _median_ms(lambda: fgsa_infer.run_frozen(bundle, image), repeats)
            rows.append(_row(f"threads={threads}", "rerender_ms", edit_ms, "full run (both models, learned + edited)", edit_ms / full_ms,
                             "ring edit re-runs the adapter path from the cached frozen patch embedding"))
            rows.append(_row(f"threads={threads}", "full_run_ms", full_ms, None, None, "64x64, adapter twice + frozen baseline once"))
            rows.append(_row(f"threads={threads}", "adapter_vs_frozen_forward", edit_ms, "frozen backbone + head forward", edit_ms / frozen_ms,
                             f"frozen+head {frozen_ms:.1f} ms"))
    finally:
        torch.set_num_threads(before)

    ablation = ASSETS / "ablation.json"
    if ablation.is_file():
        figures = json.loads(ablation.read_text())
        summary = figures["summary"]
        base = next(r for r in summary if r["variant"] == "head")
        base_s = float(base["S"].split(" ")[0])
        for r in summary:
            s = float(r["S"].split(" ")[0])
            rows.append(_row(r["variant"], "S_measure_heldout", s, "frozen backbone + head", s / base_s,
                             f"mean over seeds {r['seeds']}: {r['S']}; {r['trainable']:,} trainable; {r['cpu_minutes']:.1f} CPU min/run"))
        reliance = figures.get("reliance", {})
        if reliance and "spectral_mae" in next(iter(reliance.values())):
            def mean(get):
                return statistics.mean(get(r) for r in reliance.values())
            s_none, s_known = mean(lambda r: r["none"]["spectral"]), mean(lambda r: r["known_bands_off"]["spectral"])
            mae_none, mae_known = mean(lambda r: r["spectral_mae"]["none"]), mean(lambda r: r["spectral_mae"]["known_bands_off"])
            rows.append(_row("known bands off", "spectral_S", s_known, "no edit", s_known / s_none,
                             f"object+background bands zeroed at every FGSAttn site; no edit {s_none:.3f}; seeds {list(reliance)}"))
            rows.append(_row("known bands off", "spectral_MAE", mae_known, "no edit", mae_known / mae_none,
                             f"no edit {mae_none:.3f}; seeds {list(reliance)}"))
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    for row in run(quick=args.quick):
        ratio = "" if row["ratio"] is None else f" ratio {row['ratio']:.3f} vs {row['baseline']}"
        print(f"{row['case']:>16} {row['metric']:<28} {row['value']:10.3f}{ratio}  {row['note']}")


if __name__ == "__main__":
    main()
