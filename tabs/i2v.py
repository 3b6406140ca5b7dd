"""Image to video: I2V-Adapter on a frozen text-to-image UNet and AnimateDiff motion module."""
from __future__ import annotations

import json
from pathlib import Path

import gradio as gr

from adapters.i2v import SPEC
from adapters.i2v.config import DEFAULTS, EDG_LIMITS, FRAME_SIZE, LIMITS, MOTION_LIMITS, EDGSettings
from adapters.i2v.io import MAX_PIXELS, MAX_SIDE
from studio import settings
from studio.registry import tab_info
from studio.shell import Shell
from studio.study.i2v import I2V as STUDY_KIND  # noqa: F401  (the blinded reader-study variants of this tab)
from studio.ui import call_device, done_markdown, download_path, friendly, get_model, stopwatch
from studio.uploads import ImageFile, pixel_limit_text

KEY = SPEC.key
ASSETS = Path(__file__).resolve().parent.parent / "assets" / KEY
EXAMPLES_DIR = ASSETS / "examples"

# the browser test waits until this element has decoded the video (readyState >= 2)
INFO = tab_info(SPEC, api_names=("animate", "animate_edg"), browser_result=f"#{KEY}-video-on video")
PARAMS_NOTE = "(frozen: UNet + motion module)"


def _examples() -> list[list]:
    path = EXAMPLES_DIR / "examples.json"
    if not path.is_file():
        return []
    rows = json.loads(path.read_text())
    return [[str(EXAMPLES_DIR / r["image"]), r["prompt"], r["motion_strength"], DEFAULTS["frames"], DEFAULTS["steps"],
             DEFAULTS["guidance"], DEFAULTS["seed"], DEFAULTS["negative_prompt"]] for r in rows]


# rows of run's inputs: image, prompt, motion strength, frames, steps, guidance, seed, negative prompt
EXAMPLES = _examples()
_FIRST = EXAMPLES[0][0] if EXAMPLES else str(EXAMPLES_DIR / "chelsea_pan_left.png")
BAD_INPUTS = [
    ([None, "the scene moves up slowly", 0.5, 8, 8, 4.0, 0, ""], "No image was given"),
    ([str(EXAMPLES_DIR / "examples.json"), "the scene moves up slowly", 0.5, 8, 8, 4.0, 0, ""], "not an image"),
    ([_FIRST, "the scene moves up slowly", 1.7, 8, 8, 4.0, 0, ""], "Motion strength must be between 0 and 1"),
    ([_FIRST, "the scene moves up slowly", 0.5, 40, 8, 4.0, 0, ""], "Frames must be between 2 and 16"),
    ([_FIRST, "the scene moves up slowly", 0.5, 8, 500, 4.0, 0, ""], "Steps must be between 2 and 50"),
]


def request_for(image, prompt, motion_strength, frames, steps, guidance, seed, negative_prompt):
    """Validate every input in the web process and build the device request (or raise BadInput).
    Returns (request, note on how the image was prepared, the model's notice)."""
    from adapters.i2v.config import AnimateRequest
    from adapters.i2v.io import check_settings, load_image

    values = check_settings(prompt, negative_prompt, motion_strength, frames, steps, guidance, seed)
    loaded = get_model(SPEC)  # the frame size is the model's
    prepared = load_image(image, loaded.value.frame_size)
    request = AnimateRequest(pixels=prepared.pixels, prompt=values["prompt"], negative_prompt=values["negative_prompt"],
                             motion_strength=values["motion_strength"], frames=values["frames"], steps=values["steps"],
                             guidance=values["guidance"], seed=values["seed"])
    return request, prepared.note, loaded.notice


