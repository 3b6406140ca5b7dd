"""The hub path (frozen SAM encoder + FGSA) offline: a tiny random SamConfig saved to a temp dir and
loaded through the same `load_hub`; the COD training script's reader and one step on fake data."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

torch.set_num_threads(1)


def tiny_sam_dir(tmp_path):
    from transformers import SamConfig, SamMaskDecoderConfig, SamModel, SamPromptEncoderConfig, SamVisionConfig

    torch.manual_seed(0)
    config = SamConfig(
        vision_config=SamVisionConfig(image_size=64, patch_size=8, hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                                      window_size=4, global_attn_indexes=[1, 3], output_channels=16, mlp_dim=64, num_pos_feats=8),
        prompt_encoder_config=SamPromptEncoderConfig(hidden_size=16, image_size=64, patch_size=8, image_embedding_size=8),
        mask_decoder_config=SamMaskDecoderConfig(hidden_size=16, mlp_dim=32, num_attention_heads=2, iou_head_hidden_dim=16),
    )
    model = SamModel(config)
    with torch.no_grad():  # SAM initialises pos_embed at zero; make it count
        model.vision_encoder.pos_embed.normal_(0, 0.02)
    directory = tmp_path / "sam"
    model.save_pretrained(directory)
    return directory, model


@pytest.fixture(scope="module")
def sam_dir(tmp_path_factory):
    return tiny_sam_dir(tmp_path_factory.mktemp("hub"))


def test_load_hub_reads_sam_and_adapter_from_one_directory(sam_dir, monkeypatch):
    from adapters.fgsa.loading import ADAPTER_FILE, load_hub, load_sam_backbone, save_adapter
    from adapters.fgsa.modeling import FGSANet, sam_fgsa_config

    directory, sam = sam_dir
    parts = {"frozen": str(directory), "adapter": str(directory)}
    with pytest.raises(FileNotFoundError, match="no trained FGSA adapter"):
        load_hub(parts)

    backbone = load_sam_backbone(str(directory))
    torch.manual_seed(1)
    trained = FGSANet(backbone, sam_fgsa_config(len(backbone.layers), backbone.dim))
    with torch.no_grad():  # stand-in for training: open every gate
        for name, p in trained.named_parameters():
            if name.endswith("gamma"):
                p.fill_(0.5)
    save_adapter(directory, trained, ADAPTER_FILE, extra={"figures": {"CAMO": {"S": 0.5}}})

    bundle = load_hub(parts)
    assert bundle.source == "hub" and bundle.figures == {"CAMO": {"S": 0.5}}
    model = bundle.adapter
    # frozen weights are SAM's own, and frozen
    for name, p in sam.vision_encoder.state_dict().items():
        torch.testing.assert_close(model.backbone.encoder.state_dict()[name], p)
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert len(model.config.groups) == 4 and model.site_names() == ["c1", "c2", "x1", "x2", "x3", "x4"]
    image = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        out, expected = model(image), trained.eval()(image)
    assert out.shape == (2, 1, 64, 64)
    torch.testing.assert_close(out, expected)
    # the frozen token stream is SAM's: with closed gates the adapter does not touch it
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("gamma"):
                p.zero_()
        probes: dict = {}
        model(image, probes=probes)
        reference = sam.vision_encoder.patch_embed(model.normalise(image)) + sam.vision_encoder.pos_embed
        for layer in sam.vision_encoder.layers:
            reference = layer(reference)
    torch.testing.assert_close(probes["x4"].permute(0, 2, 3, 1), reference)


def test_local_source_goes_through_the_same_loader(sam_dir, monkeypatch):
    from adapters.fgsa import SPEC
    from studio.loader import ModelCache

    directory, _ = sam_dir
    if not (directory / "fgsa_adapter.safetensors").is_file():
        pytest.skip("needs the adapter written by the previous test")
    monkeypatch.setenv("STUDIO_SOURCE_FGSA", "local")
    monkeypatch.setenv("STUDIO_LOCAL_DIR_FGSA", str(directory))
    # the shipped adapter is trained for DINOv2; a SAM adapter is named through the adapter override
    monkeypatch.setenv("STUDIO_HUB_FGSA_ADAPTER", str(directory))
    loaded = ModelCache().get(SPEC)
    assert loaded.source == "local" and loaded.value.adapter.backbone.dim == 32


def make_fake_cod(root, n=3, size=40):
    import cv2

    rng = np.random.default_rng(0)
    for split in ("TrainDataset", "TestDataset/CAMO"):
        (root / split / "Imgs").mkdir(parents=True)
        (root / split / "GT").mkdir(parents=True)
        for i in range(n):
            cv2.imwrite(str(root / split / "Imgs" / f"cam_{i}.jpg"), rng.integers(0, 255, (size, size + 6, 3), dtype=np.uint8))
            mask = np.zeros((size, size + 6), np.uint8)
            mask[5:25, 8:30] = 255
            cv2.imwrite(str(root / split / "GT" / f"cam_{i}.png"), mask)
    (root / "TrainDataset" / "Imgs" / "orphan.jpg").write_bytes(b"no mask for this one")


def test_cod_reader_and_one_training_step(sam_dir, tmp_path):
    from training.fgsa.train_cod import CODDataset, cod_pairs, main

    data = tmp_path / "COD"
    make_fake_cod(data)
    pairs = cod_pairs(data / "TrainDataset")
    assert [p[0].name for p in pairs] == ["cam_0.jpg", "cam_1.jpg", "cam_2.jpg"]  # the orphan is skipped
    image, mask = CODDataset(data / "TrainDataset", 64, train=False)[0]
    assert image.shape == (3, 64, 64) and 0 <= image.min() and image.max() <= 1
    assert mask.shape == (1, 64, 64) and set(mask.unique().tolist()) == {0.0, 1.0}
    with pytest.raises(FileNotFoundError):
        cod_pairs(tmp_path)

    directory, _ = sam_dir
    out = tmp_path / "out"
    figures = main(["--data", str(data), "--backbone", str(directory), "--out", str(out), "--steps", "1",
                    "--batch", "2", "--workers", "0", "--device", "cpu", "--eval-sets", "CAMO"])
    assert set(figures["CAMO"]) == {"S", "E", "wF", "MAE"}
    saved = json.loads((out / "fgsa_adapter.json").read_text())
    assert saved["figures"] == figures and (out / "fgsa_adapter.safetensors").is_file()
