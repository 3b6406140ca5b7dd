"""FGSA on DINOv2: the real-texture scenes (deterministic, splits disjoint, colour matched) and the
DinoFGSANet wrapper on a tiny random transformers Dinov2Model (zero-gate identity of the frozen
token stream, the cached-prefix path, frozen weights, the class token)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

torch.set_num_threads(1)


def test_scenes_are_deterministic_and_the_splits_share_no_photograph_or_shape():
    from adapters.fgsa import scenes

    a = scenes.make_dataset(5, 4, "train", size=112)
    b = scenes.make_dataset(5, 4, "train", size=112)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[2] == b[2]
    assert not set(scenes.TRAIN_TEXTURES) & set(scenes.HELDOUT_TEXTURES)
    assert not set(scenes.TRAIN_SHAPES) & set(scenes.HELDOUT_SHAPES)
    images, masks, info = scenes.make_dataset(7, 6, "heldout", size=112)
    assert images.shape == (6, 3, 112, 112) and masks.shape == (6, 1, 112, 112)
    assert images.min() >= 0 and images.max() <= 1 and set(np.unique(masks)) <= {0.0, 1.0}
    for item in info:
        assert item["background"] in scenes.HELDOUT_TEXTURES and item["obj"] in scenes.HELDOUT_TEXTURES
        assert item["shape"] in scenes.HELDOUT_SHAPES
    assert [i["mode"] for i in info] == ["scale", "texture"] * 3
    scale = [i for i in info if i["mode"] == "scale"]
    assert all(i["obj"] == i["background"] and (i["ratio"] >= 1.8 or i["ratio"] <= 1 / 1.8) for i in scale)


def test_colour_alone_does_not_give_the_object_away():
    """Object and background have (nearly) the same per-channel mean: the cue is texture."""
    from adapters.fgsa import scenes

    images, masks, _ = scenes.make_dataset(3, 12, "train", size=112)
    gaps = []
    for image, mask in zip(images, masks[:, 0]):
        inside, outside = mask > 0.5, mask < 0.5
        core = inside & (np.roll(mask, 3, 0) > 0.5) & (np.roll(mask, -3, 1) > 0.5)
        gaps.append(np.abs(image[:, core].mean(1) - image[:, outside].mean(1)).max())
    assert np.median(gaps) < 0.08, gaps


@pytest.fixture(scope="module")
def tiny():
    from adapters.fgsa.dino import tiny_dinov2

    size, groups = 56, ((1,), (2,))  # 4 x 4 tokens; block 0 is the frozen prefix
    return tiny_dinov2(0, layers=3, image_size=size), groups, size


def test_fresh_adapter_leaves_the_frozen_dinov2_token_stream_unchanged(tiny):
    from adapters.fgsa.dino import DinoFGSANet, dino_fgsa_config, frozen_stream

    backbone, groups, size = tiny
    model = DinoFGSANet(backbone, dino_fgsa_config("fgsa", groups=groups, planes=4, heads=2, points=2, inner=8, head_width=8)).eval()
    image = torch.rand(2, 3, size, size)
    probes: dict = {}
    with torch.no_grad():
        model(image, probes=probes)
        reference = frozen_stream(backbone, model.normalise(image))  # blocks 1 and 2 (block 0 is the prefix)
    grid = size // 14
    for name, ref in (("x1", reference[0]), ("x2", reference[1])):
        torch.testing.assert_close(probes[name], ref[:, 1:].transpose(1, 2).reshape(2, -1, grid, grid), rtol=0, atol=0)
    # the cached-prefix path gives the same mask as the full path
    with torch.no_grad():
        full = model(image)
        cached = model(image, embedded=backbone.embed(model.normalise(image)))
    torch.testing.assert_close(full, cached, rtol=0, atol=0)
    with torch.no_grad():  # opening a gate changes the stream: the identity above is not vacuous
        model.first_injector.gamma.fill_(1.0)
        changed: dict = {}
        model(image, probes=changed)
    assert (changed["x1"] - probes["x1"]).abs().max() > 1e-3


@pytest.mark.parametrize("variant", ["head", "conv", "fgsa"])
def test_a_training_step_never_changes_dinov2(tiny, variant):
    from adapters.fgsa.dino import DinoFGSANet, dino_fgsa_config
    from adapters.fgsa.modeling import structure_loss

    backbone, groups, size = tiny
    torch.manual_seed(0)
    model = DinoFGSANet(backbone, dino_fgsa_config(variant, groups=groups, planes=4, heads=2, points=2, inner=8, head_width=8))
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    optimiser = torch.optim.AdamW(model.trainable_parameters(), lr=1e-2)
    model.train()
    assert not backbone.training
    image, mask = torch.rand(2, 3, size, size), (torch.rand(2, 1, size, size) > 0.5).float()
    loss = structure_loss(model(image, embedded=backbone.embed(model.normalise(image))), mask)
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()
    assert all(torch.equal(before[k], v) for k, v in backbone.state_dict().items())
    assert all(p.grad is None for p in backbone.parameters())
    assert model.site_names() == (["c1", "c2", "x1", "x2"] if variant == "fgsa" else [])


def test_the_adapter_must_start_where_the_frozen_prefix_ends(tiny):
    from adapters.fgsa.dino import DinoFGSANet, dino_fgsa_config

    backbone, _, _ = tiny
    with pytest.raises(ValueError, match="frozen prefix"):
        DinoFGSANet(backbone, dino_fgsa_config("fgsa", groups=((0,), (1, 2))))


def test_load_hub_reads_dinov2_by_id_or_directory_and_the_adapter_from_this_repositorys_layout(tiny, tmp_path):
    """The hub path: `Dinov2Model.from_pretrained(parts["frozen"])` (here a directory holding a tiny
    random Dinov2Model) and the adapter from a directory in this repository's own layout
    (adapter.safetensors + adapter.json naming the backbone), as assets/fgsa ships it."""
    from adapters.fgsa.dino import DinoFGSANet, dino_fgsa_config
    from adapters.fgsa.loading import load_hub, save_adapter

    backbone, groups, size = tiny
    frozen_dir, adapter_dir = tmp_path / "dinov2", tmp_path / "adapter"
    backbone.model.save_pretrained(frozen_dir)
    torch.manual_seed(3)
    small = dict(groups=groups, planes=4, heads=2, points=2, inner=8, head_width=8)
    trained = DinoFGSANet(backbone, dino_fgsa_config("fgsa", **small)).eval()
    head = DinoFGSANet(backbone, dino_fgsa_config("head", groups=groups, head_width=8)).eval()
    with torch.no_grad():  # stand-in for training: open every gate
        for name, p in trained.named_parameters():
            if name.endswith("gamma"):
                p.fill_(0.5)
    info = {"backbone": {"kind": "dinov2_small", "start": 1, "image_size": size}}
    save_adapter(adapter_dir, trained, "adapter", extra=info)
    save_adapter(adapter_dir, head, "frozen_head", extra=info)
    bundle = load_hub({"frozen": str(frozen_dir), "adapter": str(adapter_dir)})
    assert bundle.source == "hub" and bundle.image_size == size
    assert bundle.adapter.backbone is bundle.frozen_head.backbone
    assert not any(p.requires_grad for p in bundle.adapter.backbone.parameters())
    image = torch.rand(1, 3, size, size)
    with torch.no_grad():
        torch.testing.assert_close(bundle.adapter(image), trained(image))
        torch.testing.assert_close(bundle.frozen_head(image), head(image))
    for name, p in backbone.model.state_dict().items():
        torch.testing.assert_close(bundle.adapter.backbone.model.state_dict()[name], p)
