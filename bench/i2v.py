"""Image-to-video bench: the bundled models on camera moves over held-out photographs (adapter on vs
off at the same seed, flow against motion strength over three seeds, EDG's direction accuracy and
alpha sweep) and the seconds one video costs, measured in one run.

    python -m bench.i2v            # print the rows
    python -m bench.i2v --quick    # fewer seeds and steps
    python -m bench.i2v --write    # also write assets/i2v/figures.json and render MODEL_CARD.md
                                   # from MODEL_CARD.template.md (the only writer of both)
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

KEY = "i2v"
ASSETS = Path(__file__).resolve().parent.parent / "assets" / KEY


def _row(case, metric, value, baseline=None, ratio=None, note=""):
    return {"tab": KEY, "case": case, "metric": metric, "value": float(value), "baseline": baseline,
            "ratio": None if ratio is None else float(ratio), "note": note}


def _timed(fn, repeats=2) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def measure(quick: bool = False) -> tuple[dict, list[dict]]:
    from adapters.i2v import modeling as i2v
    from adapters.i2v.loading import load_bundled
    from adapters.i2v.metrics import evaluate, evaluate_edg, to_image_tensor
    from adapters.i2v.photos import held_out_clips

    threads_before = torch.get_num_threads()
    torch.set_num_threads(1)
    model = load_bundled(ASSETS)
    steps = 8 if quick else STEPS
    seeds = (0,) if quick else (0, 1, 2)
    figures = evaluate(model, seeds=seeds, steps=steps, progress=_printer("on/off + sweep"))
    rows = []
    for pair in figures["pairs"]:
        on, off, case = pair["adapter_on"], pair["adapter_off"], f"held-out photos, m={pair['m']:g}"
        rows += [
            _row(case, "frames 1.. vs the real move, PSNR dB", on["move_psnr"], "adapter off", None,
                 f"adapter off {off['move_psnr']:.2f}"),
            _row(case, "direction matches caption", on["direction_ok"], "adapter off", None,
                 f"adapter off {off['direction_ok']:.3f}; chance 0.25"),
            _row(case, "first-frame PSNR dB", on["first_frame_psnr"], "adapter off", None,
                 f"adapter off {off['first_frame_psnr']:.2f}; bounded by the VAE"),
            _row(case, "mean Farneback flow px/frame", on["flow"], "adapter off", on["flow"] / max(off["flow"], 1e-6)),
        ]
    text_only = figures["text_only"]
    rows += [
        _row("held-out photos, frozen text-to-video alone", "direction matches caption", text_only["direction_ok"],
             note="no image; chance 0.25"),
        _row("held-out photos, frozen text-to-video alone", "first-frame PSNR dB", text_only["first_frame_psnr"],
             note="against the image it never saw"),
    ]
    sweep = figures["motion_sweep"]
    for i, m in enumerate(sweep["m"]):
        per = ", ".join(f"{k} {v[i]:.2f}" for k, v in sweep["per_photo"].items())
        rows.append(_row(f"motion strength m={m:g}", "flow px/frame (mean of per-photo medians)", sweep["flow"][i],
                         "m=0", sweep["flow"][i] / max(sweep["flow"][0], 1e-6), per))
    rows.append(_row("motion strength sweep", "flow rises monotonically (1=yes)", float(sweep["monotone"])))

    if model.edg_sft is not None:
        edg = evaluate_edg(model, seeds=seeds, steps=steps, progress=_printer("EDG"))
        figures["edg"] = edg
        pre = edg["variants"]["pretrained"]
        for name, r in edg["variants"].items():
            rows.append(_row(f"EDG section, {name}", "direction matches caption", r["direction_ok"], "pretrained",
                             None, f"pans {r['direction_ok_pan']:.3f}, zooms {r['direction_ok_zoom']:.3f}; "
                             f"pretrained {pre['direction_ok']:.3f}; chance 0.25"))
            rows.append(_row(f"EDG section, {name}", "mean Farneback flow px/frame", r["flow"], "pretrained",
                             r["flow"] / max(pre["flow"], 1e-6), f"frame-0 PSNR {r['first_frame_psnr']:.2f} dB"))
        for point in edg["alpha_sweep"]:
            rows.append(_row(f"EDG alpha={point['alpha']:g}", "mean Farneback flow px/frame", point["flow"], "alpha=0",
                             point["flow"] / max(edg["alpha_sweep"][0]["flow"], 1e-6),
                             f"direction {point['direction_ok']:.3f}, frame-0 PSNR {point['first_frame_psnr']:.2f} dB"))

    clip = held_out_clips()[0]
    image = to_image_tensor(clip.frames[0])
    settings = i2v.motion_settings(1.0)  # the full schedule, so every step runs

    def run(on):
        return lambda: i2v.animate(model.pipe, image, clip.caption, motion=settings, num_frames=8, steps=20,
                                   guidance=4.0, seed=0, adapter_on=on)

    t_on, t_off = _timed(run(True)), _timed(run(False))
    size = model.frame_size
    rows.append(_row(f"one 8-frame {size}x{size} video, CPU 1 thread", "seconds (20 steps, CFG)", t_on, "adapter off",
                     t_on / t_off, f"adapter off {t_off:.2f} s: the branch's overhead"))
    torch.set_num_threads(threads_before)
    figures["speed"] = {"seconds_adapter_on_1_thread": t_on, "seconds_adapter_off_1_thread": t_off, "steps": 20,
                        "size": size}
    return figures, rows


STEPS = 10  # denoising steps of every measured video (the speed row uses the tab's default, 20)


def _printer(what: str):
    last = [0.0]

    def report(fraction: float, text: str) -> None:
        if fraction - last[0] >= 0.1 or fraction >= 1:
            last[0] = fraction
            print(f"[{what}] {text}", flush=True)

    return report


def run(quick: bool = False) -> list[dict]:
    return measure(quick)[1]


def _monotone(values) -> bool:
    return all(b > a for a, b in zip(values, values[1:]))


def verdict(figures: dict) -> list[str]:
    """Plain sentences generated from the figures, so the card cannot claim what was not measured."""
    lines = []
    for pair in figures["pairs"]:
        on, off = pair["adapter_on"], pair["adapter_off"]
        lines.append(
            f"m={pair['m']:g}, adapter on against off: frames 1.. are {on['move_psnr']:.1f} vs {off['move_psnr']:.1f} dB "
            f"from the real move ({on['move_psnr'] - off['move_psnr']:+.1f} dB); flow {on['flow']:.2f} vs "
            f"{off['flow']:.2f} px/frame.")
    sweep = figures["motion_sweep"]
    per = "; ".join(name + " " + " / ".join(format(v, ".2f") for v in values) for name, values in sweep["per_photo"].items())
    monotone_all = all(sweep["monotone_per_photo"].values())
    lines.append(
        f"Motion strength {'works' if sweep['monotone'] and sweep['range_ratio'] >= 2 else 'does **not** fully work'} "
        f"as a control on held-out photographs: flow (median over {len(sweep['seeds'])} seeds, mean over photos) goes "
        f"{' / '.join(format(v, '.2f') for v in sweep['flow'])} px/frame at m = "
        f"{' / '.join(format(m, 'g') for m in sweep['m'])} "
        f"({'monotonically' if sweep['monotone'] else 'not monotonically'}, x{sweep['range_ratio']:.1f} from lowest to "
        f"highest); per photo: {per} ({'monotone on every photo' if monotone_all else 'not monotone on every photo'}).")
    text_only = figures.get("text_only")
    if text_only:
        on = figures["pairs"][-1]["adapter_on"]
        lines.append(
            f"The frozen text-to-video model alone (no image) lands {text_only['first_frame_psnr']:.1f} dB from the input "
            f"it never saw, against {on['first_frame_psnr']:.1f} dB for frame 0 here (the clean input through the VAE).")
    edg = figures.get("edg")
    if edg:
        v = edg["variants"]
        sweep = edg["alpha_sweep"]
        flows = [p["flow"] for p in sweep]
        psnrs = [p["first_frame_psnr"] for p in sweep]
        lines.append(
            f"EDG (m={edg['settings']['m']:g}, official defaults, {v['pretrained']['cases']} held-out cases): the caption's "
            f"move is followed {_pct(v['pretrained']['direction_ok'])} of the time with the pretrained motion module, "
            f"{_pct(v['fine_tuned']['direction_ok'])} after the text fine-tune, {_pct(v['edg']['direction_ok'])} with EDG's "
            f"schedule and {_pct(v['controllable']['direction_ok'])} with EDG's controllable model alone (chance 25% for "
            f"the pans; pans {_pct(v['controllable']['direction_ok_pan'])}, zooms "
            f"{_pct(v['controllable']['direction_ok_zoom'])} there); mean flow {v['pretrained']['flow']:.2f} / "
            f"{v['fine_tuned']['flow']:.2f} / {v['edg']['flow']:.2f} / {v['controllable']['flow']:.2f} px/frame.")
        alphas = " / ".join(format(p["alpha"], "g") for p in sweep)
        moves = " / ".join(format(p["move_psnr"], ".1f") for p in sweep)
        lines.append(
            f"Raising alpha {alphas} takes flow "
            f"{' / '.join(format(f, '.2f') for f in flows)} px/frame ({'rising monotonically' if _monotone(flows) else 'not monotonically'}); "
            f"first-frame PSNR stays within {max(abs(p - psnrs[0]) for p in psnrs):.2f} dB of alpha = 0 (frame 0 is the clean "
            f"input at every step, so this holds by construction) and frames 1.. are "
            f"{moves} dB from the real move.")
    return lines


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def build_figures(figures: dict, seconds: float) -> dict:
    """The measurements in the shared figures shape (`adapters.common.figures`), with the training
    costs read from the log `training/i2v/train.py` writes (`assets/i2v/training_log.json`)."""
    from adapters.common import figures as shared
    from adapters.i2v.loading import header_count

    s = figures["settings"]
    columns = ["motion strength", "variant", "frames 1.. vs the real move (PSNR dB)", "mean flow (px/frame)",
               "direction matches caption", "first-frame PSNR vs input (dB)"]

    def row(m: str, label: str, r: dict) -> list:
        return [m, label, f"{r['move_psnr']:.1f}", f"{r['flow']:.3f}", _pct(r["direction_ok"]),
                f"{r['first_frame_psnr']:.1f}"]

    rows = []
    for pair in figures["pairs"]:
        rows.append(row(f"{pair['m']:g}", "adapter on", pair["adapter_on"]))
        rows.append(row(f"{pair['m']:g}", "adapter off", pair["adapter_off"]))
    rows.append(row("-", "frozen text-to-video alone (no image)", figures["text_only"]))
    quality = shared.table(
        "adapter_on_off", "Adapter on vs off on held-out photographs", columns, rows,
        note=(f"{s['held_out_clips']} camera moves (4 pans, zoom in, zoom out) over {len(s['photos'])} held-out photographs "
              f"({', '.join(s['photos'])}), seed {s['seeds'][0]}, {s['steps']} steps, guidance {s['guidance']}, "
              f"{s['frames']} frames of {s['size']}x{s['size']}; adapter off = same sampler, prior and seed with the "
              "branch at 0."))
    ms = figures["motion_sweep"]
    photos_ = list(ms["per_photo"])
    sweep = shared.table(
        "motion_sweep", f"Motion strength sweep (adapter on; flow = median over seeds {ms['seeds']})",
        ["motion strength m", *[f"{name} (px/frame)" for name in photos_], "mean of the medians"],
        [[f"{m:g}", *[f"{ms['per_photo'][n][i]:.3f}" for n in photos_], f"{ms['flow'][i]:.3f}"]
         for i, m in enumerate(ms["m"])],
        note=("Prompt: each photograph's \"the scene moves left slowly\". Flow "
              + ("rises monotonically with m" if ms["monotone"] else "does not rise monotonically with m")
              + f" (x{ms['range_ratio']:.1f} from m=0 to m=1); monotone per photo: "
              + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in ms["monotone_per_photo"].items())
              + f". Lowest first-frame PSNR over the sweep {ms['first_frame_psnr_min']:.1f} dB."))
    speed = figures["speed"]
    timing = shared.table(
        "speed", f"Seconds for one 8-frame {speed['size']}x{speed['size']} video ({speed['steps']} steps, "
                 "classifier-free guidance, one CPU thread)",
        ["variant", "seconds"],
        [["adapter on", f"{speed['seconds_adapter_on_1_thread']:.2f}"],
         ["adapter off", f"{speed['seconds_adapter_off_1_thread']:.2f}"]],
        note="Wall clock on a shared 2-core machine whose other core was busy; the tab runs the bundled model on one thread.")
    tables = [quality, sweep, timing]
    if figures.get("edg"):
        e = figures["edg"]
        names = {"pretrained": "pretrained motion module", "fine_tuned": "fine-tuned with text (theta_sft)",
                 "edg": "EDG (dynamic for t > 500, then controllable)", "controllable": "EDG's controllable model alone"}
        tables.append(shared.table(
            "edg", "Extrapolate and decouple on held-out photographs (I2V-Adapter on for every row)",
            ["variant", "move matches caption (all)", "pans", "zooms", "mean flow (px/frame)",
             "frames 1.. vs the real move (dB)", "first-frame PSNR (dB)"],
            [[names[n], _pct(r["direction_ok"]), _pct(r["direction_ok_pan"]), _pct(r["direction_ok_zoom"]),
              f"{r['flow']:.3f}", f"{r['move_psnr']:.1f}", f"{r['first_frame_psnr']:.1f}"]
             for n, r in e["variants"].items()],
            note=(f"{e['settings']['held_out_clips']} held-out camera moves x {len(e['settings']['seeds'])} seeds "
                  f"({e['variants']['pretrained']['cases']} cases per row), motion strength {e['settings']['m']:g}, "
                  f"{e['settings']['steps']} steps; the move is read from the generated video's global optical flow "
                  "(`photos.classify_motion`: pan direction, zoom in/out, or none); chance is 1 in 6 named moves. EDG at "
                  "the official defaults (alpha 0.25, beta_dyn 0.75, alpha_con 1.0, beta_con 0.25, T 500, DARE keep 0.3).")))
        tables.append(shared.table(
            "edg_alpha", f"EDG with alpha swept (other settings at the defaults, seed {e['settings']['seeds'][0]})",
            ["alpha", "mean flow (px/frame)", "first-frame PSNR (dB)", "frames 1.. vs the real move (dB)",
             "move matches caption"],
            [[f"{p['alpha']:g}", f"{p['flow']:.3f}", f"{p['first_frame_psnr']:.1f}", f"{p['move_psnr']:.1f}",
              _pct(p["direction_ok"])] for p in e["alpha_sweep"]]))
    log_path = ASSETS / "training_log.json"
    log = json.loads(log_path.read_text()) if log_path.is_file() else {}
    total = sum(stage.get("cpu_seconds", 0) for stage in log.values())
    training = shared.table(
        "training", "Training cost per stage (one CPU thread)", ["stage", "steps", "CPU minutes", "final loss (mean of last 50)"],
        [[name, stage["steps"], f"{stage['cpu_seconds'] / 60:.1f}", f"{stage['final_loss']:.4f}"] for name, stage in log.items()],
        note="Read from assets/i2v/training_log.json, which training/i2v/train.py (and train_edg.py: sft) writes.")
    # parameters (the motion module's stored position tables are buffers, not parameters)
    params = {name: header_count(ASSETS / f"{name}.safetensors")
              for name in ("vae", "text_encoder", "unet", "motion_adapter", "i2v_adapter")}
    sft_path = ASSETS / "edg_sft.safetensors"
    if sft_path.is_file():
        from safetensors import safe_open

        from adapters.i2v.edg import adapter_prefix

        with safe_open(str(sft_path), framework="pt") as handle:
            counts = {key: int(torch.tensor(handle.get_slice(key).get_shape()).prod()) for key in handle.keys()}
        sft_log = log.get("sft", {})
        data_edg = {"adapter": f"{sum(n for k, n in counts.items() if adapter_prefix(k)):,}",
                    "motion": f"{sum(n for k, n in counts.items() if not adapter_prefix(k) and not k.endswith('.pos_embed.pe')):,}",
                    "steps": sft_log.get("steps", "?"), "cpu_minutes": f"{sft_log.get('cpu_seconds', 0) / 60:.1f}"}
    else:
        data_edg = None
    on1, off1 = speed["seconds_adapter_on_1_thread"], speed["seconds_adapter_off_1_thread"]
    data = dict(figures)
    data.update({
        "params": params,
        "edg_params": data_edg,
        "training": {"stages": log, "total_cpu_minutes": round(total / 60, 1),
                     "total_cpu_minutes_rounded": int(round(total / 60))},
        "speed_text": {"on_1_thread": f"{on1:.2f}", "off_1_thread": f"{off1:.2f}",
                       "branch_cost_percent": f"{100 * (on1 / max(off1, 1e-9) - 1):.0f}", "steps": speed["steps"]},
    })
    return shared.figures(KEY, shared.provenance("python -m bench.i2v --write", seconds),
                          [*tables, training], verdict(figures), data)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--write", action="store_true", help="write figures.json and MODEL_CARD.md into assets/i2v")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    figures, rows = measure(args.quick)
    for row in rows:
        ratio = "" if row["ratio"] is None else f" ratio {row['ratio']:.3f} vs {row['baseline']}"
        print(f"{row['case']:<42} {row['metric']:<36} {row['value']:.4f}{ratio}  {row['note']}")
    if args.write:
        from adapters.common import figures as shared

        # every figure but the one 2-thread timing (its own row) was measured on one thread
        torch.set_num_threads(1)
        shared.write(ASSETS, build_figures(figures, time.perf_counter() - started))
        print(f"wrote {ASSETS / 'figures.json'} and {ASSETS / 'MODEL_CARD.md'}")


if __name__ == "__main__":
    main()
