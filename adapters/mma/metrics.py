"""What the MMA figures measure: VQA answers through the adapted model, and text-only retention
(agreement with, and KL divergence from, the frozen model on text prompts)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from adapters.mma.modeling import IMAGE, TEXT, adapted


def answer_fn(bundle, route: str = "auto"):
    """``(questions, patch_list, max_new) -> ids`` through the adapted LM, each row routed by whether
    it has a picture (for `adapters.vlm.evaluate.vqa_accuracy`)."""
    def answer(questions, patches, max_new, first_logits=None):
        modality = torch.tensor([IMAGE if p is not None else TEXT for p in patches])
        with adapted(bundle.lm, bundle.mma, bundle.state, modality, route=route):
            return bundle.vlm.answer(questions, patches, lm=bundle.lm, max_new=max_new, projector=bundle.projector,
                                     first_logits=first_logits)
    return answer


@torch.no_grad()
def text_retention(bundle, prompts: list[str], answers: list[list[int]], route: str = "auto") -> dict:
    """Teacher-forced on the frozen model's own greedy answers: the share of answer positions where
    the adapted model's top token equals the frozen model's, and the mean KL(frozen || adapted)."""
    vlm = bundle.vlm
    agree, total, kl = 0, 0, 0.0
    for prompt, answer in zip(prompts, answers):
        ids, _, _ = vlm.layout.encode([(prompt, None)], 0)
        full = torch.tensor([ids + list(answer)])
        start = len(ids) - 1
        frozen = vlm.lm(input_ids=full).logits[0, start:-1].float()
        with adapted(bundle.lm, bundle.mma, bundle.state, torch.tensor([TEXT]), route=route):
            adapted_logits = bundle.lm(input_ids=full).logits[0, start:-1].float()
        agree += int((frozen.argmax(-1) == adapted_logits.argmax(-1)).sum())
        total += frozen.shape[0]
        kl += float(F.kl_div(adapted_logits.log_softmax(-1), frozen.log_softmax(-1), log_target=True,
                             reduction="sum"))
    return {"agreement": agree / max(total, 1), "kl": kl / max(total, 1), "positions": total, "prompts": len(prompts)}
