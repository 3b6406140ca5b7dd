"""Image-to-video bench: quality of the bundled I2V-Adapter on held-out sprite prompts (adapter on vs
off at the same seeds, flow against motion strength) and speed ratios measured in one run.

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
    from adapters.i2v.data import held_out_clips
    from adapters.i2v.loading import load_bundled
    from adapters.i2v.metrics import evaluate, to_image_tensor

    threads_before = torch.get_num_threads()
    torch.set_num_threads(1)
    model = load_bundled(ASSETS)
    steps = 10 if quick else 20
    figures = evaluate(model, seeds=(0,) if quick else (0, 1, 2), steps=steps)
    rows = []
    for pair in figures["pairs"]:
        on, off, case = pair["adapter_on"], pair["adapter_off"], f"held-out prompts, m={pair['m']:g}"
        rows += [
            _row(case, "shape IoU vs frame 0", on["shape_iou"], "adapter off", on["shape_iou"] / max(off["shape_iou"], 1e-6),
                 f"adapter off {off['shape_iou']:.3f}"),
            _row(case, "colour drift vs frame 0 (RGB)", on["colour_error"], "adapter off",
                 on["colour_error"] / max(off["colour_error"], 1e-6), f"adapter off {off['colour_error']:.3f}; lower is better"),
            _row(case, "background PSNR vs frame 0 dB", on["background_psnr"], "adapter off", None,
                 f"adapter off {off['background_psnr']:.2f}; the backgrounds are static"),
            _row(case, "motion direction accuracy", on["direction_ok"], "adapter off", None,
                 f"adapter off {off['direction_ok']:.3f}; chance 0.25"),
            _row(case, "first-frame PSNR dB", on["first_frame_psnr"], "adapter off", None,
                 f"adapter off {off['first_frame_psnr']:.2f}; bounded by the VAE"),
        ]
    text_only = figures["text_only"]
    rows += [
        _row("held-out prompts, frozen text-to-video alone", "motion direction accuracy", text_only["direction_ok"],
             note="no image; chance 0.25"),
        _row("held-out prompts, frozen text-to-video alone", "first-frame PSNR dB", text_only["first_frame_psnr"],
             note="against the image it never saw"),
    ]
    base = figures["motion_sweep"][0]["flow"]
    for point in figures["motion_sweep"]:
        rows.append(_row(f"motion strength m={point['m']:g}", "mean Farneback flow px/frame", point["flow"], "m=0",
                         point["flow"] / max(base, 1e-6), f"frame-0 PSNR {point['first_frame_psnr']:.2f} dB"))
    rows.append(_row("motion strength sweep", "flow rises monotonically (1=yes)", float(figures["flow_monotone"])))

    if model.edg_sft is not None:
        from adapters.i2v.metrics import evaluate_edg

        edg = evaluate_edg(model, seeds=(0,) if quick else (0, 1, 2), steps=steps)
        figures["edg"] = edg
        pre = edg["variants"]["pretrained"]
        for name, r in edg["variants"].items():
            rows.append(_row(f"EDG section, {name}", "motion direction accuracy", r["direction_ok"], "pretrained",
                             None, f"pretrained {pre['direction_ok']:.3f}; chance 0.25"))
            rows.append(_row(f"EDG section, {name}", "mean Farneback flow px/frame", r["flow"], "pretrained",
                             r["flow"] / max(pre["flow"], 1e-6), f"frame-0 PSNR {r['first_frame_psnr']:.2f} dB"))
        for point in edg["alpha_sweep"]:
            rows.append(_row(f"EDG alpha={point['alpha']:g}", "mean Farneback flow px/frame", point["flow"], "alpha=0",
                             point["flow"] / max(edg["alpha_sweep"][0]["flow"], 1e-6),
                             f"direction {point['direction_ok']:.3f}, frame-0 PSNR {point['first_frame_psnr']:.2f} dB"))

    clip = held_out_clips(per_prompt=1)[0]
    image = to_image_tensor(clip.frames[0])
    settings = i2v.motion_settings(1.0)  # the full schedule, so every step runs

    def run(on):
        return lambda: i2v.animate(model.pipe, image, clip.caption, motion=settings, num_frames=8, steps=steps,
                                   guidance=4.0, seed=0, adapter_on=on)

    t_on, t_off = _timed(run(True)), _timed(run(False))
    rows.append(_row("one 8-frame 32x32 video, CPU 1 thread", f"seconds ({steps} steps, CFG)", t_on, "adapter off",
                     t_on / t_off, f"adapter off {t_off:.2f} s: the branch's overhead"))
    torch.set_num_threads(2)
    t_two = _timed(run(True))
    torch.set_num_threads(threads_before)
    rows.append(_row("one 8-frame 32x32 video, CPU 2 threads", f"seconds ({steps} steps, CFG)", t_two, "1 thread",
                     t_two / t_on, "shared 2-core machine: other jobs may be running"))
    figures["speed"] = {"seconds_adapter_on_1_thread": t_on, "seconds_adapter_off_1_thread": t_off,
                        "seconds_adapter_on_2_threads": t_two, "steps": steps}
    return figures, rows


def run(quick: bool = False) -> list[dict]:
    return measure(quick)[1]


def verdict(figures: dict) -> list[str]:
    """Plain sentences generated from the figures, so the card cannot claim what was not measured."""
    by_m = {p["m"]: p for p in figures["pairs"]}
    lines = []
    for m, pair in sorted(by_m.items()):
        on, off = pair["adapter_on"], pair["adapter_off"]
        lines.append(
            f"m={m:g}, adapter on against off: background {on['background_psnr']:.1f} vs {off['background_psnr']:.1f} dB "
            f"from frame 0 ({on['background_psnr'] - off['background_psnr']:+.1f} dB), shape consistency "
            f"{on['shape_iou'] - off['shape_iou']:+.3f} IoU, colour drift "
            f"{100 * (on['colour_error'] / max(off['colour_error'], 1e-9) - 1):+.1f}%.")
    sweep = figures["motion_sweep"]
    lines.append(
        f"Motion strength works as a control: mean flow goes from {sweep[0]['flow']:.2f} to {sweep[-1]['flow']:.2f} "
        f"px/frame over m=0..1 ({'monotonically' if figures['flow_monotone'] else 'not monotonically'}), while shape "
        f"consistency falls from {sweep[0]['shape_iou']:.2f} to {sweep[-1]['shape_iou']:.2f} and frame 0 stays at "
        f"{sweep[0]['first_frame_psnr']:.1f} dB.")
    accuracy = {m: p["adapter_on"]["direction_ok"] for m, p in sorted(by_m.items())}
    text_only = figures.get("text_only")
    listed = ", ".join(f"{100 * a:.0f}% at m={m:g}" for m, a in accuracy.items())
    if min(accuracy.values()) >= 0.5:
        lines.append(f"The sprite moves the way the caption says: {listed} with the adapter (chance is 25%).")
    else:
        lines.append(f"Motion direction does **not** follow the caption: {listed} with the adapter (chance is "
                     "25%). The frozen models do not follow it either (next line): which way things move comes from "
                     "the frozen UNet and motion module, which the adapter does not change, and these tiny ones "
                     "never learnt the direction words (see the discarded runs below).")
    edg = figures.get("edg")
    if edg:
        v = edg["variants"]
        sweep = edg["alpha_sweep"]
        flows = [p["flow"] for p in sweep]
        lines.append(
            f"EDG (m={edg['settings']['m']:g}, official defaults): the caption's direction is followed "
            f"{_pct(v['pretrained']['direction_ok'])} of the time with the pretrained motion module, "
            f"{_pct(v['fine_tuned']['direction_ok'])} after the text fine-tune and {_pct(v['edg']['direction_ok'])} with "
            f"EDG (chance 25%); mean flow {v['pretrained']['flow']:.2f} / {v['fine_tuned']['flow']:.2f} / "
            f"{v['edg']['flow']:.2f} px/frame. Raising alpha from {sweep[0]['alpha']:g} to {sweep[-1]['alpha']:g} takes "
            f"flow from {flows[0]:.2f} to {flows[-1]:.2f} px/frame "
            f"({'rising monotonically' if all(b > a for a, b in zip(flows, flows[1:])) else 'not monotonically'}) "
            f"and frame-0 PSNR from {sweep[0]['first_frame_psnr']:.1f} to {sweep[-1]['first_frame_psnr']:.1f} dB.")
    if text_only:
        lines.append(
            f"The frozen text-to-video model alone (no image) moves the right way {100 * text_only['direction_ok']:.0f}% "
            f"of the time, and its first frame is {text_only['first_frame_psnr']:.1f} dB from the input it never saw: "
            "the image, kept clean as frame 0, is what makes it *this* sprite on *this* background.")
    return lines


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def build_figures(figures: dict, seconds: float) -> dict:
    """The measurements in the shared figures shape (`adapters.common.figures`), with the training
    costs read from the log `training/i2v/train.py` writes (`assets/i2v/training_log.json`)."""
    from adapters.common import figures as shared
    from adapters.i2v.loading import header_count

    s = figures["settings"]
    columns = ["motion strength", "variant", "shape consistency (IoU vs frame 0, higher better)",
               "colour drift (lower better)", "background kept (PSNR dB vs frame 0, higher better)",
               "direction matches caption", "first-frame PSNR vs input (dB)"]

    def row(m: str, label: str, r: dict) -> list:
        return [m, label, f"{r['shape_iou']:.3f}", f"{r['colour_error']:.3f}", f"{r['background_psnr']:.1f}",
                _pct(r["direction_ok"]), f"{r['first_frame_psnr']:.1f}"]

    rows = []
    for pair in figures["pairs"]:
        rows.append(row(f"{pair['m']:g}", "adapter on", pair["adapter_on"]))
        rows.append(row(f"{pair['m']:g}", "adapter off", pair["adapter_off"]))
    rows.append(row("-", "frozen text-to-video alone (no image)", figures["text_only"]))
    quality = shared.table(
        "adapter_on_off", "Adapter on vs off on held-out prompts", columns, rows,
        note=(f"Measured on {s['held_out_prompts']} held-out sprite prompts x {len(s['seeds'])} seeds ({s['steps']} "
              f"steps, guidance {s['guidance']}, {s['frames']} frames of {s['size']}x{s['size']}); adapter off = same "
              "sampler, prior and seed with the branch at 0."))
    sweep = shared.table(
        "motion_sweep", "Motion strength sweep (adapter on, seed 0)",
        ["motion strength m", "mean flow (px/frame)", "shape consistency", "first-frame PSNR (dB)"],
        [[f"{f['m']:g}", f"{f['flow']:.3f}", f"{f['shape_iou']:.3f}", f"{f['first_frame_psnr']:.1f}"]
         for f in figures["motion_sweep"]],
        note="Flow " + ("rises monotonically with m." if figures["flow_monotone"] else "does not rise monotonically with m."))
    speed = figures["speed"]
    timing = shared.table(
        "speed", f"Seconds for one 8-frame 32x32 video ({speed['steps']} steps, classifier-free guidance, CPU)",
        ["variant", "CPU threads", "seconds"],
        [["adapter on", 1, f"{speed['seconds_adapter_on_1_thread']:.2f}"],
         ["adapter off", 1, f"{speed['seconds_adapter_off_1_thread']:.2f}"],
         ["adapter on", 2, f"{speed['seconds_adapter_on_2_threads']:.2f}"]],
        note="Shared 2-core machine: 2-thread timings swing with other jobs' load.")
    tables = [quality, sweep, timing]
    if figures.get("edg"):
        e = figures["edg"]
        names = {"pretrained": "pretrained motion module", "fine_tuned": "fine-tuned with text (theta_sft)",
                 "edg": "EDG (dynamic for t > 500, then controllable)"}
        tables.append(shared.table(
            "edg", "Extrapolate and decouple on held-out prompts (I2V-Adapter on for every row)",
            ["variant", "direction matches caption", "mean flow (px/frame)", "first-frame PSNR (dB)", "shape consistency"],
            [[names[n], _pct(r["direction_ok"]), f"{r['flow']:.3f}", f"{r['first_frame_psnr']:.1f}", f"{r['shape_iou']:.3f}"]
             for n, r in e["variants"].items()],
            note=(f"{e['settings']['held_out_prompts']} held-out sprite prompts x {len(e['settings']['seeds'])} seeds, "
                  f"motion strength {e['settings']['m']:g}, {e['settings']['steps']} steps; EDG at the official defaults "
                  "(alpha 0.25, beta_dyn 0.75, alpha_con 1.0, beta_con 0.25, T 500, DARE keep 0.3).")))
        tables.append(shared.table(
            "edg_alpha", "EDG with alpha swept (other settings at the defaults, seed 0)",
            ["alpha", "mean flow (px/frame)", "first-frame PSNR (dB)", "direction matches caption"],
            [[f"{p['alpha']:g}", f"{p['flow']:.3f}", f"{p['first_frame_psnr']:.1f}", _pct(p["direction_ok"])]
             for p in e["alpha_sweep"]]))
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
                       "on_2_threads": f"{speed['seconds_adapter_on_2_threads']:.2f}",
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
