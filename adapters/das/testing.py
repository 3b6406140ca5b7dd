"""A tiny real DAS bundle (the tiny 4-layer VLM of `adapters.vlm.testing` with fresh replacing
adapters for layers 1-3) and the hooks `tests/contract` calls. "Adapter on" skips layers 1 and 2
and runs their adapters; "off" runs every layer."""
from __future__ import annotations

import numpy as np
import torch

from adapters.das.config import DASConfig, Request
from adapters.das.loading import DASBundle, wrap
from adapters.das.modeling import DAS, batch_loss, skipping
from adapters.vlm.modeling import left_pad
from adapters.vlm.testing import tiny_vlm

QUESTION = "What colour is the circle?"
SKIPPED = (1, 2)


def tiny_bundle(seed: int = 0) -> DASBundle:
    vlm = tiny_vlm(seed)
    torch.manual_seed(seed + 100)
    das = DAS(DASConfig(dim=32, rank=4, num_layers=4, candidates=(1, 2, 3))).eval()
    with torch.no_grad():
        das.scores.copy_(torch.tensor([0.0, 1.0, 0.5, -1.0]))
    return wrap(vlm, das, "tiny random VLM", {"fine_tuned": list(SKIPPED)})


def _picture() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)


def example_request() -> Request:
    return Request(QUESTION, _picture(), 2, (), 3)


def adapter_parameters(bundle) -> dict[str, torch.nn.Parameter]:
    return dict(bundle.das.named_parameters())


def frozen_parameters(bundle) -> dict[str, torch.Tensor]:
    vlm = bundle.vlm
    out = {f"lm.{n}": p.detach().clone() for n, p in vlm.lm.named_parameters()}
    out |= {f"dino.{n}": p.detach().clone() for n, p in vlm.dino.named_parameters()}
    out |= {f"projector.{n}": p.detach().clone() for n, p in vlm.projector.named_parameters()}
    return out


def perturb_adapter(bundle, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in bundle.das.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=generator, dtype=p.dtype))


def _embeds(bundle, lm):
    vlm = bundle.vlm
    patches = vlm.image_patches(_picture())
    return left_pad([vlm.prompt_embeds(QUESTION, patches, lm), vlm.prompt_embeds("Name a shape.", None, lm)])


def _last_logits(lm, x, mask) -> np.ndarray:
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return lm(inputs_embeds=x, attention_mask=mask, position_ids=positions).logits[:, -1].double().numpy()


@torch.no_grad()
def output(bundle, adapter_on: bool) -> np.ndarray:
    """Logits of the last prompt position (a question with a picture and one without), through the
    wrapped LM: layers 1 and 2 replaced by their adapters, or every layer run."""
    x, mask = _embeds(bundle, bundle.lm)
    with skipping(bundle.state, SKIPPED, "adapters" if adapter_on else "full"):
        return _last_logits(bundle.lm, x, mask)


@torch.no_grad()
def frozen_output(bundle) -> np.ndarray:
    """The same logits from the VLM's own frozen LM object, which carries no skipping code."""
    x, mask = _embeds(bundle, bundle.vlm.lm)
    return _last_logits(bundle.vlm.lm, x, mask)


def training_step(bundle, seed: int = 0) -> float:
    """One AdamW step of the adapter training loss (training/das/train.py): answer-only
    cross-entropy of the model with the skip set replaced by adapters."""
    torch.manual_seed(seed)
    vlm, das = bundle.vlm, bundle.das
    das.train().requires_grad_(True)
    optimizer = torch.optim.AdamW(das.parameters(), lr=1e-2, weight_decay=0.0)
    rows = [vlm.layout.encode([(QUESTION, "red"), ("How many squares are there?", "2")], vlm.image_tokens)]
    image = vlm.image_embeds(vlm.image_patches(_picture()))
    with skipping(bundle.state, SKIPPED, "adapters"):
        loss = batch_loss(bundle.lm, rows, 0, image)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    das.eval()
    return float(loss.detach())


def adapter_state_dict(bundle) -> dict:
    return {k: v.detach().clone() for k, v in bundle.das.state_dict().items()}


def load_adapter_state_dict(bundle, state: dict) -> None:
    bundle.das.load_state_dict(state)
