"""GLARE's own mechanism: the UniAdapter (shared down, per-modality zero-started up, scaled
residual), patch correspondence under the dihedral views, what each self-supervised loss rewards,
the teacher's attention maps, the labelled-fraction draws, and the linear head's folded
standardisation."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from adapters.common.errors import BadInput
from adapters.glare import config, data, heads
from adapters.glare.modeling import GlareConfig, Student, Teacher, UniAdapter, build, info_nce, info_nce_other_tiles, ssl_losses, undo_dihedral
from adapters.glare.testing import SIZE, TINY, views


def test_uniadapter_starts_as_identity_and_shares_its_down_projection():
    torch.manual_seed(0)
    adapter = UniAdapter(16, 4, ("rgb", "nir"), scale=0.5)
    x = torch.randn(2, 5, 16)
    assert torch.equal(adapter(x, "rgb"), x) and torch.equal(adapter(x, "nir"), x)
    with torch.no_grad():
        adapter.up["rgb"].weight.normal_()
    expected = x + 0.5 * adapter.up["rgb"](torch.nn.functional.gelu(adapter.down(x)))
    assert torch.allclose(adapter(x, "rgb"), expected)
    assert torch.equal(adapter(x, "nir"), x)  # the other modality's up-projection is its own
    assert sum(1 for n, _ in adapter.named_parameters() if n.startswith("down.")) == 2  # one shared down


@pytest.mark.parametrize("code", range(8))
def test_undo_dihedral_returns_every_patch_to_its_ground_position(code):
    grid = np.arange(16 * 16 * 3, dtype=np.float32).reshape(16, 16, 3)
    seen = data.dihedral(grid, code)  # what an augmented view holds
    back = undo_dihedral(torch.from_numpy(seen)[None], torch.tensor([code]))[0].numpy()
    np.testing.assert_array_equal(back, grid)


def test_views_keep_the_patch_grid_and_change_patches_independently():
    rng = np.random.default_rng(0)
    tile = np.full((SIZE, SIZE, 3), 0.5, np.float32)
    view, code = data.augment(tile, rng)
    back = data.dihedral(view, code)  # a flat tile: turning back changes nothing, patches differ by jitter
    means = back.reshape(4, 14, 4, 14, 3).mean((1, 3, 4))
    assert means.std() > 0.01, "every patch got the same jitter"


def _tiny_encoder():
    from adapters.dense.backbone import tiny_dinov2

    torch.manual_seed(0)
    return build(tiny_dinov2(0, layers=4, image_size=SIZE), **TINY)


def test_local_and_regional_losses_reward_the_right_correspondence():
    """Same view for student and teacher: with the right dihedral codes every patch finds itself, so
    the local and regional losses are lower than with the teacher's codes wrong."""
    encoder = _tiny_encoder()
    student = Student(encoder)
    teacher = Teacher(student)
    (a, codes), _ = views(0, tiles=3)
    with torch.no_grad():
        prefix = encoder.prefix(a)
        right = ssl_losses(encoder, student, teacher, prefix, prefix, codes, codes, "global+local+regional")
        wrong = ssl_losses(encoder, student, teacher, prefix, prefix, codes, (codes + 1) % 8, "global+local+regional")
    assert right["local"] < wrong["local"] - 0.1
    assert right["regional"] <= wrong["regional"] + 1e-6
    assert set(right) == {"global", "local", "regional", "total"}
    only_global = ssl_losses(encoder, student, teacher, prefix, prefix, codes, codes, "global")
    assert set(only_global) == {"global", "total"}
    with pytest.raises(ValueError):
        ssl_losses(encoder, student, teacher, prefix, prefix, codes, codes, "global+colour")


def test_info_nce_is_low_for_matching_rows():
    keys = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)
    assert info_nce(keys, keys, 0.1) < info_nce(keys, keys.roll(1, 0), 0.1)


