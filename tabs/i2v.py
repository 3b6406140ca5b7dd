"""Image to video: I2V-Adapter on a frozen text-to-image UNet and AnimateDiff motion module."""
from __future__ import annotations

import json
from pathlib import Path

import gradio as gr

from studio import settings
from studio.device import compute_device, device_label, gpu, on_space
from studio.loader import MODELS, ModelSpec, count_safetensors_params
from studio.registry import TabInfo
from studio.ui import done_markdown, download_path, friendly, params_markdown, stopwatch

KEY = "i2v"
ASSETS = Path(__file__).resolve().parent.parent / "assets" / KEY
EXAMPLES = ASSETS / "examples"


def _load_bundled(directory: Path):
    from adapters.i2v_bundle import load_bundled

    return load_bundled(directory)


def _load_hub(repo_or_dir: str):
    from adapters.i2v_bundle import load_hub

    return load_hub(repo_or_dir)


# the lead's browser test waits until this element has decoded the video (readyState >= 2)
BROWSER_RESULT = f"#{KEY}-video-on video"

SPEC = ModelSpec(key=KEY, hub_id="space-xun/i2v_adapter", load_bundled=_load_bundled, load_hub=_load_hub)


def param_counts() -> tuple[int, int]:
    """(I2V branch, frozen UNet + motion module): the loaded model, else the bundled file headers."""
    loaded = MODELS.loaded(KEY)
    if loaded is not None:
        return loaded.value.param_counts()
    try:
        adapter = count_safetensors_params(ASSETS / "i2v_adapter.safetensors")
        frozen = count_safetensors_params(ASSETS / "unet.safetensors") + count_safetensors_params(ASSETS / "motion_adapter.safetensors")
    except (OSError, RuntimeError, ValueError):  # weights not trained yet
        return 0, 0
    return adapter, frozen


INFO = TabInfo(
    key=KEY,
    title="Image to video",
    paper="I2V-Adapter: A General Image-to-Video Adapter for Diffusion Models (Guo et al., 2023)",
    paper_url="https://arxiv.org/abs/2312.16693",
    frozen_model="Text-to-image UNet + AnimateDiff motion module (bundled: tiny models trained here; hub: Stable Diffusion 1.5 + animatediff-motion-adapter-v1-5-2 + IP-Adapter)",
    adapter="A first-frame attention branch (new query + zero-initialised output projection) in every spatial self-attention",
    description=(
        "**I2V-Adapter** animates one still image without touching the text-to-image model or its motion "
        "module: a parallel branch in each spatial self-attention lets every frame look at the first frame "
        "(new query and output projections; keys and values from the frozen layers), the first frame stays "
        "the clean input at every step, and sampling starts from the *Frame Similarity Prior*, a blurred and "
        "noised copy of the first frame. One **motion strength** slider sets the prior's noise level, its "
        "blur and the branch's scale. The bundled models are tiny and trained here on synthetic sprite videos "
        "(32x32, 8 frames): describe a sprite as \"red circle moving left\". Measured on them (figures below): "
        "motion strength controls how much moves; the adapter keeps the background closer to the first frame, "
        "and at full strength the sprite's colour too (small effects on toy models). Which way the sprite moves "
        "is up to the frozen models, and these tiny ones do not follow the direction words (the frozen "
        "text-to-video model alone does not either)."
    ),
    spec=SPEC,
    param_counts=param_counts,
    api_names=("animate",),
)


def _duration(pixels, prompt, negative_prompt, motion_strength, frames, steps, *args, **kwargs) -> int:
    """ZeroGPU seconds to reserve: two videos (adapter on and off) of frames x steps UNet passes;
    about 0.05 s per frame-step for SD 1.5 at 512 px on a ZeroGPU slice, plus model moves."""
    return int(min(300, 30 + 2 * 0.05 * int(frames or 16) * int(steps or 25)))


