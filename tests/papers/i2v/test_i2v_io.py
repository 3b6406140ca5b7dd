"""Image-to-video inputs and outputs: image checks, settings checks, browser-playable mp4, strips,
and the sprite-video measurements (on ground-truth clips, where the answers are known)."""
from __future__ import annotations

import subprocess

import numpy as np
import pytest
from PIL import Image

from adapters.common.errors import BadInput
from adapters.i2v import data as i2v_data
from adapters.i2v.io import check_settings, frame_strip, load_image, write_mp4


def probe(path) -> str:
    import imageio_ffmpeg

    return subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True).stderr


def test_mp4_is_h264_yuv420p_with_even_sides(tmp_path):
    frames = np.random.default_rng(0).random((6, 33, 47, 3)).astype(np.float32)
    info = probe(write_mp4(frames, tmp_path / "v.mp4"))
    assert "h264" in info and "yuv420p" in info and "46x32" in info  # width x height, both made even
    import imageio.v2 as imageio

    back = imageio.mimread(str(tmp_path / "v.mp4"))
    assert len(back) == 6 and back[0].shape == (32, 46, 3)


def test_load_image_crops_resizes_and_notes(tmp_path):
    wide = np.zeros((40, 100, 3), np.uint8)
    wide[:, 30:70] = (255, 0, 0)  # the centre square is red, the sides black
    path = tmp_path / "wide.png"
    Image.fromarray(wide).save(path)
    prepared = load_image(str(path), 32)
    assert prepared.pixels.shape == (32, 32, 3) and prepared.pixels.dtype == np.float32
    assert prepared.pixels[:, 4:28, 0].min() > 0.99 and prepared.pixels[:, :, 1].max() == 0
    assert "centre-cropped from 100x40 to 40x40" in prepared.note and "resized to 32x32" in prepared.note
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "exact.png")
    assert load_image(str(tmp_path / "exact.png"), 32).note == ""


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: None, "No image was given"),
        (lambda p: (p / "notes.txt").write_text("hello") and str(p / "notes.txt"), "not an image"),
        (lambda p: Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(p / "tiny.png") or str(p / "tiny.png"), "too small"),
        (lambda p: Image.fromarray(np.zeros((4, 9000), np.uint8)).save(p / "long.png") or str(p / "long.png"), "too large"),
        (lambda p: (p / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40) and str(p / "broken.png"), "not an image"),
    ],
)
def test_bad_images_get_plain_messages(tmp_path, make, message):
    with pytest.raises(BadInput, match=message):
        load_image(make(tmp_path), 32)


def test_settings_are_checked():
    ok = check_settings("", None, 0.3, 8, 20, 4.0, 7)
    assert ok == {"frames": 8, "steps": 20, "guidance": 4.0, "seed": 7, "motion_strength": 0.3, "prompt": "", "negative_prompt": ""}
    for args, message in [
        (("", "", 1.5, 8, 20, 4, 0), "Motion strength must be between 0 and 1"),
        (("", "", 0.5, 99, 20, 4, 0), "Frames must be between 2 and 16"),
        (("", "", 0.5, 8, 0, 4, 0), "Steps must be between 2 and 50"),
        (("", "", 0.5, 8, 20, float("nan"), 0), "Guidance must be a finite number"),
        (("", "", 0.5, 8.5, 20, 4, 0), "Frames must be a whole number"),
        (("", "", 0.5, 8, 20, 4, -1), "Seed must be between"),
        (("", "", 0.5, "lots", 20, 4, 0), "Frames must be a number"),
        (("x" * 400, "", 0.5, 8, 20, 4, 0), "Prompt is too long"),
    ]:
        with pytest.raises(BadInput, match=message):
            check_settings(*args)


def test_frame_strip_layout():
    a = np.zeros((3, 4, 5, 3), np.float32)
    b = np.ones((3, 4, 5, 3), np.float32)
    strip = frame_strip([a, b], gap=2)
    assert strip.shape == (4 + 2 + 4, 3 * 5 + 2 * 2, 3) and strip.dtype == np.uint8
    assert strip[:4, :5].max() == 0 and strip[6:, :5].min() == 255


def test_measurements_on_ground_truth_clips():
    rng = np.random.default_rng(0)
    for direction in i2v_data.DIRECTIONS:
        clip = i2v_data.make_clip(rng, colour="blue", shape="square", direction=direction)
        assert i2v_data.motion_direction(clip.frames, "blue") == direction
        looks = i2v_data.appearance_consistency(clip.frames, "blue")
        assert looks["shape_iou"] > 0.75 and looks["colour_error"] < 0.05
        assert 0.2 < i2v_data.flow_magnitudes(clip.frames).mean() < 1.0  # whole-frame mean: the background is still
    still = np.repeat(clip.frames[:1], 8, axis=0)
    assert i2v_data.motion_direction(still, "blue") is None
    assert i2v_data.flow_magnitudes(still).max() < 0.05
    # a sprite that fades into the background loses appearance consistency
    faded = clip.frames.copy()
    faded[1:] = faded[1:] * (1 - clip.masks[1:, ..., None]) + 0.4 * clip.masks[1:, ..., None]
    assert i2v_data.appearance_consistency(faded, "blue")["shape_iou"] < 0.1
    # a static background is measured as kept; one that drifts or gets noisy is not
    kept = i2v_data.background_fidelity(clip.frames, "blue")
    drifting = clip.frames.copy()
    drifting[1:] = np.roll(drifting[1:], 2, axis=2)
    noisy = np.clip(clip.frames + rng.normal(0, 0.05, clip.frames.shape).astype(np.float32) * (np.arange(8) > 0)[:, None, None, None], 0, 1)
    assert kept == 60.0, kept  # the cap: outside the sprite nothing changes
    assert i2v_data.background_fidelity(drifting, "blue") < kept - 8, i2v_data.background_fidelity(drifting, "blue")
    assert 24.0 < i2v_data.background_fidelity(noisy, "blue") < 28.0  # 0.05 noise: 26 dB
    assert i2v_data.parse_caption("A Red circle, moving left") == ("red", "circle", "left")
    held = i2v_data.held_out_clips()
    assert len(held) == len(i2v_data.HELD_OUT) and all(i2v_data.is_held_out(c) for c in held)
    assert not any(i2v_data.is_held_out(i2v_data.training_clip(rng)) for _ in range(200))
