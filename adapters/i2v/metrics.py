"""The figures the bench measures (and the model card and the tab print): measured on held-out
sprite prompts with the model in use, adapter on vs off at the same seeds. No gradio import."""
from __future__ import annotations

import numpy as np
import torch

from adapters.common.contract import Progress
from adapters.i2v import modeling as i2v
from adapters.i2v.data import appearance_consistency, background_fidelity, flow_magnitudes, held_out_clips, motion_direction, psnr

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
             guidance: float = 4.0, per_prompt: int = 1, progress: Progress = None) -> dict:
    """Adapter on/off on every held-out prompt (x seeds) at each of `pair_strengths` (m=1 is the
    official inference setting: sampling from the fully noised prior), then mean flow per m."""
    clips = held_out_clips(per_prompt=per_prompt, size=model.frame_size, frames=model.num_frames)
    total = len(clips) * len(seeds) * (2 * len(pair_strengths) + 1) + len(clips) * len(motion_grid)
    done = 0

    def tick():
        nonlocal done
        done += 1
        if progress:
            progress(done / total, f"{done} of {total} videos")

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


EDG_ALPHAS = (0.0, 0.25, 0.5, 1.0)


def evaluate_edg(model, *, seeds=(0, 1, 2), m: float = 1.0, alphas=EDG_ALPHAS, steps: int = 20, guidance: float = 4.0,
                 progress: Progress = None) -> dict:
    """Held-out prompts x seeds through the pretrained motion module, the text fine-tune and EDG at
    the official defaults (direction accuracy, flow, frame-0 fidelity); then EDG with alpha swept
    (everything else at the defaults), seed 0. Same image, prior and seed for every variant."""
    from adapters.i2v import edg
    from adapters.i2v.config import EDGSettings

    clips = held_out_clips(per_prompt=1, size=model.frame_size, frames=model.num_frames)
    motion = i2v.motion_settings(m)
    total = len(clips) * (3 * len(seeds) + len(alphas))
    done = 0

    def render(clip, seed, unets):
        nonlocal done
        result = i2v.animate(model.pipe, to_image_tensor(clip.frames[0]), clip.caption, motion=motion,
                             num_frames=model.num_frames, steps=steps, guidance=guidance, seed=seed, unets=unets)
        done += 1
        if progress:
            progress(done / total, f"{done} of {total} videos")
        return video_figures(video_array(result), clip)

    fine_tune, pair = edg.models_for(model, EDGSettings())
    variants = {"pretrained": None, "fine_tuned": fine_tune, "edg": pair}
    rows = {name: [render(clip, seed, unets) for clip in clips for seed in seeds] for name, unets in variants.items()}
    sweep = []
    for alpha in alphas:
        _, swept = edg.models_for(model, EDGSettings(alpha=alpha))
        sweep.append({"alpha": alpha, **_mean_rows([render(clip, seeds[0], swept) for clip in clips])})
    return {"variants": {name: _mean_rows(r) for name, r in rows.items()}, "alpha_sweep": sweep,
            "settings": {"held_out_prompts": len(clips), "seeds": list(seeds), "steps": steps, "guidance": guidance,
                         "m": m, "edg": EDGSettings().__dict__}}