@gpu(duration=_duration)
def generate(pixels, prompt: str, negative_prompt: str, motion_strength: float, frames: int, steps: int,
             guidance: float, seed: int, on_step=None) -> dict:
    """Adapter on and off at the same seed; returns numpy videos, flow per frame and the device."""
    loaded = MODELS.get(SPEC)
    model = loaded.value
    # CPU threads are set once per process (studio.device.configure_threads, one by default): the
    # bundled model is thousands of tiny ops, which a second thread only slows down on a shared box.
    return _generate(model, loaded.notice, pixels, prompt, negative_prompt, motion_strength, frames, steps,
                     guidance, seed, on_step)


def _generate(model, notice, pixels, prompt, negative_prompt, motion_strength, frames, steps, guidance, seed, on_step):
    import numpy as np
    import torch

    from adapters import i2v
    from adapters.i2v_data import flow_magnitudes
    from adapters.i2v_eval import to_image_tensor

    device = compute_device()
    model.pipe.to(device)
    image = to_image_tensor(pixels).to(device)
    motion = i2v.motion_settings(motion_strength)
    ip_image = None
    if model.uses_ip_adapter:
        from PIL import Image

        ip_image = Image.fromarray((np.clip(pixels, 0, 1) * 255).astype("uint8"))
    videos = {}
    for index, on in enumerate((True, False)):
        def tick(i, n, index=index):
            if on_step:
                on_step(index * n + i, 2 * n)

        with torch.inference_mode():
            result = i2v.animate(model.pipe, image, prompt, motion=motion, num_frames=frames, steps=steps,
                                 guidance=guidance, negative_prompt=negative_prompt, seed=seed, adapter_on=on,
                                 ip_adapter_image=ip_image, on_step=tick)
        videos[on] = result.video.permute(0, 2, 3, 1).numpy()
    return {"on": videos[True], "off": videos[False], "flow_on": flow_magnitudes(videos[True]),
            "flow_off": flow_magnitudes(videos[False]), "device": device_label(device), "notice": notice,
            "settings": motion}


