"""The figures the bench measures (and the model card and the tab print): measured on camera moves
over held-out photographs (`photos.held_out_clips`, never used in training) with the model in use.
The input is a clip's frame 0 and the prompt its caption; the clip's later frames are what the
named move really looks like. No gradio import."""
from __future__ import annotations

import numpy as np
import torch

from adapters.common.contract import Progress
from adapters.i2v import modeling as i2v
from adapters.i2v.data import flow_magnitudes, psnr
from adapters.i2v.photos import HELD_OUT_PHOTOS, classify_motion, held_out_clips

MOTION_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)
EDG_ALPHAS = (0.0, 0.25, 0.5, 1.0)


def to_image_tensor(frame: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(frame)).float().permute(2, 0, 1)[None]


def video_array(result: i2v.I2VResult) -> np.ndarray:
    return result.video.permute(0, 2, 3, 1).numpy()


def video_figures(video: np.ndarray, clip) -> dict:
    """First-frame fidelity, motion (flow magnitude, and the named move `classify_motion` reads from
    the global flow) and how close frames 1.. come to the real move the caption names."""
    return {
        "first_frame_psnr": psnr(video[0], clip.frames[0]),
        "move_psnr": float(np.mean([psnr(a, b) for a, b in zip(video[1:], clip.frames[1:])])),
        "flow": float(flow_magnitudes(video).mean()),
        "direction_ok": float(classify_motion(video) == clip.direction),
    }


def render(model, clip, *, m: float, seed: int, steps: int, guidance: float, adapter_on: bool = True,
           unets=None) -> np.ndarray:
    result = i2v.animate(model.pipe, to_image_tensor(clip.frames[0]), clip.caption, motion=i2v.motion_settings(m),
                         num_frames=model.num_frames, steps=steps, guidance=guidance, seed=seed,
                         adapter_on=adapter_on, unets=unets)
    return video_array(result)


def measure_clip(model, clip, *, m: float, seed: int, adapter_on: bool = True, steps: int = 20, guidance: float = 4.0,
                 unets=None) -> dict:
    return video_figures(render(model, clip, m=m, seed=seed, steps=steps, guidance=guidance, adapter_on=adapter_on,
                                unets=unets), clip)


def measure_text_only(model, clip, *, seed: int, steps: int, guidance: float) -> dict:
    """The frozen text-to-video model alone on the clip's caption (it never sees the image)."""
    video = i2v.text_to_video(model.pipe, clip.caption, num_frames=model.num_frames, steps=steps, guidance=guidance,
                              seed=seed)
    return video_figures(video.permute(0, 2, 3, 1).numpy(), clip)


def _mean_rows(rows: list[dict]) -> dict:
    return {k: float(np.nanmean([r[k] for r in rows])) for k in rows[0]}


def sweep_clips(clips) -> list:
    """One clip per held-out photograph for the motion-strength sweep: its leftward pan."""
    return [next(c for c in clips if c.source == name and c.direction == "left") for name in HELD_OUT_PHOTOS]


def motion_sweep(model, clips, *, seeds=(0, 1, 2), grid=MOTION_GRID, steps: int = 20, guidance: float = 4.0,
                 tick=None) -> dict:
    """Flow against motion strength: per photo, the median over seeds at each m; the summary is the
    mean of those medians. Monotone means every step of m raises it, per photo and overall."""
    per_photo = {}
    first = []
    for clip in sweep_clips(clips):
        medians = []
        for m in grid:
            runs = []
            for seed in seeds:
                runs.append(measure_clip(model, clip, m=m, seed=seed, steps=steps, guidance=guidance))
                if tick:
                    tick()
            medians.append(float(np.median([r["flow"] for r in runs])))
            first += [r["first_frame_psnr"] for r in runs]
        per_photo[clip.source] = medians
    overall = [float(np.mean([v[i] for v in per_photo.values()])) for i in range(len(grid))]

    def rising(values):
        return bool(all(b > a for a, b in zip(values, values[1:])))

    return {"m": list(grid), "flow": overall, "per_photo": per_photo, "monotone": rising(overall),
            "monotone_per_photo": {k: rising(v) for k, v in per_photo.items()},
            "range_ratio": overall[-1] / max(overall[0], 1e-6), "first_frame_psnr_min": float(min(first)),
            "seeds": list(seeds)}


