"""The Kangaroo tab's device work: one request decoded four ways on the same prompt ids (plain greedy
with our KV cache, Kangaroo with the adapter, Kangaroo with the bare early exit, transformers'
`generate`), returned as plain data."""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from adapters.common.contract import Progress
from adapters.kangaroo.config import Request
from adapters.kangaroo.modeling import kangaroo_decode
from adapters.speculative.decoded import Decoded
from adapters.speculative.engine import greedy_decode


@dataclass(frozen=True)
class Result:
    prompt_ids: tuple[int, ...]
    greedy: Decoded
    adapter: Decoded  # Kangaroo with the trained adapter
    bare: Decoded  # Kangaroo drafting with the bare early exit (adapter off)
    hf_generate: Decoded  # transformers' own greedy `generate` (its DynamicCache), for reference
    num_layers: int
    model: str  # which model decoded, in words
    draft_vocab_size: int = 0  # rows of the trimmed draft head (0: the full head)

    @property
    def identical(self) -> bool:
        return self.adapter.tokens == self.greedy.tokens


def _stage(progress: Progress, index: int, stages: int) -> Progress:
    """One decode's progress (0..1) as its share of the whole request's bar."""
    if progress is None:
        return None
    return lambda fraction, text: progress((index + fraction) / stages, text)


@torch.inference_mode()
def hf_generate(model, ids: list[int], max_new: int, eos: int | None) -> Decoded:
    """transformers' `generate` (greedy), timed like our decoders."""
    tensor = torch.tensor([ids], device=model.device)
    start = time.perf_counter()
    out = model.generate(tensor, attention_mask=torch.ones_like(tensor), max_new_tokens=max_new, do_sample=False,
                         eos_token_id=eos, pad_token_id=eos if eos is not None else 0)
    seconds = time.perf_counter() - start
    tokens = out[0, len(ids):].tolist()
    return Decoded(tokens, ["full"] * len(tokens), seconds, verify_passes=len(tokens))


def warm(bundle, ids: list[int], exit_layer: int) -> None:
    """Once per process (and device): two tokens of each decoder, so that building the runner's
    derived weights (fused, input-major and packed copies, the trimmed head; seconds for a 135M
    model on a CPU) is never charged to whichever decoder a request times first."""
    device = bundle.model.lm_head.weight.device
    if getattr(bundle, "warmed_on", None) == device:
        return
    ids = ids[:16]
    greedy_decode(bundle.model, ids, 2, eos_id=None)
    kangaroo_decode(bundle.model, bundle.adapter(exit_layer), ids, 2, threshold=0.0, gamma=1,
                    draft_vocab=getattr(bundle, "draft_vocab", None))
    bundle.warmed_on = device


def run(bundle, request: Request, *, device: torch.device, progress: Progress = None) -> Result:
    """Plain greedy, Kangaroo + adapter, Kangaroo with the bare exit and transformers' `generate`, in
    that order, one request.

    CPU threads are set once per process (one by default): batch-1 decoding is a chain of tiny ops
    that extra threads only slow down.
    """
    bundle.model.to(device)
    adapter = bundle.adapter(request.exit_layer).to(device)
    ids, max_new = list(request.prompt_ids), request.max_new_tokens
    eos = bundle.codec.eos_id
    vocab = getattr(bundle, "draft_vocab", None)
    if progress is not None:
        progress(0.0, "preparing the model")
    warm(bundle, ids, request.exit_layer)
    greedy = greedy_decode(bundle.model, ids, max_new, eos_id=eos, progress=_stage(progress, 0, 4))
    with_adapter = kangaroo_decode(bundle.model, adapter, ids, max_new, threshold=request.threshold,
                                   gamma=request.gamma, eos_id=eos, progress=_stage(progress, 1, 4), draft_vocab=vocab)
    bare = kangaroo_decode(bundle.model, None, ids, max_new, threshold=request.threshold, gamma=request.gamma,
                           eos_id=eos, exit_layer=request.exit_layer, progress=_stage(progress, 2, 4), draft_vocab=vocab)
    if progress is not None:
        progress(0.75, "transformers generate (for reference)")
    reference = hf_generate(bundle.model, ids, max_new, eos)
    if progress is not None:
        progress(1.0, "done")
    return Result(tuple(ids), greedy, with_adapter, bare, reference, bundle.num_layers, bundle.name,
                  0 if vocab is None else len(vocab))


def gpu_seconds(entry: str, request: Request) -> int:
    return 20 + int(request.max_new_tokens) // 2  # four decodes of a 135M model; generous on a GPU
