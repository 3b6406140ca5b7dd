"""`VisionLanguageModel`: the frozen parts and the projector behind one interface.

Papers that adapt the VLM hold one of these and change the language model's layers through their
own private copy of its module tree (`private_lm`), never the shared zoo object.
"""
from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from adapters.vlm.modeling import ChatLayout, Projector, greedy, left_pad, pool_patches, splice, vision_patches
from adapters.vlm.scenes import SIZE

MAX_ANSWER_TOKENS = 48


def private_lm(lm: nn.Module) -> nn.Module:
    """A copy of the LM's module tree that shares every parameter and buffer with the original:
    modules can be swapped in it (adapters) without touching the shared model, at no memory cost."""
    shared = {id(t): t for t in itertools.chain(lm.parameters(), lm.buffers())}
    return copy.deepcopy(lm, memo=shared)


@dataclass
class VisionLanguageModel:
    lm: nn.Module
    tokenizer: object
    projector: Projector
    dino: nn.Module | None  # None where only cached patch tokens are used (training)
    prep: object  # adapters.zoo.dinov2.ImagePrep
    name: str = "DINOv2-S + projector + SmolLM2-135M-Instruct"

    def __post_init__(self):
        self.layout = ChatLayout(self.tokenizer)

    @property
    def image_tokens(self) -> int:
        return self.projector.config.image_tokens

    def frozen_params(self) -> int:
        vision = sum(p.numel() for p in self.dino.parameters()) if self.dino is not None else 0
        return sum(p.numel() for p in self.lm.parameters()) + vision

    def projector_params(self) -> int:
        return sum(p.numel() for p in self.projector.parameters())

    @torch.no_grad()
    def image_patches(self, rgb: np.ndarray) -> torch.Tensor:
        """An HxWx3 uint8 picture (resized to 224 px) -> 1 x 256 x 384 frozen DINOv2 patch tokens."""
        return vision_patches(self.dino, self.prep(rgb, SIZE))

    def image_embeds(self, patches: torch.Tensor, projector: Projector | None = None) -> torch.Tensor:
        """B x 256 x 384 patch tokens -> B x K x 576 image tokens in the LM's embedding space
        (through ``projector`` instead of the VLM's own when given: a paper's co-trained one)."""
        projector = projector if projector is not None else self.projector
        return projector(pool_patches(patches.float(), projector.config.grid))

    def prompt_embeds(self, question: str, patches: torch.Tensor | None, lm: nn.Module | None = None,
                      history=(), projector: Projector | None = None) -> torch.Tensor:
        """T x 576 input embeddings of one chat prompt waiting for the answer (image optional)."""
        lm = lm or self.lm
        k = (projector if projector is not None else self.projector).config.image_tokens if patches is not None else 0
        ids, slot, _ = self.layout.encode([*history, (question, None)], k)
        image = self.image_embeds(patches, projector) if patches is not None else None
        return splice(lm.get_input_embeddings(), [ids], [slot], image)[0]

    @torch.no_grad()
    def answer(self, questions: list[str], patches: list[torch.Tensor | None], *, lm: nn.Module | None = None,
               max_new: int = MAX_ANSWER_TOKENS, on_token=None, prefix: torch.Tensor | None = None,
               projector: Projector | None = None, first_logits: list | None = None) -> list[list[int]]:
        """Greedy answer ids for a batch of questions, each with its image's patches or None.
        ``prefix`` (B x P x 576) is put before each prompt (a paper's extra tokens)."""
        lm = lm or self.lm
        rows = [self.prompt_embeds(q, p, lm, projector=projector) for q, p in zip(questions, patches)]
        if prefix is not None:
            rows = [torch.cat([prefix[b], r]) for b, r in enumerate(rows)]
        x, mask = left_pad(rows)
        return greedy(lm, x, mask, max_new, self.layout.end_id, on_token=on_token, first_logits=first_logits)

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)


def load_vlm(projector_path: str | Path, *, lm_source: str | None = None, dino_source: str | None = None):
    """The VLM with its frozen parts from the zoo (package weights) or from hub ids / directories."""
    from adapters.vlm.weights import load_projector
    from adapters.zoo import dinov2, load_dinov2_small, load_smollm2, smollm2

    lm, tokenizer = load_smollm2() if lm_source is None else smollm2.from_pretrained(lm_source)
    dino, prep = load_dinov2_small() if dino_source is None else dinov2.from_pretrained(dino_source)
    return VisionLanguageModel(lm, tokenizer, load_projector(projector_path), dino, prep)
