"""A tiny real GLARE bundle (a tiny random transformers Dinov2Model, the real UniAdapters and linear
heads) and the contract hooks. The adapter under test is the full loss set's."""
from __future__ import annotations

import numpy as np
import torch

from adapters.dense.backbone import _call, tiny_dinov2
from adapters.glare.config import SegmentRequest
from adapters.glare.data import FRACTIONS, augment
from adapters.glare.loading import GlareBundle
from adapters.glare.modeling import LOSS_SETS, GlareAdapter, LinearHead, Student, Teacher, build, ssl_losses

SIZE = 56  # 4 x 4 tokens of 14 px
TINY = dict(image_size=SIZE, rank=4, proj_dim=8)
UNDER_TEST = LOSS_SETS[-1]


def tiny_bundle(seed: int = 0) -> GlareBundle:
    """Tiny random frozen DINOv2 (4 blocks, width 16; UniAdapters after blocks 2 and 3), a fresh
    adapter per loss set and random linear heads."""
    backbone = tiny_dinov2(seed, layers=4, image_size=SIZE)
    torch.manual_seed(seed)
    encoder = build(backbone, **TINY).eval()
    adapters = {ls: GlareAdapter(backbone.dim, encoder.config) for ls in LOSS_SETS}
    heads = {(v, f): LinearHead(backbone.dim).eval() for v in ("frozen", *LOSS_SETS) for f in FRACTIONS}
    return GlareBundle(encoder, adapters, heads, "tiny", "tiny random DINOv2")


def _tile(offset: int = 0) -> np.ndarray:
    from adapters.dense import landsat

    return landsat.scene().rgb[200 + offset:200 + offset + SIZE, 340:340 + SIZE]


def example_request() -> SegmentRequest:
    from adapters.dense import landsat

    y, x = 150, 340
    return SegmentRequest(image=landsat.scene().rgb[y:y + 112, x:x + 112].copy(),
                          labels=landsat.landcover()[y:y + 112, x:x + 112].astype(np.uint8), loss_set=UNDER_TEST,
                          fraction=FRACTIONS[0])


def adapter_parameters(bundle: GlareBundle) -> dict[str, torch.nn.Parameter]:
    return dict(bundle.adapters[UNDER_TEST].named_parameters())


def frozen_parameters(bundle: GlareBundle) -> dict[str, torch.Tensor]:
    return {f"backbone.{n}": t for n, t in bundle.encoder.backbone.state_dict().items()}


@torch.no_grad()
def perturb_adapter(bundle: GlareBundle, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    for p in adapter_parameters(bundle).values():
        p.add_(0.3 * torch.randn(p.shape, generator=generator))


def _input() -> torch.Tensor:
    return torch.from_numpy(_tile().transpose(2, 0, 1)[None].copy())


@torch.no_grad()
def output(bundle: GlareBundle, adapter_on: bool) -> np.ndarray:
    """Class probabilities from the full-loss-set head on the features of a fixed tile."""
    image = _input()
    tokens = bundle.encoder.suffix(bundle.encoder.prefix(image), adapter_on, adapter=bundle.adapters[UNDER_TEST])
    grid = SIZE // 14
    maps = tokens[:, 1:].transpose(1, 2).reshape(1, -1, grid, grid)
    return bundle.head(UNDER_TEST, FRACTIONS[0]).logits_map(maps, (SIZE, SIZE)).softmax(1)[0].numpy()


@torch.no_grad()
def frozen_output(bundle: GlareBundle) -> np.ndarray:
    """The frozen Dinov2Model called directly (embeddings, every block, final LayerNorm) into the
    same head: no GlareEncoder forward."""
    dino = bundle.encoder.backbone.model
    image = _input()
    x = dino.embeddings(bundle.encoder.backbone.normalise(image))
    for layer in dino.encoder.layer:
        x = _call(layer, x)
    grid = SIZE // 14
    maps = dino.layernorm(x)[:, 1:].transpose(1, 2).reshape(1, -1, grid, grid)
    return bundle.head(UNDER_TEST, FRACTIONS[0]).logits_map(maps, (SIZE, SIZE)).softmax(1)[0].numpy()


def views(seed: int = 0, tiles: int = 3):
    """Two augmented views of a few tiles: prefix tokens and dihedral codes, as training caches them."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(2):
        images, codes = zip(*(augment(_tile(4 * i), rng) for i in range(tiles)))
        out.append((torch.from_numpy(np.stack([im.transpose(2, 0, 1) for im in images])), torch.tensor(codes)))
    return out


def training_step(bundle: GlareBundle, seed: int = 0) -> float:
    """One AdamW step of the three self-supervised losses against an EMA teacher."""
    encoder = bundle.encoder
    encoder.adapter = bundle.adapters[UNDER_TEST]
    student = Student(encoder)
    teacher = Teacher(student)
    (a, codes_a), (b, codes_b) = views(seed)
    with torch.no_grad():
        prefix_a, prefix_b = encoder.prefix(a), encoder.prefix(b)
    optimiser = torch.optim.AdamW(student.parameters(), lr=1e-3, weight_decay=0.01)
    losses = ssl_losses(encoder, student, teacher, prefix_a, prefix_b, codes_a, codes_b, UNDER_TEST)
    optimiser.zero_grad(set_to_none=True)
    losses["total"].backward()
    optimiser.step()
    teacher.update(student, 0.98)
    return float(losses["total"].detach())


def adapter_state_dict(bundle: GlareBundle) -> dict:
    return bundle.adapters[UNDER_TEST].state_dict()


def load_adapter_state_dict(bundle: GlareBundle, state: dict) -> None:
    bundle.adapters[UNDER_TEST].load_state_dict(state)
