"""A tiny real FGSA bundle (a tiny random transformers Dinov2Model, the real adapter and head
classes, the same DinoFGSANet as the bundled model) and the contract hooks."""
from __future__ import annotations

import numpy as np
import torch

from adapters.fgsa.config import SegmentRequest
from adapters.fgsa.dino import DinoFGSANet, _call, dino_fgsa_config, tiny_dinov2
from adapters.fgsa.loading import FGSABundle
from adapters.fgsa.modeling import FGSANet, structure_loss

SIZE = 56  # 4 x 4 tokens of 14 px
GROUPS = ((1,), (2,))  # block 0 is the frozen prefix
_ADAPTER = dict(groups=GROUPS, planes=4, heads=2, points=2, inner=8, head_width=8)


def tiny_bundle(seed: int = 0) -> FGSABundle:
    """Tiny random frozen DINOv2 (56x56, 3 blocks, width 16), a fresh FGSA adapter and a frozen-head baseline."""
    backbone = tiny_dinov2(seed, layers=3, image_size=SIZE)
    torch.manual_seed(seed)
    head = DinoFGSANet(backbone, dino_fgsa_config("head", head_width=8, groups=GROUPS)).eval()
    head.requires_grad_(False)
    adapter = DinoFGSANet(backbone, dino_fgsa_config("fgsa", **_ADAPTER)).eval()
    return FGSABundle(adapter, head, "tiny", "tiny random DINOv2")


def _image(seed: int = 0) -> np.ndarray:
    from adapters.fgsa.scenes import make_dataset

    images, _, _ = make_dataset(seed, 1, "heldout", ("scale",), SIZE)
    return images[:1]


def example_request() -> SegmentRequest:
    return SegmentRequest(image=_image(), site="c1", bands=(1.0, 1.0, 0.0, 1.0, 1.0), all_sites=False)


def adapter_parameters(bundle: FGSABundle) -> dict[str, torch.nn.Parameter]:
    return {n: p for n, p in bundle.adapter.named_parameters() if not n.startswith("backbone.")}


def frozen_parameters(bundle: FGSABundle) -> dict[str, torch.Tensor]:
    out = {f"backbone.{n}": t for n, t in bundle.adapter.backbone.state_dict().items()}
    if bundle.frozen_head is not None:
        out |= {f"frozen_head.{n}": t for n, t in bundle.frozen_head.state_dict().items() if not n.startswith("backbone.")}
    return out


@torch.no_grad()
def perturb_adapter(bundle: FGSABundle, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    for name, p in adapter_parameters(bundle).items():
        noise = torch.randn(p.shape, generator=generator)
        if name.endswith("gamma"):  # open the zero-initialised gates
            p.copy_(0.5 + 0.5 * noise.abs())
        else:
            p.add_(0.05 * noise)


@torch.no_grad()
def output(bundle: FGSABundle, adapter_on: bool) -> np.ndarray:
    """Mask probabilities on a fixed tiny scene: the adapter's, or (off) the frozen baseline's."""
    image = torch.from_numpy(_image())
    model = bundle.adapter if adapter_on else bundle.frozen_head
    model.eval()
    return model(image).sigmoid()[0, 0].numpy()


@torch.no_grad()
def frozen_output(bundle: FGSABundle) -> np.ndarray:
    """The frozen DINOv2 called directly (embeddings, its blocks, its final LayerNorm) and the
    frozen head; no DinoFGSANet forward."""
    image = torch.from_numpy(_image())
    head = bundle.frozen_head
    dino = head.backbone.model
    x = dino.embeddings(head.normalise(image))
    outs = []
    for i, layer in enumerate(dino.encoder.layer):
        x = _call(layer, x)
        if any(i == g[-1] for g in head.config.groups):
            patches = dino.layernorm(x)[:, 1:]
            grid = SIZE // 14
            outs.append(patches.transpose(1, 2).reshape(1, -1, grid, grid))
    pyramid = FGSANet._pyramid_from_tokens(outs, SIZE)
    return head.head(pyramid, image.shape[-2:]).sigmoid()[0, 0].numpy()


def training_step(bundle: FGSABundle, seed: int = 0) -> float:
    """One AdamW step of the paper's loss (BCE + soft IoU), with the training script's two groups
    (gates at their own rate, no weight decay)."""
    from adapters.fgsa.scenes import make_dataset

    images, masks, _ = make_dataset(100 + seed, 2, "train", size=SIZE)
    model = bundle.adapter
    new = [(n, p) for n, p in model.named_parameters() if p.requires_grad and not n.startswith("backbone.")]
    optimiser = torch.optim.AdamW([{"params": [p for n, p in new if not n.endswith("gamma")], "lr": 1e-3},
                                   {"params": [p for n, p in new if n.endswith("gamma")], "lr": 3e-2, "weight_decay": 0.0}],
                                  weight_decay=0.01)
    model.train()
    loss = structure_loss(model(torch.from_numpy(images)), torch.from_numpy(masks))
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    optimiser.step()
    model.eval()
    return float(loss.detach())


def adapter_state_dict(bundle: FGSABundle) -> dict:
    return bundle.adapter.adapter_state_dict()


def load_adapter_state_dict(bundle: FGSABundle, state: dict) -> None:
    missing, unexpected = bundle.adapter.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("backbone.")]
    if missing or unexpected:
        raise RuntimeError(f"adapter state does not match: missing {missing[:5]}, unexpected {unexpected[:5]}")
