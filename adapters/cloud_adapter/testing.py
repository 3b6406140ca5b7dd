"""A tiny real Cloud-Adapter bundle (a tiny random transformers Dinov2Model, the real adapter, head
and variants) and the contract hooks."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from adapters.cloud_adapter.config import SegmentRequest
from adapters.cloud_adapter.loading import CloudBundle
from adapters.cloud_adapter.modeling import build
from adapters.dense.backbone import _call, tiny_dinov2

SIZE = 56  # 4 x 4 tokens of 14 px
TINY = dict(image_size=SIZE, rank=2, heads=2, dim_head=4, context_dim=8, context_depth=2, head_width=16)


def tiny_bundle(seed: int = 0) -> CloudBundle:
    """Tiny random frozen DINOv2 (4 blocks, width 16), a fresh adapter, and the two baselines."""
    backbone = tiny_dinov2(seed, layers=4, image_size=SIZE)
    torch.manual_seed(seed)
    models = {v: build(backbone, v, **TINY).eval() for v in ("full", "off", "lora")}
    return CloudBundle(models["full"], models["off"], models["lora"], "tiny", "tiny random DINOv2")


def _tile(seed: int = 0):
    from adapters.cloud_adapter.simulate import CloudSettings, simulate
    from adapters.dense import landsat

    rgb = landsat.scene().rgb[200:200 + SIZE, 340:340 + SIZE]
    return simulate(rgb, CloudSettings(coverage=0.5, thickness=0.9, thin_mix=0.5, shadow_offset=6, seed=seed))[:2]


def example_request() -> SegmentRequest:
    image, labels = _tile()
    return SegmentRequest(image=image, labels=labels, strength=1.0, lora=True)


def adapter_parameters(bundle: CloudBundle) -> dict[str, torch.nn.Parameter]:
    return {n: p for n, p in bundle.full.named_parameters() if not n.startswith("backbone.")}


def frozen_parameters(bundle: CloudBundle) -> dict[str, torch.Tensor]:
    return {f"backbone.{n}": t for n, t in bundle.full.backbone.state_dict().items()}


@torch.no_grad()
def perturb_adapter(bundle: CloudBundle, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    for p in adapter_parameters(bundle).values():
        p.add_(0.3 * torch.randn(p.shape, generator=generator))


def _input() -> torch.Tensor:
    image, _ = _tile()
    return torch.from_numpy(image.transpose(2, 0, 1)[None].copy())


@torch.no_grad()
def output(bundle: CloudBundle, adapter_on: bool) -> np.ndarray:
    """Class probabilities of the adapter model on a fixed tile; off = strength 0 (no adapter code runs)."""
    return bundle.full(_input(), strength=1.0 if adapter_on else 0.0).softmax(1)[0].numpy()


@torch.no_grad()
def frozen_output(bundle: CloudBundle) -> np.ndarray:
    """The frozen Dinov2Model called directly (embeddings, blocks, final LayerNorm at the taps) into
    the adapter model's own head: no CloudAdapterNet forward."""
    model = bundle.full
    dino = model.backbone.model
    image = _input()
    x = dino.embeddings(model.backbone.normalise(image))
    maps = []
    grid = SIZE // 14
    for i, layer in enumerate(dino.encoder.layer):
        x = _call(layer, x)
        if i in model.config.taps:
            maps.append(dino.layernorm(x)[:, 1:].transpose(1, 2).reshape(1, -1, grid, grid))
    return model.head(maps, image.shape[-2:]).softmax(1)[0].numpy()


def training_step(bundle: CloudBundle, seed: int = 0) -> float:
    """One AdamW step of the training loss (pixel cross-entropy) on two clouded tiles."""
    tiles = [_tile(seed), _tile(seed + 1)]
    x = torch.from_numpy(np.stack([t[0].transpose(2, 0, 1) for t in tiles]).copy())
    y = torch.from_numpy(np.stack([t[1] for t in tiles]).astype(np.int64))
    model = bundle.full
    optimiser = torch.optim.AdamW(model.trainable(), lr=1e-3, weight_decay=0.01)
    model.train()
    loss = F.cross_entropy(model(x), y)
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    optimiser.step()
    model.eval()
    return float(loss.detach())


def adapter_state_dict(bundle: CloudBundle) -> dict:
    return bundle.full.adapter_state_dict()


def load_adapter_state_dict(bundle: CloudBundle, state: dict) -> None:
    missing, unexpected = bundle.full.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("backbone.")]
    if missing or unexpected:
        raise RuntimeError(f"adapter state does not match: missing {missing[:5]}, unexpected {unexpected[:5]}")
