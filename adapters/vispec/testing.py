"""A tiny real ViSpec bundle (the tiny VLM of `adapters.vlm.testing`, a fresh vision-aware draft and
a fresh text-only draft, trimmed vocabularies) and the hooks `tests/contract` calls.

"Adapter" here is the vision-aware draft; "off" runs it with the image adaptor and its fusion
bypassed (the EAGLE path), which `frozen_output` recomputes through a separate text-only draft
holding the same shared weights, so no image-adaptor code runs there at all."""
from __future__ import annotations

import numpy as np
import torch

from adapters.vispec.config import Request
from adapters.vispec.data import example
from adapters.vispec.loading import ViSpecBundle
from adapters.vispec.modeling import ViSpecDraft, config_for, draft_loss, rope, vocab_index
from adapters.vlm.testing import VOCAB, frozen_vlm_parameters, tiny_vlm

QUESTION = "Describe the picture in detail."
ANSWER = [ord(c) for c in "a red circle on grass"]
MLP = 48


def picture(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (224, 224, 3), dtype=np.uint8)


def tiny_bundle(seed: int = 0) -> ViSpecBundle:
    vlm = tiny_vlm(seed)
    with torch.no_grad():
        # a random LM is nearly uniform; a larger final gain makes its choices confident, as a trained one's are
        vlm.lm.model.norm.weight.mul_(6.0)
    torch.manual_seed(seed + 100)
    drafts = {"vision": ViSpecDraft(config_for(vlm.lm, True, MLP)).eval(),
              "text": ViSpecDraft(config_for(vlm.lm, False, MLP)).eval()}
    vocab = torch.arange(0, VOCAB, 2).tolist() + [VOCAB - 1]  # a trimmed head: even bytes and the end marker
    vocab = torch.tensor(sorted(set(vocab)))
    return ViSpecBundle(vlm, drafts, {"vision": vocab, "text": vocab}, "tiny random VLM")


def example_request() -> Request:
    return Request(picture(), QUESTION, 8, 3, "vision")


def adapter_parameters(bundle) -> dict[str, torch.nn.Parameter]:
    return dict(bundle.drafts["vision"].named_parameters())


def frozen_parameters(bundle) -> dict[str, torch.Tensor]:
    return frozen_vlm_parameters(bundle.vlm)


def perturb_adapter(bundle, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in bundle.drafts["vision"].parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=generator, dtype=p.dtype))


def _example(bundle) -> dict:
    vlm = bundle.vlm
    return example(vlm, QUESTION, vlm.image_patches(picture()), ANSWER)


def _logits(bundle, draft: ViSpecDraft, use_image: bool) -> np.ndarray:
    """The draft's next-token logits (full head) at every text pair of the fixed teacher-forced sequence."""
    ex = _example(bundle)
    lm = bundle.vlm.lm
    rows, positions, pair = draft.sequence_rows(ex["embeds"], ex["features"], ex["image_mask"], use_image)
    cos, sin = rope(lm, positions)
    out = draft.forward_rows(rows, cos, sin)
    return lm.lm_head(out[pair >= 0]).double().numpy()


@torch.no_grad()
def output(bundle, adapter_on: bool) -> np.ndarray:
    return _logits(bundle, bundle.drafts["vision"], adapter_on)


@torch.no_grad()
def frozen_output(bundle) -> np.ndarray:
    vision = bundle.drafts["vision"]
    text = ViSpecDraft(vision.config.replace(vision=False))
    shared = {k: v for k, v in vision.state_dict().items() if not k.startswith(("imadpt.", "img_fc."))}
    text.load_state_dict(shared)
    return _logits(bundle, text, True)


def training_step(bundle, seed: int = 0) -> float:
    """One AdamW step of EAGLE's loss with the unrolled second pass (training/vispec/train.py)."""
    torch.manual_seed(seed)
    draft = bundle.drafts["vision"].train().requires_grad_(True)
    lm = bundle.vlm.lm
    vocab = bundle.vocab["vision"]
    optimizer = torch.optim.AdamW(draft.parameters(), lr=1e-2, weight_decay=0.0)
    loss = draft_loss(draft, lm, lm.lm_head.weight[vocab].t(), vocab_index(vocab, lm.config.vocab_size), _example(bundle))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    draft.eval()
    return float(loss.detach())


def adapter_state_dict(bundle) -> dict:
    return {k: v.detach().clone() for k, v in bundle.drafts["vision"].state_dict().items()}


def load_adapter_state_dict(bundle, state: dict) -> None:
    bundle.drafts["vision"].load_state_dict(state)