@friendly("Animating the image")
def run(image, prompt, motion_strength, frames, steps, guidance, seed, negative_prompt, progress=gr.Progress()):
    """Animate an image; returns the adapter-on video, the adapter-off video, a frame strip,
    flow per frame, the files to download, the picture the model saw and a status line."""
    import numpy as np
    import pandas as pd
    from PIL import Image

    from adapters.i2v.data import psnr
    from adapters.i2v.io import display_scale, frame_strip, to_uint8, upscale, write_mp4

    with stopwatch() as elapsed:
        progress(0, desc="Loading the model")
        request, note, notice = request_for(image, prompt, motion_strength, frames, steps, guidance, seed,
                                            negative_prompt)
        out = call_device(KEY, "run", request, progress)
    result = out.result
    factor = display_scale(request.pixels.shape[0])
    paths = []
    for name, video in (("on", result.video_on), ("off", result.video_off)):
        paths.append(write_mp4(upscale(video, factor), download_path(f"i2v_adapter_{name}.mp4")))
    strip = frame_strip([upscale(result.video_on, max(1, factor // 2)), upscale(result.video_off, max(1, factor // 2))])
    strip_path = download_path("i2v_frames_on_top_off_below.png")
    Image.fromarray(strip).save(strip_path)
    flows = pd.DataFrame(
        [{"frame": i + 1, "flow (px)": float(v), "variant": "adapter on"} for i, v in enumerate(result.flow_on)]
        + [{"frame": i + 1, "flow (px)": float(v), "variant": "adapter off"} for i, v in enumerate(result.flow_off)]
    )
    s = result.motion
    first_psnr = psnr(result.video_on[0], request.pixels)
    extra = (f"Motion strength {s.strength:g}: sampling starts {100 * s.start_fraction:.0f}% of the way up the noise schedule, blur "
             f"{s.blur_sigma:.1f} latent px on {100 * s.blur_mix:.0f}% of positions, branch scale {s.adapter_scale:.2f}. "
             f"Mean flow {float(np.mean(result.flow_on)):.2f} px/frame (adapter off {float(np.mean(result.flow_off)):.2f}); "
             f"frame 0 vs input: {first_psnr:.1f} dB PSNR.")
    notes = [n for n in (note, notice) if n]
    status = done_markdown(elapsed(), out.device, extra) + ("\n\n" + " ".join(notes) if notes else "")
    files = [str(p) for p in paths] + [str(strip_path)]
    seen_path = download_path("i2v_model_input.png")
    Image.fromarray(upscale(to_uint8(request.pixels[None]), factor)[0]).save(seen_path)
    return str(paths[0]), str(paths[1]), str(strip_path), flows, files, str(seen_path), status


EDG_DEFAULTS = EDGSettings()


def _motion_info() -> str:
    """What the slider sets, and the flow it measurably gives on held-out photographs (the bench's
    figures), so the claim next to the slider is a measurement."""
    from adapters.i2v.modeling import motion_settings

    low, high = motion_settings(0.0), motion_settings(1.0)
    text = (f"Sets where sampling starts on the noise schedule ({100 * low.start_fraction:.0f}% to "
            f"{100 * high.start_fraction:.0f}%), the blur of the first-frame prior ({low.blur_sigma:g} to "
            f"{high.blur_sigma:g} latent px) and the first-frame branch's scale ({low.adapter_scale:g} to "
            f"{high.adapter_scale:g}).")
    path = ASSETS / "figures.json"
    try:
        sweep = json.loads(path.read_text())["data"]["motion_sweep"]
        flows = ", ".join(f"{m:g}: {f:.2f}" for m, f in zip(sweep["m"], sweep["flow"]))
        text += f" Measured flow on held-out photos (px/frame, bundled model) at m = {flows}."
    except (OSError, KeyError, TypeError, ValueError):
        pass
    return text


def _edg_settings(alpha, beta_dyn, alpha_con, beta_con, switch_t, keep) -> EDGSettings:
    from adapters.i2v import edg
    from adapters.i2v.io import number

    values = {name: number(name, value, integer=name == "switch_t")
              for name, value in (("alpha", alpha), ("beta_dyn", beta_dyn), ("alpha_con", alpha_con),
                                  ("beta_con", beta_con), ("switch_t", switch_t), ("keep", keep))}
    return edg.check_settings(EDGSettings(**values))


@friendly("Extrapolating and decoupling")
def run_edg(image, prompt, motion_strength, frames, steps, guidance, seed, negative_prompt,
            alpha, beta_dyn, alpha_con, beta_con, switch_t, keep, progress=gr.Progress()):
    """The same request through the pretrained motion module, the text fine-tune and EDG; returns
    three videos, flow per frame, downloads and a status line."""
    import numpy as np
    import pandas as pd

    from adapters.i2v.config import EDGRequest
    from adapters.i2v.data import psnr
    from adapters.i2v.io import display_scale, upscale, write_mp4

    with stopwatch() as elapsed:
        progress(0, desc="Loading the model")
        settings = _edg_settings(alpha, beta_dyn, alpha_con, beta_con, switch_t, keep)
        request, note, notice = request_for(image, prompt, motion_strength, frames, steps, guidance, seed,
                                            negative_prompt)
        out = call_device(KEY, "edg", EDGRequest(request, settings), progress)
    result = out.result
    factor = display_scale(request.pixels.shape[0])
    names = ("pretrained", "fine_tuned", "edg")
    paths = [write_mp4(upscale(v, factor), download_path(f"i2v_{n}.mp4")) for n, v in zip(names, result.videos)]
    flows = pd.DataFrame([{"frame": i + 1, "flow (px)": float(v), "variant": label}
                          for label, flow in zip(result.labels, result.flows) for i, v in enumerate(flow)])
    summary = "; ".join(f"{label}: flow {float(np.mean(f)):.2f} px/frame, frame 0 {psnr(v[0], request.pixels):.1f} dB"
                        for label, f, v in zip(result.labels, result.flows, result.videos))
    extra = (f"EDG with alpha {settings.alpha:g}, beta_dyn {settings.beta_dyn:g}, alpha_con {settings.alpha_con:g}, "
             f"beta_con {settings.beta_con:g}, DARE keep {settings.keep:g}; dynamic model for t > {settings.switch_t}. "
             f"Temporal text adapter: {result.adapter_params:,} parameters. {summary}.")
    notes = [n for n in (note, notice) if n]
    status = done_markdown(elapsed(), out.device, extra) + ("\n\n" + " ".join(notes) if notes else "")
    return (*[str(p) for p in paths], flows, [str(p) for p in paths], status)


def build() -> None:
    shell = Shell(INFO)
    params = shell.header(PARAMS_NOTE)
    with gr.Row():
        with gr.Column(scale=1):
            image = ImageFile(type="filepath", image_mode=None, format="png", sources=["upload", "clipboard"], height=256,
                              label=(f"First frame: the bundled model works at {FRAME_SIZE}x{FRAME_SIZE} pixels, so the "
                                     f"picture is centre-cropped and resized to that ({pixel_limit_text(MAX_PIXELS, MAX_SIDE)})"))
            seen = gr.Image(label="What the model sees (frame 0 at the model's size, enlarged without smoothing)",
                            format="png", type="filepath", height=160, interactive=False, elem_id=f"{KEY}-seen")
            prompt = gr.Textbox(label="Prompt", value=DEFAULTS["prompt"], max_lines=2)
            motion = gr.Slider(*MOTION_LIMITS, value=DEFAULTS["motion_strength"], step=0.05, label="Motion strength",
                               info=_motion_info())
            with gr.Accordion("Advanced settings", open=False):
                frames = gr.Slider(*LIMITS["frames"], value=DEFAULTS["frames"], step=1, label="Frames")
                steps = gr.Slider(*LIMITS["steps"], value=DEFAULTS["steps"], step=1, label="Denoising steps")
                guidance = gr.Slider(*LIMITS["guidance"], value=DEFAULTS["guidance"], step=0.5, label="Guidance scale")
                seed = gr.Number(value=DEFAULTS["seed"], precision=0, label="Seed", minimum=LIMITS["seed"][0])
                negative = gr.Textbox(label="Negative prompt", value=DEFAULTS["negative_prompt"], max_lines=2)
            button = shell.run_button("Animate")
            status = shell.status()
        with gr.Column(scale=2):
            with gr.Row():
                video_on = gr.Video(label="I2V-Adapter on", autoplay=True, loop=True, elem_id=f"{KEY}-video-on")
                video_off = gr.Video(label="Adapter off (same seed, same prior)", autoplay=True, loop=True,
                                     elem_id=f"{KEY}-video-off")
            strip = gr.Image(label="Frames: adapter on (top), off (bottom)", format=settings.IMAGE_FORMAT, type="filepath")
            # the legend's entries do not always render in a short plot: the label names the colours
            plot = gr.LinePlot(x="frame", y="flow (px)", color="variant", height=220,
                               label="Motion per frame, frame f to f+1 (Farneback optical flow): orange = adapter on, blue = adapter off",
                               color_map={"adapter on": "#e8590c", "adapter off": "#1c7ed6"})
            files = gr.File(label="Downloads", file_count="multiple")
    inputs = [image, prompt, motion, frames, steps, guidance, seed, negative]
    with gr.Accordion("Extrapolate and decouple (EDG): direction from the prompt, motion back by extrapolation", open=False):
        gr.Markdown(
            "A light adapter feeds the prompt into the motion module; fine-tuning it with the motion module gives "
            "a model that follows the prompt's direction (theta_sft) but tends to move less. EDG extrapolates away "
            "from that fine-tune for motion (theta_dyn = theta_pre + alpha (theta_pre - theta_sft)), sparsifies both "
            "task vectors (DARE: keep a random share, rescale) and samples with the dynamic model while t > T, the "
            "controllable one after. Merges are computed on the fly from the two weight sets; nothing is retrained. "
            "Uses the image, prompt and settings above; three videos at the same seed.")
        with gr.Row():
            alpha = gr.Slider(*EDG_LIMITS["alpha"], value=EDG_DEFAULTS.alpha, step=0.05, label="alpha (extrapolation)")
            beta_dyn = gr.Slider(*EDG_LIMITS["beta_dyn"], value=EDG_DEFAULTS.beta_dyn, step=0.05, label="beta_dyn")
            alpha_con = gr.Slider(*EDG_LIMITS["alpha_con"], value=EDG_DEFAULTS.alpha_con, step=0.05, label="alpha_con")
        with gr.Row():
            beta_con = gr.Slider(*EDG_LIMITS["beta_con"], value=EDG_DEFAULTS.beta_con, step=0.05, label="beta_con")
            switch_t = gr.Slider(*EDG_LIMITS["switch_t"], value=EDG_DEFAULTS.switch_t, step=10, label="switch step T")
            keep = gr.Slider(*EDG_LIMITS["keep"], value=EDG_DEFAULTS.keep, step=0.05, label="DARE keep rate")
        edg_button = gr.Button("Render with EDG (three videos)", variant="secondary")
        edg_status = gr.Markdown(elem_id=f"{KEY}-edg-status")
        with gr.Row():
            edg_videos = [gr.Video(label=label, autoplay=True, loop=True) for label in
                          ("Pretrained motion module", "Fine-tuned with text (theta_sft)", "EDG (dynamic, then controllable)")]
        edg_plot = gr.LinePlot(x="frame", y="flow (px)", color="variant", height=220, label="Motion per frame")
        edg_files = gr.File(label="Downloads", file_count="multiple")
    shell.heavy(edg_button.click, run_edg, [*inputs, alpha, beta_dyn, alpha_con, beta_con, switch_t, keep],
                [*edg_videos, edg_plot, edg_files, edg_status], api_name="animate_edg")
    shell.examples(EXAMPLES, inputs,
                   label="Examples (held-out photographs: the bundled models never saw them in training)")
    shell.figures("Measured figures for the bundled model")
    shell.on_run(button, run, inputs, [video_on, video_off, strip, plot, files, seen, status], params=params,
                 params_note=PARAMS_NOTE)