@friendly("Animating the image")
def animate_image(image, prompt, motion_strength, frames, steps, guidance, seed, negative_prompt,
                  progress=gr.Progress()):
    """Animate an image; returns the adapter-on video, the adapter-off video, a frame strip,
    flow per frame, the files to download and a status line."""
    import numpy as np
    import pandas as pd

    from adapters.i2v_data import psnr
    from adapters.i2v_io import check_settings, display_scale, frame_strip, load_image, upscale, write_mp4

    values = check_settings(prompt, negative_prompt, motion_strength, frames, steps, guidance, seed)
    with stopwatch() as elapsed:
        progress(0, desc="Loading the model")
        model = MODELS.get(SPEC).value
        prepared = load_image(image, model.frame_size)
        out = generate(prepared.pixels, values["prompt"], values["negative_prompt"], values["motion_strength"],
                       values["frames"], values["steps"], values["guidance"], values["seed"],
                       # a ZeroGPU worker receives pickled arguments: no callback there
                       on_step=None if on_space() else lambda i, n: progress(i / n, desc="Denoising (adapter on, then off)"))
    factor = display_scale(model.frame_size)
    paths = []
    for name in ("on", "off"):
        paths.append(write_mp4(upscale(out[name], factor), download_path(f"i2v_adapter_{name}.mp4")))
    strip = frame_strip([upscale(out["on"], max(1, factor // 2)), upscale(out["off"], max(1, factor // 2))])
    strip_path = download_path("i2v_frames_on_top_off_below.png")
    from PIL import Image

    Image.fromarray(strip).save(strip_path)
    flows = pd.DataFrame(
        [{"frame": i + 1, "flow (px)": float(v), "variant": "adapter on"} for i, v in enumerate(out["flow_on"])]
        + [{"frame": i + 1, "flow (px)": float(v), "variant": "adapter off"} for i, v in enumerate(out["flow_off"])]
    )
    s = out["settings"]
    first_psnr = psnr(out["on"][0], prepared.pixels)
    extra = (f"Motion strength {s.strength:g}: prior noise {100 * s.start_fraction:.0f}% of the schedule, blur "
             f"{s.blur_sigma:.1f} latent px on {100 * s.blur_mix:.0f}% of positions, branch scale {s.adapter_scale:.2f}. "
             f"Mean flow {float(np.mean(out['flow_on'])):.2f} px/frame (adapter off {float(np.mean(out['flow_off'])):.2f}); "
             f"frame 0 vs input: {first_psnr:.1f} dB PSNR.")
    notes = [n for n in (prepared.note, out["notice"]) if n]
    status = done_markdown(elapsed(), out["device"], extra) + ("\n\n" + " ".join(notes) if notes else "")
    files = [str(p) for p in paths] + [str(strip_path)]
    return str(paths[0]), str(paths[1]), str(strip_path), flows, files, status


def _examples() -> list[list]:
    path = EXAMPLES / "examples.json"
    if not path.is_file():
        return []
    rows = json.loads(path.read_text())
    return [[str(EXAMPLES / r["image"]), r["prompt"], r["motion_strength"], 8, 20, 4.0, 0, ""] for r in rows]


def _figures() -> str:
    from adapters.i2v_eval import figures_markdown

    path = ASSETS / "figures.json"
    return figures_markdown(json.loads(path.read_text()) if path.is_file() else {})


def build() -> None:
    adapter, frozen = param_counts()
    gr.Markdown(params_markdown(adapter, frozen) + " (frozen: UNet + motion module)", elem_classes="studio-params")
    with gr.Row():
        with gr.Column(scale=1):
            image = gr.Image(label="First frame (any size: centre-cropped and resized)", type="filepath",
                             format="png", sources=["upload", "clipboard"], height=256)
            prompt = gr.Textbox(label="Prompt", value="red circle moving left", max_lines=2)
            motion = gr.Slider(0, 1, value=0.5, step=0.05, label="Motion strength",
                               info="Higher: noisier, more degraded start and a lighter first-frame branch: more motion")
            with gr.Accordion("Advanced settings", open=False):
                frames = gr.Slider(2, 16, value=8, step=1, label="Frames")
                steps = gr.Slider(2, 50, value=20, step=1, label="Denoising steps")
                guidance = gr.Slider(1, 15, value=4.0, step=0.5, label="Guidance scale")
                seed = gr.Number(value=0, precision=0, label="Seed", minimum=0)
                negative = gr.Textbox(label="Negative prompt", value="", max_lines=2)
            run = gr.Button("Animate", variant="primary", elem_id=f"{KEY}-run")
            status = gr.Markdown(elem_id=f"{KEY}-status", elem_classes="studio-status")
        with gr.Column(scale=2):
            with gr.Row():
                video_on = gr.Video(label="I2V-Adapter on", autoplay=True, loop=True, elem_id=f"{KEY}-video-on")
                video_off = gr.Video(label="Adapter off (same seed, same prior)", autoplay=True, loop=True, elem_id=f"{KEY}-video-off")
            strip = gr.Image(label="Frames: adapter on (top), off (bottom)", format=settings.IMAGE_FORMAT, type="filepath")
            # the legend's entries do not always render in a short plot: the label names the colours
            plot = gr.LinePlot(x="frame", y="flow (px)", color="variant", height=220,
                               label="Motion per frame, frame f to f+1 (Farneback optical flow): orange = adapter on, blue = adapter off",
                               color_map={"adapter on": "#e8590c", "adapter off": "#1c7ed6"})
            files = gr.File(label="Downloads", file_count="multiple")
    gr.Examples(
        examples=_examples(),
        inputs=[image, prompt, motion, frames, steps, guidance, seed, negative],
        elem_id=f"{KEY}-examples",
        label="Examples (held-out sprite prompts: the bundled models never saw these combinations)",
    )
    with gr.Accordion("Measured figures for the bundled model", open=False):
        gr.Markdown(_figures())
    run.click(
        animate_image,
        inputs=[image, prompt, motion, frames, steps, guidance, seed, negative],
        outputs=[video_on, video_off, strip, plot, files, status],
        api_name="animate",
        concurrency_id=settings.HEAVY,
        concurrency_limit=settings.HEAVY_CONCURRENCY,
    )
