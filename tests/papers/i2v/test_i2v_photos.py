"""Videos from real photographs: held-out photographs never reach training, clips are reproducible
from a seed, and the motion measured on each clip (the estimator the bench uses on generated
videos) is the move its caption names."""
from __future__ import annotations

import numpy as np
import pytest

from adapters.i2v import photos


def test_training_draws_never_use_a_held_out_photograph():
    rng = np.random.default_rng(0)
    sources = {photos.training_clip(rng, size=32, frames=3).source for _ in range(60)}
    used = {name for s in sources for name in s.split(" over ")}
    assert used <= set(photos.TRAIN_PHOTOS) and not used & set(photos.HELD_OUT_PHOTOS)


def test_clips_are_reproducible_and_in_range():
    a = photos.training_clip(np.random.default_rng(5))
    b = photos.training_clip(np.random.default_rng(5))
    assert a.caption == b.caption and np.array_equal(a.frames, b.frames)
    assert a.frames.shape == (8, 64, 64, 3) and a.frames.dtype == np.float32
    assert 0 <= a.frames.min() and a.frames.max() <= 1


@pytest.mark.parametrize("name", ["chelsea", "astronaut"])
def test_the_measured_move_is_the_named_one(name):
    rng = np.random.default_rng(1)
    for direction in photos.PANS:
        clip = photos.camera_clip(rng, name, kind="pan", direction=direction, speed="fast")
        assert photos.classify_motion(clip.frames) == direction, clip.caption
        assert clip.caption == f"the scene moves {direction} fast"
    for direction in photos.ZOOMS:
        clip = photos.camera_clip(rng, name, kind="zoom", direction=direction, speed="fast")
        assert photos.classify_motion(clip.frames) == direction, clip.caption
    still = np.repeat(clip.frames[:1], 8, axis=0)
    assert photos.classify_motion(still) is None


def test_a_cut_out_object_moves_the_named_way_over_a_still_background():
    rng = np.random.default_rng(2)
    clip = photos.object_clip(rng, "grass", "astronaut", direction="right", speed="fast")
    moving = np.abs(np.diff(clip.frames, axis=0)).sum(-1) > 0.05
    assert 0.02 < moving.mean() < 0.5  # the object moves, the background does not
    xs = [np.nonzero(m)[1].mean() for m in moving]
    assert xs[-1] > xs[0] + 4
