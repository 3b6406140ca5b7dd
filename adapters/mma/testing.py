"""A tiny real MMA bundle (the tiny VLM of `adapters.vlm.testing` with fresh adapters in all four
layers) and the hooks `tests/contract` calls."""
from __future__ import annotations

import numpy as np
import torch

from adapters.mma.config import MMAConfig, Request
from adapters.mma.loading import MMABundle, wrap
from adapters.mma.modeling import IMAGE, MMA, TEXT, adapted, batch_loss, distill_loss
from adapters.vlm.testing import frozen_vlm_parameters, tiny_vlm

QUESTION = "What colour is the circle?"


def tiny_bundle(seed: int = 0, routed: bool = True, modality_prefix: int | None = None) -> MMABundle:
    vlm = tiny_vlm(seed)
    torch.manual_seed(seed + 100)
    mma = MMA(MMAConfig(dim=32, rank=4, layers=(0, 1, 2, 3), routed=routed, modality_prefix=modality_prefix)).eval()
    bundle = wrap(vlm, mma, "tiny random VLM")
    bundle.projector.requires_grad_(True)
    return bundle


def _picture() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)


def example_request() -> Request:
    return Request(QUESTION, _picture(), 5.0, "auto", 3)


def adapter_parameters(bundle) -> dict[str, torch.nn.Parameter]:
    return dict(bundle.mma.named_parameters()) | {f"projector.{n}": p for n, p in bundle.projector.named_parameters()}


def frozen_parameters(bundle) -> dict[str, torch.Tensor]:
    return frozen_vlm_parameters(bundle.vlm)


def perturb_adapter(bundle, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in [*bundle.mma.parameters(), *bundle.projector.parameters()]:
            p.add_(0.3 * torch.randn(p.shape, generator=generator, dtype=p.dtype))


def _embeds(bundle, lm, projector=None) -> tuple[torch.Tensor, torch.Tensor]:
    vlm = bundle.vlm
    patches = vlm.image_patches(_picture())
    rows = [vlm.prompt_embeds(QUESTION, patches, lm, projector=projector), vlm.prompt_embeds(QUESTION, None, lm)]
    from adapters.vlm.modeling import left_pad

    return left_pad(rows)


@torch.no_grad()
def output(bundle, adapter_on: bool) -> np.ndarray:
    """Logits of the last prompt position, for the question with the picture (image route) and
    without it (text route), through the adapted LM."""
    x, mask = _embeds(bundle, bundle.lm, bundle.projector if adapter_on else None)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with adapted(bundle.lm, bundle.mma, bundle.state, torch.tensor([IMAGE, TEXT]), enabled=adapter_on):
        logits = bundle.lm(inputs_embeds=x, attention_mask=mask, position_ids=positions).logits[:, -1]
    return logits.double().numpy()


@torch.no_grad()
def frozen_output(bundle) -> np.ndarray:
    """The same logits from the VLM's own frozen LM object, which carries no adapter code."""
    lm = bundle.vlm.lm
    x, mask = _embeds(bundle, lm)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return lm(inputs_embeds=x, attention_mask=mask, position_ids=positions).logits[:, -1].double().numpy()


def training_step(bundle, seed: int = 0) -> float:
    """One AdamW step of the shipped (phase 2) training loss (training/mma/train.py): answer-only
    cross-entropy on an image question plus the text-only instruction's distillation loss
    KL(frozen || adapted), summed."""
    torch.manual_seed(seed)
    vlm, mma = bundle.vlm, bundle.mma
    mma.train().requires_grad_(True)
    bundle.projector.requires_grad_(True)
    optimizer = torch.optim.AdamW([*mma.parameters(), *bundle.projector.parameters()], lr=1e-2, weight_decay=0.0)
    k = vlm.image_tokens
    image_rows = [vlm.layout.encode([(QUESTION, "red"), ("How many squares are there?", "2")], k)]
    text_rows = [vlm.layout.encode([("Name a fruit.", "An apple.")], 0)]
    image = vlm.image_embeds(vlm.image_patches(_picture()), bundle.projector)
    total = 0.0
    for loss in (batch_loss(bundle.lm, mma, bundle.state, image_rows, IMAGE, 0, image),
                 distill_loss(bundle.lm, mma, bundle.state, text_rows, TEXT, 0)):
        loss.backward()
        total += float(loss.detach())
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    mma.eval()
    return total


def adapter_state_dict(bundle) -> dict:
    state = {k: v.detach().clone() for k, v in bundle.mma.state_dict().items()}
    return state | {f"projector.{k}": v.detach().clone() for k, v in bundle.projector.state_dict().items()}


def load_adapter_state_dict(bundle, state: dict) -> None:
    bundle.mma.load_state_dict({k: v for k, v in state.items() if not k.startswith("projector.")})
    bundle.projector.load_state_dict({k[len("projector."):]: v for k, v in state.items() if k.startswith("projector.")})
