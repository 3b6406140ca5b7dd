"""The ViSpec tab's device work: one picture and question decoded by plain greedy decoding and by
speculative decoding with the vision-aware draft and with the text-only draft, same prompt, same
thread, returned as plain data."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from adapters.common.contract import Progress
from adapters.speculative.decoded import Decoded
from adapters.speculative.engine import feature_speculative_decode, greedy_decode
from adapters.vispec.config import DRAFTS, Request
from adapters.vispec.modeling import ViSpecDrafter


@dataclass(frozen=True)
class Result:
    prompt_tokens: int
    image_tokens: int
    greedy: Decoded
    drafted: dict  # draft name -> Decoded (empty with the draft off)
    draft: str  # the draft the user chose
    draft_tokens: int
    model: str
    draft_vocab_size: int

    @property
    def chosen(self) -> Decoded | None:
        return self.drafted.get(self.draft)

    @property
    def identical(self) -> bool:
        return all(d.tokens == self.greedy.tokens for d in self.drafted.values())


def _stage(progress: Progress, index: int, stages: int) -> Progress:
    if progress is None:
        return None
    return lambda fraction, text: progress((index + fraction) / stages, text)


def decode(bundle, embeds: torch.Tensor, image_mask: torch.Tensor, which: str, max_new: int, draft_tokens: int,
           progress: Progress = None) -> Decoded:
    """Speculative decoding of one prompt with draft ``which`` ("vision" or "text")."""
    drafter = ViSpecDrafter(bundle.drafts[which], bundle.vocab.get(which))
    return feature_speculative_decode(bundle.lm, drafter, None, max_new, gamma=draft_tokens, eos_id=bundle.end_id,
                                      progress=progress, prompt_embeds=embeds, image_mask=image_mask,
                                      progress_text=f"{which} draft")


@torch.inference_mode()
def run(bundle, request: Request, *, device: torch.device, progress: Progress = None) -> Result:
    """Plain greedy, then (with the draft on) the chosen draft and the other one, one request.
    One CPU thread by default: batch-1 decoding is a chain of tiny ops that extra threads slow down."""
    bundle.lm.to(device)
    embeds, mask, length = bundle.prompt(request.image, request.question)
    others = [d for d in DRAFTS if d != request.draft and d in bundle.drafts]
    order = (request.draft, *others) if request.use_draft else ()
    if not getattr(bundle, "warmed", False):
        # a few tokens of each decoder once per process, so that building derived weights (fused and
        # transposed copies, trimmed heads) is not charged to whichever decoder runs first
        greedy_decode(bundle.lm, None, 2, eos_id=bundle.end_id, prompt_embeds=embeds)
        for which in bundle.drafts:
            decode(bundle, embeds, mask, which, 2, 1)
        bundle.warmed = True
    stages = 1 + len(order)
    greedy = greedy_decode(bundle.lm, None, request.max_new_tokens, eos_id=bundle.end_id,
                           progress=_stage(progress, 0, stages), prompt_embeds=embeds)
    drafted = {}
    for i, which in enumerate(order):
        drafted[which] = decode(bundle, embeds, mask, which, request.max_new_tokens, request.draft_tokens,
                                _stage(progress, 1 + i, stages))
    if progress is not None:
        progress(1.0, "done")
    vocab = bundle.vocab.get(request.draft)
    return Result(length, int(mask.sum()), greedy, drafted, request.draft, request.draft_tokens, bundle.name,
                  0 if vocab is None else len(vocab))


def gpu_seconds(entry: str, request: Request) -> int:
    return 20 + int(request.max_new_tokens) // 2
