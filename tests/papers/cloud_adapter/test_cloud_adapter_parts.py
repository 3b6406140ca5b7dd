"""What only Cloud-Adapter needs: the simulator's sliders mean what they say, the Landsat split
keeps held-out pixels out of training, tiles stitch back exactly, IoU/F1 by hand, and the depth
switches and strength act on the adapter alone."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from adapters.cloud_adapter.simulate import SHADOW, THICK_CLOUD, THIN_CLOUD, CloudSettings, simulate
from adapters.common.errors import BadInput
from adapters.dense import landsat, tiling
from adapters.dense.metrics import confusion, scores


@pytest.fixture(scope="module")
def ground():
    return landsat.scene().rgb[120:232, 360:472]


def _fractions(labels):
    return np.bincount(labels.ravel(), minlength=4) / labels.size


def test_the_scene_is_the_real_landsat_scene_split_by_region():
    sc = landsat.scene(with_nir=True)
    assert sc.rgb.shape == (443, 489, 3) and sc.nir.shape == (443, 489)
    assert 0.8 < sc.valid.mean() < 0.9 and sc.rgb.min() >= 0 and sc.rgb.max() <= 1
    train = landsat.tile_origins("train", 112, 4, sc.valid)
    held = landsat.tile_origins("heldout", 112, 28, sc.valid)
    assert train and held
    assert max(x for _, x in train) + 112 <= landsat.TRAIN_COLUMNS[1] < landsat.HELDOUT_COLUMNS[0] <= min(x for _, x in held)


def test_coverage_thickness_mix_and_offset_do_what_the_sliders_say(ground):
    _, light, alpha = simulate(ground, CloudSettings(coverage=0.2, thickness=0.9, thin_mix=0.3, shadow_offset=0, seed=5))
    _, heavy, _ = simulate(ground, CloudSettings(coverage=0.7, thickness=0.9, thin_mix=0.3, shadow_offset=0, seed=5))
    assert abs((alpha > 0).mean() - 0.2) < 0.03
    assert _fractions(heavy)[[THICK_CLOUD, THIN_CLOUD]].sum() > 2.5 * _fractions(light)[[THICK_CLOUD, THIN_CLOUD]].sum()
    assert _fractions(light)[SHADOW] == 0  # offset 0: the shadow lies under its own cloud
    _, shadowed, _ = simulate(ground, CloudSettings(coverage=0.2, thickness=0.9, thin_mix=0.3, shadow_offset=20, seed=5))
    assert _fractions(shadowed)[SHADOW] > 0.05
    _, veils, _ = simulate(ground, CloudSettings(coverage=0.5, thickness=0.9, thin_mix=1.0, shadow_offset=0, seed=5))
    _, hard, _ = simulate(ground, CloudSettings(coverage=0.5, thickness=0.9, thin_mix=0.0, shadow_offset=0, seed=5))
    assert _fractions(veils)[THIN_CLOUD] > 3 * _fractions(hard)[THIN_CLOUD]
    _, faint, _ = simulate(ground, CloudSettings(coverage=0.5, thickness=0.4, thin_mix=0.0, shadow_offset=0, seed=5))
    assert _fractions(faint)[THICK_CLOUD] == 0 and _fractions(faint)[THIN_CLOUD] > 0.4


def test_clouds_brighten_and_shadows_darken_the_ground(ground):
    image, labels, _ = simulate(ground, CloudSettings(coverage=0.4, thickness=1.0, thin_mix=0.2, shadow_offset=20, seed=2))
    thick, shadow = labels == THICK_CLOUD, labels == SHADOW
    assert image[thick].mean() > ground[thick].mean() + 0.3
    assert image[shadow].mean() < ground[shadow].mean() * 0.8


def test_bad_cloud_settings_are_refused():
    with pytest.raises(BadInput, match="coverage must lie between"):
        CloudSettings(coverage=1.5).check()
    with pytest.raises(BadInput, match="thickness"):
        CloudSettings(thickness=float("nan")).check()


def test_tiles_stitch_back_exactly():
    rng = np.random.default_rng(0)
    scores_map = rng.random((3, 150, 260)).astype(np.float32)
    corners = tiling.origins(150, 260, 112, overlap=16)
    tiles = tiling.cut(scores_map.transpose(1, 2, 0), corners, 112).transpose(0, 3, 1, 2)
    assert np.allclose(tiling.stitch(tiles, corners, 150, 260), scores_map, atol=1e-6)
    with pytest.raises(ValueError):
        tiling.origins(100, 260, 112)


def test_iou_and_f1_by_hand():
    truth = np.array([0, 0, 1, 1, 2, 255])
    pred = np.array([0, 1, 1, 1, 0, 2])
    s = scores(confusion(pred, truth, 3))
    assert np.allclose(s["iou"], [1 / 3, 2 / 3, 0.0])
    assert np.allclose(s["f1"], [0.5, 0.8, 0.0])
    assert s["miou"] == pytest.approx(1 / 3)


def test_depth_switches_and_strength_act_on_the_adapter_only():
    from adapters.cloud_adapter import testing

    bundle = testing.tiny_bundle()
    testing.perturb_adapter(bundle, seed=3)
    x = testing._input()
    with torch.no_grad():
        none = bundle.full(x, depths={"shallow": False, "middle": False, "deep": False})
        zero = bundle.full(x, strength=0.0)
        deep_only = bundle.full(x, depths={"shallow": False, "middle": False})
        full = bundle.full(x)
        half = bundle.full(x, strength=0.5)
    assert torch.allclose(none, zero, atol=1e-6)
    assert (deep_only - zero).abs().max() > 1e-4 and (full - deep_only).abs().max() > 1e-4
    assert (half - full).abs().max() > 1e-4 and (half - zero).abs().max() > 1e-4


def test_with_has_cat_the_context_stages_reach_the_head_and_strength_zero_removes_them():
    from adapters.cloud_adapter.modeling import build
    from adapters.cloud_adapter.testing import SIZE, TINY
    from adapters.dense.backbone import tiny_dinov2

    backbone = tiny_dinov2(0, layers=4, image_size=SIZE)
    torch.manual_seed(0)
    model = build(backbone, "full", **TINY, has_cat=True).eval()
    assert model.head.lateral[0].in_channels == backbone.dim + TINY["context_dim"]
    x = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        # the adapting modules start at zero: whatever moves the output here came through the head
        on, off = model(x), model(x, strength=0.0)
        for p in model.adapter.cnn.parameters():
            p.add_(0.5 * torch.randn(p.shape, generator=torch.Generator().manual_seed(2)))
        on_moved, off_moved = model(x), model(x, strength=0.0)
    assert (on_moved - on).abs().max() > 1e-3
    assert torch.equal(off_moved, off)
    assert (on - off).abs().max() > 1e-4
