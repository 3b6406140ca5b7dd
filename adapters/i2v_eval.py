"""The figures the model card, the bench and the tab print: measured on held-out sprite prompts with
the model in use, adapter on vs off at the same seeds. No gradio import."""
from __future__ import annotations

import numpy as np
import torch

from adapters import i2v
from adapters.i2v_data import appearance_consistency, flow_magnitudes, held_out_clips, motion_direction, psnr

MOTION_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)


def to_image_tensor(frame: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(frame)).float().permute(2, 0, 1)[None]


def video_array(result: i2v.I2VResult) -> np.ndarray:
    return result.video.permute(0, 2, 3, 1).numpy()


def measure_clip(model, clip, *, m: float, seed: int, adapter_on: bool, steps: int, guidance: float) -> dict:
    result = i2v.animate(model.pipe, to_image_tensor(clip.frames[0]), clip.caption, motion=i2v.motion_settings(m),
                         num_frames=model.num_frames, steps=steps, guidance=guidance, seed=seed, adapter_on=adapter_on)
    video = video_array(result)
    looks = appearance_consistency(video, clip.colour)
    return {
        "shape_iou": looks["shape_iou"],
        "colour_error": looks["colour_error"],
        "direction_ok": float(motion_direction(video, clip.colour) == clip.direction),
        "first_frame_psnr": psnr(video[0], clip.frames[0]),
        "flow": float(flow_magnitudes(video).mean()),
    }


def evaluate(model, *, seeds=(0, 1), m: float = 0.5, motion_grid=MOTION_GRID, steps: int = 20, guidance: float = 4.0,
             per_prompt: int = 1, on_step=None) -> dict:
    """Adapter on/off on every held-out prompt (x seeds), then mean flow per motion strength."""
    clips = held_out_clips(per_prompt=per_prompt, size=model.frame_size, frames=model.num_frames)
    total = len(clips) * len(seeds) * 2 + len(clips) * len(motion_grid)
    done = 0

    def tick():
        nonlocal done
        done += 1
        if on_step:
            on_step(done, total)

    rows = {True: [], False: []}
    for clip in clips:
        for seed in seeds:
            for on in (True, False):
                rows[on].append(measure_clip(model, clip, m=m, seed=seed, adapter_on=on, steps=steps, guidance=guidance))
                tick()
    summary = {}
    for on, name in ((True, "adapter_on"), (False, "adapter_off")):
        summary[name] = {k: float(np.mean([r[k] for r in rows[on]])) for k in rows[on][0]}
    flow = []
    for value in motion_grid:
        per_clip = []
        for clip in clips:
            per_clip.append(measure_clip(model, clip, m=value, seed=seeds[0], adapter_on=True, steps=steps, guidance=guidance))
            tick()
        flow.append({"m": value, "flow": float(np.mean([r["flow"] for r in per_clip])),
                     "first_frame_psnr": float(np.mean([r["first_frame_psnr"] for r in per_clip])),
                     "shape_iou": float(np.mean([r["shape_iou"] for r in per_clip]))})
    flows = [f["flow"] for f in flow]
    summary["motion_sweep"] = flow
    summary["flow_monotone"] = bool(all(b > a for a, b in zip(flows, flows[1:])))
    summary["settings"] = {"held_out_prompts": len(clips), "seeds": list(seeds), "m": m, "steps": steps,
                           "guidance": guidance, "frames": model.num_frames, "size": model.frame_size}
    return summary


def figures_markdown(figures: dict) -> str:
    """The measured figures as a small Markdown table (tab and model card)."""
    if not figures:
        return "_No measured figures for this model yet (run `python -m bench.i2v`)._"
    on, off = figures["adapter_on"], figures["adapter_off"]
    s = figures["settings"]
    lines = [
        f"Measured on {s['held_out_prompts']} held-out sprite prompts x {len(s['seeds'])} seeds "
        f"(m={s['m']}, {s['steps']} steps, guidance {s['guidance']}):",
        "",
        "| | adapter on | adapter off |",
        "|---|---|---|",
        f"| shape consistency (aligned IoU vs frame 0, higher is better) | {on['shape_iou']:.3f} | {off['shape_iou']:.3f} |",
        f"| colour drift (RGB distance vs frame 0, lower is better) | {on['colour_error']:.3f} | {off['colour_error']:.3f} |",
        f"| motion direction matches the caption | {100 * on['direction_ok']:.0f}% | {100 * off['direction_ok']:.0f}% |",
        f"| first-frame PSNR vs input | {on['first_frame_psnr']:.1f} dB | {off['first_frame_psnr']:.1f} dB |",
        "",
        "Mean optical-flow magnitude (px/frame) by motion strength: "
        + ", ".join(f"m={f['m']:g}: {f['flow']:.2f}" for f in figures["motion_sweep"])
        + (" (rises monotonically)." if figures.get("flow_monotone") else " (NOT monotone)."),
    ]
    return "\n".join(lines)