def evaluate(model, *, seeds=(0, 1, 2), pair_strengths=(0.5, 1.0), motion_grid=MOTION_GRID, steps: int = 20,
             guidance: float = 4.0, progress: Progress = None) -> dict:
    """Adapter on/off on every held-out clip at each of `pair_strengths` (first seed), the frozen
    text-to-video model alone on the same captions, and the motion-strength sweep over `seeds`."""
    clips = held_out_clips(size=model.frame_size, frames=model.num_frames)
    total = len(clips) * (2 * len(pair_strengths) + 1) + len(HELD_OUT_PHOTOS) * len(motion_grid) * len(seeds)
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
            for on in (True, False):
                rows[on].append(measure_clip(model, clip, m=m, seed=seeds[0], adapter_on=on, steps=steps,
                                             guidance=guidance))
                tick()
        pairs.append({"m": m, "adapter_on": _mean_rows(rows[True]), "adapter_off": _mean_rows(rows[False])})
    text_only = []
    for clip in clips:
        text_only.append(measure_text_only(model, clip, seed=seeds[0], steps=steps, guidance=guidance))
        tick()
    sweep = motion_sweep(model, clips, seeds=seeds, grid=motion_grid, steps=steps, guidance=guidance, tick=tick)
    return {
        "pairs": pairs,
        "text_only": _mean_rows(text_only),
        "motion_sweep": sweep,
        "settings": {"held_out_clips": len(clips), "photos": list(HELD_OUT_PHOTOS), "seeds": list(seeds),
                     "steps": steps, "guidance": guidance, "frames": model.num_frames, "size": model.frame_size},
    }


def _direction_rows(rows: list[tuple[str, dict]]) -> dict:
    """Mean figures, with direction accuracy also split into pans and zooms."""
    out = _mean_rows([r for _, r in rows])
    for kind in ("pan", "zoom"):
        picked = [r["direction_ok"] for k, r in rows if k == kind]
        out[f"direction_ok_{kind}"] = float(np.mean(picked)) if picked else float("nan")
    out["cases"] = len(rows)
    return out


def evaluate_edg(model, *, seeds=(0, 1, 2), m: float = 1.0, alphas=EDG_ALPHAS, steps: int = 20, guidance: float = 4.0,
                 progress: Progress = None) -> dict:
    """Every held-out clip x seeds through the pretrained motion module, the text fine-tune, EDG at
    the official defaults (dynamic for t > T, then controllable) and EDG's controllable model alone;
    then EDG with alpha swept (everything else at the defaults), first seed. Same image, prior and
    seed for every variant."""
    from adapters.i2v import edg
    from adapters.i2v.config import EDGSettings

    clips = held_out_clips(size=model.frame_size, frames=model.num_frames)
    total = len(clips) * (4 * len(seeds) + len(alphas))
    done = 0

    def run(clip, seed, unets):
        nonlocal done
        figures = measure_clip(model, clip, m=m, seed=seed, steps=steps, guidance=guidance, unets=unets)
        done += 1
        if progress:
            progress(done / total, f"{done} of {total} videos")
        return clip.kind, figures

    fine_tune, pair = edg.models_for(model, EDGSettings())
    controllable = edg.DecoupledUNets(pair.controllable, pair.controllable, pair.switch_t)
    variants = {"pretrained": None, "fine_tuned": fine_tune, "edg": pair, "controllable": controllable}
    rows = {name: _direction_rows([run(clip, seed, unets) for clip in clips for seed in seeds])
            for name, unets in variants.items()}
    sweep = []
    for alpha in alphas:
        _, swept = edg.models_for(model, EDGSettings(alpha=alpha))
        sweep.append({"alpha": alpha, **_direction_rows([run(clip, seeds[0], swept) for clip in clips])})
    return {"variants": rows, "alpha_sweep": sweep,
            "settings": {"held_out_clips": len(clips), "seeds": list(seeds), "steps": steps, "guidance": guidance,
                         "m": m, "edg": EDGSettings().__dict__}}
