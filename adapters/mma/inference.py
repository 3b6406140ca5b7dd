"""Device entries of the MMA tab: one question, answered by the VLM with MMA adapters and by the
same VLM without them (projector only), each with and without the picture; the router's
per-layer path weights for both modalities."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from adapters.mma.config import Request
from adapters.mma.modeling import IMAGE, TEXT, adapted, route_weights


@dataclass(frozen=True)
class Answer:
    text: str
    tokens: tuple[int, ...]
    seconds: float


@dataclass(frozen=True)
class Result:
    question: str
    with_image: bool
    route: str
    temperature: float
    mma_image: Answer | None  # MMA adapters on, picture given (None when there is no picture)
    mma_text: Answer  # MMA adapters on, picture withheld
    base_image: Answer | None  # projector only (adapters off), picture given
    base_text: Answer  # projector only, picture withheld
    routing: np.ndarray  # layers x 2 x 2: [layer, modality (text, image), path]
    layers: tuple[int, ...]
    model: str


def gpu_seconds(entry: str, request: Request) -> int:
    return 60


def _answer(bundle, question: str, patches, *, adapter: bool, route: str, temperature: float,
            max_new: int, report) -> Answer:
    vlm = bundle.vlm
    modality = torch.tensor([IMAGE if patches is not None else TEXT])
    tokens: list[int] = []

    def on_token(step, ids):
        if ids[0] != vlm.layout.end_id:
            tokens.append(ids[0])
        report(vlm.decode(tokens))

    start = time.perf_counter()
    with adapted(bundle.lm, bundle.mma, bundle.state, modality, route=route, temperature=temperature, enabled=adapter):
        ids = vlm.answer([question], [patches], lm=bundle.lm, max_new=max_new, on_token=on_token,
                         projector=bundle.projector if adapter else None)[0]
    return Answer(vlm.decode(ids), tuple(ids), time.perf_counter() - start)


@torch.no_grad()
def routing_table(bundle, temperature: float) -> np.ndarray:
    """layers x 2 x 2 path weights, the text-only and the image modality token (zeros for an
    un-routed adapter, which has no router)."""
    mma = bundle.mma
    layers = sorted(int(k) for k in mma.adapters)
    if not mma.config.routed:
        return np.zeros((len(layers), 2, 2), np.float32)
    weights = route_weights(bundle.lm, mma, bundle.state, torch.tensor([TEXT, IMAGE]), temperature)
    bundle.state.enabled = False
    return np.stack([weights[i].numpy() for i in layers]).astype(np.float32)


@torch.no_grad()
def run(bundle, request: Request, *, device: str = "cpu", progress=None) -> Result:
    vlm = bundle.vlm
    patches = vlm.image_patches(request.image) if request.image is not None else None
    runs = [("mma", patches, True), ("mma", None, True), ("base", patches, False), ("base", None, False)]
    if patches is None:
        runs = [r for r in runs if r[1] is None]
    answers = {}
    for n, (which, p, on) in enumerate(runs):
        label = f"{'with MMA' if on else 'projector only'}, {'with' if p is not None else 'without'} the picture"

        def report(text, n=n, label=label):
            if progress is not None:
                progress((n + 0.5) / len(runs), f"{label}: {text}")

        answers[(which, p is not None)] = _answer(bundle, request.question, p, adapter=on, route=request.route,
                                                  temperature=request.temperature,
                                                  max_new=request.max_new_tokens, report=report)
    if progress is not None:
        progress(1.0, "Done")
    return Result(request.question, patches is not None, request.route, request.temperature,
                  answers.get(("mma", True)), answers[("mma", False)], answers.get(("base", True)),
                  answers[("base", False)], routing_table(bundle, request.temperature),
                  tuple(sorted(int(k) for k in bundle.mma.adapters)), bundle.name)
