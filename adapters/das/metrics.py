"""What the DAS figures measure: answers through the skipped model, their agreement with the full
model, the multiply-adds per generated token, and one-thread decoding latency."""
from __future__ import annotations

import time

import torch

from adapters.das.modeling import skipping


def answer_fn(bundle, layers, mode: str):
    """``(questions, patch_list, max_new, first_logits) -> ids`` through the LM skipped as asked
    (for `adapters.vlm.evaluate.vqa_accuracy`)."""
    def answer(questions, patches, max_new, first_logits=None):
        with skipping(bundle.state, layers, mode):
            return bundle.vlm.answer(questions, patches, lm=bundle.lm, max_new=max_new, first_logits=first_logits)
    return answer


def layer_macs(lm) -> list[int]:
    """Per decoder layer, the multiply-adds one token costs in its weight matrices."""
    from adapters.das.modeling import SkippableLayer

    out = []
    for layer in lm.model.layers:
        inner = layer.layer if isinstance(layer, SkippableLayer) else layer
        out.append(sum(m.weight.numel() for m in inner.modules() if isinstance(m, torch.nn.Linear)))
    return out


def macs_per_token(lm, das, layers, mode: str) -> int:
    """Multiply-adds per generated token (weight matrices of the layers that run, the adapters of the
    replaced layers and the output head; attention scores, which grow with the context, left out)."""
    per_layer = layer_macs(lm)
    skipped = set(layers) if mode != "full" else set()
    total = sum(m for i, m in enumerate(per_layer) if i not in skipped)
    if mode == "adapters":
        total += sum(sum(p.numel() for n, p in das.adapters[str(i)].named_parameters() if n.endswith("weight"))
                     for i in skipped if str(i) in das.adapters)
    return total + lm.lm_head.weight.numel()


@torch.no_grad()
def decode_seconds(bundle, layers, mode: str, patches, question: str, new_tokens: int = 16,
                   repeats: int = 3) -> dict:
    """Best-of-``repeats`` wall time of prefill + ``new_tokens`` greedy tokens (never stopping early,
    so every variant decodes the same count) at the current torch thread count."""
    vlm = bundle.vlm
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        with skipping(bundle.state, layers, mode):
            from adapters.vlm.modeling import greedy, left_pad

            x, mask = left_pad([vlm.prompt_embeds(question, patches, bundle.lm)])
            greedy(bundle.lm, x, mask, new_tokens, stop_id=-1)
        best = min(best, time.perf_counter() - start)
    return {"seconds": best, "ms_per_token": 1000 * best / new_tokens, "new_tokens": new_tokens}


def agreement(reference: list, other: list) -> dict:
    """Shares of questions where ``other`` gives the reference's (the full model's) open answer and
    its closed-set choice; both are `adapters.vlm.evaluate.vqa_accuracy` predictions lists."""
    pairs = list(zip(reference, other))
    n = max(len(pairs), 1)
    return {"open": sum(a[0] == b[0] for a, b in pairs) / n, "choice": sum(a[1] == b[1] for a, b in pairs) / n,
            "n": len(pairs)}
