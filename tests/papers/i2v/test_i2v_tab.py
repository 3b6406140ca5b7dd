"""The image-to-video tab with the bundled weights: handler outputs, errors, the measured adapter
effect on held-out prompts, motion strength, and the API end to end."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[3]

torch.set_num_threads(1)
ASSETS = REPO / "assets" / "i2v"
EXAMPLES = json.loads((ASSETS / "examples" / "examples.json").read_text())
FIRST = ASSETS / "examples" / EXAMPLES[0]["image"]


def quiet_progress(*args, **kwargs):
    return None


def probe(path) -> str:
    import imageio_ffmpeg

    return subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True).stderr


def test_import_is_cheap_and_counts_come_from_headers():
    code = ("import sys, tabs.i2v as t; from studio.loader import param_counts; "
            "print(int('diffusers' in sys.modules), int('transformers' in sys.modules)); print(*param_counts(t.INFO.paper))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == "0 0"
    adapter, frozen = map(int, out[1].split())
    from safetensors import safe_open

    with safe_open(str(ASSETS / "i2v_adapter.safetensors"), "pt") as handle:
        assert adapter == sum(handle.get_tensor(k).numel() for k in handle.keys())
    assert 0 < adapter < frozen / 10


@pytest.fixture(scope="module")
def model():
    from adapters.i2v import SPEC
    from studio.loader import MODELS

    return MODELS.get(SPEC).value


def test_handler_gives_playable_videos_strip_plot_and_status(model):
    from tabs.i2v import run as animate_image

    video_on, video_off, strip, flows, files, seen, status = animate_image(
        str(FIRST), EXAMPLES[0]["prompt"], EXAMPLES[0]["motion_strength"], 6, 8, 4.0, 0, "", progress=quiet_progress)
    for path in (video_on, video_off):
        info = probe(path)
        assert "h264" in info and "yuv420p" in info and "256x256" in info
    import imageio.v2 as imageio

    frames_on = np.stack(imageio.mimread(video_on)).astype(np.float32) / 255
    frames_off = np.stack(imageio.mimread(video_off)).astype(np.float32) / 255
    assert frames_on.shape == (6, 256, 256, 3)
    assert np.abs(frames_on[1:] - frames_off[1:]).mean() > 1e-3  # the branch changes the video
    from PIL import Image

    assert Image.open(strip).size[1] > 2 * 32 and Image.open(strip).format == "PNG"
    assert list(flows["variant"].unique()) == ["adapter on", "adapter off"] and len(flows) == 2 * 5
    assert (flows["flow (px)"] >= 0).all()
    assert len(files) == 3 and all(Path(f).is_file() for f in files)
    assert "Done in" in status and "on CPU" in status and "frame 0 vs input" in status
    assert "resized to 64x64" in status  # the 128x128 example is brought to the model's frame size
    # what the model saw: the example at 64 px (each 2x2 block of the 128 px file averaged back to
    # its one pixel), shown enlarged 4x without smoothing
    shown = np.asarray(Image.open(seen))
    example = np.asarray(Image.open(FIRST).convert("RGB"))
    assert shown.shape == (256, 256, 3) and np.array_equal(shown[::4, ::4], example[::2, ::2])


@pytest.mark.parametrize(
    "image, prompt, m, frames, steps, message",
    [
        (None, "red square", 0.5, 8, 8, "No image was given"),
        (str(REPO / "pytest.ini"), "red square", 0.5, 8, 8, "not an image"),
        (str(FIRST), "red square", 1.7, 8, 8, "Motion strength must be between 0 and 1"),
        (str(FIRST), "red square", 0.5, 40, 8, "Frames must be between 2 and 16"),
        (str(FIRST), "red square", 0.5, 8, 500, "Steps must be between 2 and 50"),
    ],
)
def test_bad_input_gives_clear_errors(model, image, prompt, m, frames, steps, message):
    from tabs.i2v import run as animate_image

    with pytest.raises(gr.Error, match=message):
        animate_image(image, prompt, m, frames, steps, 4.0, 0, "", progress=quiet_progress)


def test_empty_prompt_is_allowed(model):
    from tabs.i2v import run as animate_image

    out = animate_image(str(FIRST), "", 0.5, 4, 4, 1.0, 3, "", progress=quiet_progress)
    assert "Done in" in out[-1]


# --- what the paper promises, measured on the bundled model (held-out photographs) -----------

@pytest.fixture(scope="module")
def held_out_runs(model):
    """Leftward pans over two held-out photographs with the adapter on and off at m=1 (the official
    setting: sampling from the fully noised prior), the frozen text-to-video model alone on the same
    captions, and flow over motion strength on all three held-out photographs (median of 3 seeds)."""
    from adapters.i2v.metrics import measure_clip, measure_text_only, motion_sweep, sweep_clips
    from adapters.i2v.photos import held_out_clips

    clips = held_out_clips()
    pans = sweep_clips(clips)[:2]
    pairs = {on: [measure_clip(model, c, m=1.0, seed=0, adapter_on=on, steps=10) for c in pans] for on in (True, False)}
    pairs["text_only"] = [measure_text_only(model, c, seed=0, steps=10, guidance=4.0) for c in pans]
    sweep = motion_sweep(model, clips, seeds=(0, 1, 2), grid=(0.0, 0.5, 1.0), steps=10)
    return pairs, sweep


@pytest.mark.slow
def test_frame_zero_is_the_input_and_the_image_is_what_makes_it_this_picture(held_out_runs):
    """Frame 0 is the clean input through the VAE at 64 px (at least 26 dB); the frozen
    text-to-video model alone, with the same caption and no image, lands far from it."""
    pairs, _ = held_out_runs
    image = [r["first_frame_psnr"] for r in pairs[True]]
    text_only = np.mean([r["first_frame_psnr"] for r in pairs["text_only"]])
    assert min(image) >= 26.0, image
    assert np.mean(image) > text_only + 10.0, (image, text_only)


@pytest.mark.slow
def test_motion_magnitude_rises_with_strength_on_held_out_photographs(held_out_runs):
    _, sweep = held_out_runs
    assert sweep["monotone"], sweep["flow"]
    assert sweep["range_ratio"] >= 2.0, sweep["flow"]
    assert sweep["first_frame_psnr_min"] >= 26.0


@pytest.mark.e2e
def test_animate_api_end_to_end(studio_client):
    from gradio_client import handle_file

    video_on, video_off, strip, plot, files, seen, status = studio_client.predict(
        handle_file(str(FIRST)), EXAMPLES[0]["prompt"], EXAMPLES[0]["motion_strength"], 8, 10, 4.0, 0, "",
        api_name="/animate")
    path_on = video_on["video"] if isinstance(video_on, dict) else video_on
    info = probe(path_on)
    assert "h264" in info and "yuv420p" in info
    assert Path(strip).is_file() and Path(seen).is_file() and len(files) == 3
    assert "Done in" in status and "on CPU" in status


@pytest.mark.skipif(not (ASSETS / "edg_sft.safetensors").is_file(), reason="the EDG fine-tune is not bundled")
def test_edg_section_renders_three_videos_and_refuses_bad_settings(model):
    from tabs.i2v import run_edg

    row = (str(FIRST), EXAMPLES[0]["prompt"], 1.0, 4, 6, 4.0, 0, "")
    *videos, flows, files, status = run_edg(*row, 0.25, 0.75, 1.0, 0.25, 500, 0.3, progress=quiet_progress)
    assert len(videos) == 3 and all("h264" in probe(v) for v in videos)
    assert sorted(set(flows["variant"])) == sorted(["pretrained motion module", "fine-tuned with text (theta_sft)",
                                                    "EDG: extrapolated + decoupled"])
    assert "Done in" in status and "dynamic model for t > 500" in status and len(files) == 3
    with pytest.raises(gr.Error, match="alpha must be a number between 0.0 and 2.0"):
        run_edg(*row, 3.0, 0.75, 1.0, 0.25, 500, 0.3, progress=quiet_progress)
    with pytest.raises(gr.Error, match="switch_t must be a whole number"):
        run_edg(*row, 0.25, 0.75, 1.0, 0.25, 500.5, 0.3, progress=quiet_progress)
