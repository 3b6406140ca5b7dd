"""The figures the model card, the bench and the tab print: measured on held-out sprite prompts with
the model in use, adapter on vs off at the same seeds. No gradio import."""
from __future__ import annotations

import numpy as np
import torch

from adapters import i2v
from adapters.i2v_data import (appearance_consistency, background_fidelity, flow_magnitudes, held_out_clips,
                               motion_direction, psnr)

MOTION_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)


def to_image_tensor(frame: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(frame)).float().permute(2, 0, 1)[None]


def video_array(result: i2v.I2VResult) -> np.ndarray:
    return result.video.permute(0, 2, 3, 1).numpy()


def measure_clip(model, clip, *, m: float, seed: int, adapter_on: bool, steps: int, guidance: float) -> dict:
    result = i2v.animate(model.pipe, to_image_tensor(clip.frames[0]), clip.caption, motion=i2v.motion_settings(m),
                         num_frames=model.num_frames, steps=steps, guidance=guidance, seed=seed, adapter_on=adapter_on)
    return video_figures(video_array(result), clip)


def measure_text_only(model, clip, *, seed: int, steps: int, guidance: float) -> dict:
    """The frozen text-to-video model alone on the clip's caption (it never sees the image)."""
    video = i2v.text_to_video(model.pipe, clip.caption, num_frames=model.num_frames, steps=steps, guidance=guidance,
                              seed=seed)
    return video_figures(video.permute(0, 2, 3, 1).numpy(), clip)


def video_figures(video: np.ndarray, clip) -> dict:
    looks = appearance_consistency(video, clip.colour)
    return {
        "shape_iou": looks["shape_iou"],
        "colour_error": looks["colour_error"],
        "background_psnr": background_fidelity(video, clip.colour),
        "direction_ok": float(motion_direction(video, clip.colour) == clip.direction),
        "first_frame_psnr": psnr(video[0], clip.frames[0]),
        "flow": float(flow_magnitudes(video).mean()),
    }


def _mean_rows(rows: list[dict]) -> dict:
    return {k: float(np.nanmean([r[k] for r in rows])) for k in rows[0]}


def evaluate(model, *, seeds=(0, 1), pair_strengths=(0.5, 1.0), motion_grid=MOTION_GRID, steps: int = 20,
             guidance: float = 4.0, per_prompt: int = 1, on_step=None) -> dict:
    """Adapter on/off on every held-out prompt (x seeds) at each of `pair_strengths` (m=1 is the
    official inference setting: sampling from the fully noised prior), then mean flow per m."""
    clips = held_out_clips(per_prompt=per_prompt, size=model.frame_size, frames=model.num_frames)
    total = len(clips) * len(seeds) * (2 * len(pair_strengths) + 1) + len(clips) * len(motion_grid)
    done = 0

    def tick():
        nonlocal done
        done += 1
        if on_step:
            on_step(done, total)

    pairs = []
    for m in pair_strengths:
        rows = {True: [], False: []}
        for clip in clips:
            for seed in seeds:
                for on in (True, False):
                    rows[on].append(measure_clip(model, clip, m=m, seed=seed, adapter_on=on, steps=steps, guidance=guidance))
                    tick()
        pairs.append({"m": m, "adapter_on": _mean_rows(rows[True]), "adapter_off": _mean_rows(rows[False])})
    text_only = []
    for clip in clips:
        for seed in seeds:
            text_only.append(measure_text_only(model, clip, seed=seed, steps=steps, guidance=guidance))
            tick()
    flow = []
    for value in motion_grid:
        per_clip = []
        for clip in clips:
            per_clip.append(measure_clip(model, clip, m=value, seed=seeds[0], adapter_on=True, steps=steps, guidance=guidance))
            tick()
        flow.append({"m": value, **_mean_rows(per_clip)})
    flows = [f["flow"] for f in flow]
    return {
        "pairs": pairs,
        "text_only": _mean_rows(text_only),
        "motion_sweep": flow,
        "flow_monotone": bool(all(b > a for a, b in zip(flows, flows[1:]))),
        "settings": {"held_out_prompts": len(clips), "seeds": list(seeds), "steps": steps, "guidance": guidance,
                     "frames": model.num_frames, "size": model.frame_size},
    }


def figures_markdown(figures: dict) -> str:
    """The measured figures as Markdown tables (tab and model card)."""
    if not figures:
        return "_No measured figures for this model yet (run `python -m bench.i2v --write`)._"
    s = figures["settings"]
    lines = [
        f"Measured on {s['held_out_prompts']} held-out sprite prompts x {len(s['seeds'])} seeds "
        f"({s['steps']} steps, guidance {s['guidance']}, {s['frames']} frames of {s['size']}x{s['size']}); "
        "adapter off = same sampler, prior and seed with the branch at 0.",
        "",
        "| motion strength | variant | shape consistency (IoU vs frame 0, higher better) | colour drift (lower better) "
        "| background kept (PSNR vs frame 0, higher better) | direction matches caption | first-frame PSNR vs input |",
        "|---|---|---|---|---|---|---|",
    ]

    def row(m: str, label: str, r: dict) -> str:
        return (f"| {m} | {label} | {r['shape_iou']:.3f} | {r['colour_error']:.3f} | {r.get('background_psnr', float('nan')):.1f} dB | "
                f"{100 * r['direction_ok']:.0f}% | {r['first_frame_psnr']:.1f} dB |")

    for pair in figures["pairs"]:
        for name, label in (("adapter_on", "**adapter on**"), ("adapter_off", "adapter off")):
            lines.append(row(f"{pair['m']:g}", label, pair[name]))
    if "text_only" in figures:
        lines.append(row("-", "frozen text-to-video alone (no image)", figures["text_only"]))
    lines += [
        "",
        "| motion strength m | " + " | ".join(f"{f['m']:g}" for f in figures["motion_sweep"]) + " |",
        "|---|" + "---|" * len(figures["motion_sweep"]),
        "| mean flow (px/frame) | " + " | ".join(f"{f['flow']:.3f}" for f in figures["motion_sweep"]) + " |",
        "| shape consistency | " + " | ".join(f"{f['shape_iou']:.3f}" for f in figures["motion_sweep"]) + " |",
        "| first-frame PSNR (dB) | " + " | ".join(f"{f['first_frame_psnr']:.1f}" for f in figures["motion_sweep"]) + " |",
        "",
        "Flow " + ("rises monotonically with m." if figures.get("flow_monotone") else "does **not** rise monotonically with m."),
    ]
    return "\n".join(lines)
