"""The Kangaroo tab's device work: one request decoded three ways on the same prompt ids (plain
greedy, Kangaroo with the adapter, Kangaroo with the bare early exit), returned as plain data."""
from __future__ import annotations

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
    num_layers: int
    model: str  # which model decoded, in words

    @property
    def identical(self) -> bool:
        return self.adapter.tokens == self.greedy.tokens


def _stage(progress: Progress, index: int, stages: int) -> Progress:
    """One decode's progress (0..1) as its share of the whole request's bar."""
    if progress is None:
        return None
    return lambda fraction, text: progress((index + fraction) / stages, text)


def run(bundle, request: Request, *, device: torch.device, progress: Progress = None) -> Result:
    """Plain greedy, Kangaroo + adapter and Kangaroo with the bare exit, in that order, one request.

    CPU threads are set once per process (one by default): batch-1 decoding is a chain of tiny ops
    that extra threads only slow down.
    """
    bundle.model.to(device)
    adapter = bundle.adapter(request.exit_layer).to(device)
    ids, max_new = list(request.prompt_ids), request.max_new_tokens
    eos = bundle.codec.eos_id
    greedy = greedy_decode(bundle.model, ids, max_new, eos_id=eos, progress=_stage(progress, 0, 3))
    with_adapter = kangaroo_decode(bundle.model, adapter, ids, max_new, threshold=request.threshold,
                                   gamma=request.gamma, eos_id=eos, progress=_stage(progress, 1, 3))
    bare = kangaroo_decode(bundle.model, None, ids, max_new, threshold=request.threshold, gamma=request.gamma,
                           eos_id=eos, exit_layer=request.exit_layer, progress=_stage(progress, 2, 3))
    return Result(tuple(ids), greedy, with_adapter, bare, bundle.num_layers, bundle.name)


def gpu_seconds(entry: str, request: Request) -> int:
    return 20 + int(request.max_new_tokens) // 2