def test_other_tiles_negatives_never_push_apart_patches_of_the_same_tile():
    # every patch of a tile is the same vector (one land cover): within-tile negatives make the
    # task impossible (loss log n), other-tile negatives leave it easy
    b, n = 4, 16
    tiles = torch.nn.functional.normalize(torch.eye(b, 8)[:, None, :].expand(b, n, 8).clone(), dim=-1)
    within = float(info_nce(tiles, tiles, 0.1))
    across = float(info_nce_other_tiles(tiles, tiles, 0.1))
    assert within == pytest.approx(np.log(n), abs=1e-4)
    assert across < 0.01  # log(1 + 48 e^-10): only the other tiles, orthogonal, compete
    # with distinct vectors everywhere the two agree on a perfect match being easy
    distinct = torch.nn.functional.normalize(torch.eye(b * n).reshape(b, n, b * n), dim=-1)
    assert float(info_nce_other_tiles(distinct, distinct, 0.1)) < 0.01


def test_teacher_attention_maps_are_distributions_and_match_the_block():
    encoder = _tiny_encoder()
    x = torch.randn(2, 1 + 16, encoder.backbone.dim)
    attn = encoder.last_attention(x)
    assert attn.shape == (2, 2, 16)
    assert torch.allclose(attn.sum(-1), torch.ones(2, 2), atol=1e-5)
    # against a direct softmax(q k^T / sqrt(d)) of the block's own projections
    layer = encoder.backbone.model.encoder.layer[-1]
    n = layer.norm1(x)
    q = layer.attention.q_proj(n)[:, :1].reshape(2, 1, 2, -1).transpose(1, 2)
    k = layer.attention.k_proj(n).reshape(2, 17, 2, -1).transpose(1, 2)
    full = (q @ k.transpose(-1, -2) / (8 ** 0.5)).softmax(-1)[:, :, 0, 1:]
    assert not torch.allclose(full, attn)  # the maps renormalise over patches, without [CLS] itself
    assert torch.allclose(full / full.sum(-1, keepdim=True), attn, atol=1e-5)


def test_teacher_follows_the_student_by_ema_and_never_by_gradient():
    encoder = _tiny_encoder()
    student = Student(encoder)
    teacher = Teacher(student)
    assert not any(p.requires_grad for p in teacher.parameters())
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
    before = [t.clone() for t in teacher.parameters()]
    teacher.update(student, 0.9)
    for b, t, s in zip(before, teacher.parameters(), student.parameters()):
        assert torch.allclose(t, 0.9 * b + 0.1 * s)


def test_fraction_subset_keeps_every_class_and_is_a_function_of_its_seed():
    _, classes = data.labelled_pixels("train")
    for f in data.FRACTIONS:
        keep = data.fraction_subset(classes, f, seed=0)
        assert set(classes[keep]) == set(classes)
        expected = sum(max(1, round(f * (classes == c).sum())) for c in np.unique(classes))
        assert len(keep) == expected
    np.testing.assert_array_equal(data.fraction_subset(classes, 0.05, 1), data.fraction_subset(classes, 0.05, 1))
    assert not np.array_equal(data.fraction_subset(classes, 0.05, 1), data.fraction_subset(classes, 0.05, 2))


def test_regions_never_share_labelled_pixels():
    train, _ = data.labelled_pixels("train")
    held, held_classes = data.labelled_pixels("heldout")
    assert train[:, 1].max() < 300 and held[:, 1].min() >= 330
    assert len(held) > 500 and len(set(held_classes)) >= 4


def test_linear_head_folds_its_standardisation():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 1, (3, 10)) * np.array([100.0] + [1.0] * 9)  # one channel on a far larger scale
    classes = np.repeat(np.arange(3), 30)
    feats = (centres[classes] + rng.normal(0, 0.3, (90, 10))).astype(np.float32)
    head = heads.fit_head(feats, classes, seed=0, reference=feats, n_classes=3)
    assert heads.evaluate(head, feats, classes, n_classes=3)["accuracy"] > 0.95


def test_bad_settings_are_refused_in_plain_words():
    with pytest.raises(BadInput, match="Unknown loss set"):
        config.loss_set("global+colour")
    with pytest.raises(BadInput, match="labelled fraction"):
        config.fraction("50%")
    assert config.fraction("5%") == 0.05 and config.fraction(0.2) == 0.2
    with pytest.raises(BadInput, match="NaN"):
        config.image(np.full((120, 120, 3), np.nan, np.float32))
    with pytest.raises(BadInput, match="112 to 512"):
        config.image(np.zeros((600, 120, 3), np.float32))


def test_config_round_trips():
    cfg = GlareConfig(adapted=(2, 3), modalities=("rgb", "nir"))
    assert GlareConfig.from_dict(cfg.to_dict()) == cfg
