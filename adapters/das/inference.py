"""Device entry of the DAS tab: one question answered three ways (the full model, the skip set's
layers replaced by their adapters, the same layers removed), each timed, with the learned per-layer
skip probabilities and each variant's multiply-adds per token."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from adapters.das.config import VARIANTS, Request
from adapters.das.metrics import macs_per_token
from adapters.das.modeling import skipping

LABELS = {"full": "full model", "adapters": "skipped layers replaced by adapters",
          "removed": "skipped layers removed"}


@dataclass(frozen=True)
class Answer:
    variant: str  # one of VARIANTS
    text: str
    tokens: tuple[int, ...]
    seconds: float  # prefill and every generated token, on this device
    macs_per_token: int
    layers_run: int


@dataclass(frozen=True)
class Result:
    question: str
    with_image: bool
    skipped: tuple[int, ...]
    manual: bool  # the skip set was chosen by hand (else: the searched top-k)
    answers: tuple[Answer, ...]  # in VARIANTS order
    probabilities: np.ndarray  # per layer, the learned skip probability (0: never skipped)
    fine_tuned: tuple[int, ...]  # layers whose adapters were trained after the search
    num_layers: int
    model: str


def gpu_seconds(entry: str, request: Request) -> int:
    return 45


def skip_set(bundle, request: Request) -> tuple[int, ...]:
    return request.manual or bundle.das.top_k(request.k)


@torch.no_grad()
def run(bundle, request: Request, *, device: str = "cpu", progress=None) -> Result:
    vlm = bundle.vlm
    patches = vlm.image_patches(request.image) if request.image is not None else None
    layers = skip_set(bundle, request)
    answers = []
    for n, variant in enumerate(VARIANTS):
        tokens: list[int] = []

        def on_token(step, ids, n=n, variant=variant, tokens=tokens):
            if ids[0] != vlm.layout.end_id:
                tokens.append(ids[0])
            if progress is not None:
                progress((n + 0.5) / len(VARIANTS), f"{LABELS[variant]}: {vlm.decode(tokens)}")

        start = time.perf_counter()
        with skipping(bundle.state, layers, variant):
            ids = vlm.answer([request.question], [patches], lm=bundle.lm, max_new=request.max_new_tokens,
                             on_token=on_token)[0]
        seconds = time.perf_counter() - start
        run_count = bundle.das.config.num_layers - (len(layers) if variant != "full" else 0)
        answers.append(Answer(variant, vlm.decode(ids), tuple(ids), seconds,
                              macs_per_token(bundle.lm, bundle.das, layers, variant), run_count))
    if progress is not None:
        progress(1.0, "Done")
    return Result(request.question, patches is not None, tuple(layers), bool(request.manual), tuple(answers),
                  bundle.das.probabilities().numpy().astype(np.float32),
                  tuple(int(i) for i in bundle.info.get("fine_tuned", ())), bundle.das.config.num_layers, bundle.name)
