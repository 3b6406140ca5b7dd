"""Prompts for the VLM as the engine takes them, and the draft's training data: the target's own
greedy descriptions of synthetic scenes with its teacher-forced features."""
from __future__ import annotations

import torch

from adapters.vlm.model import VisionLanguageModel

QUESTIONS = (
    "Describe the picture in detail.",
    "What do you see in this picture? Describe every object.",
    "Describe the scene: the objects, their colours, shapes and places.",
    "Tell me about this image.",
)


def prompt(vlm: VisionLanguageModel, question: str, patches: torch.Tensor | None):
    """(input embeddings T x H, image mask T, token ids T with -1 at image tokens) of one chat
    prompt waiting for the answer."""
    k = vlm.image_tokens if patches is not None else 0
    ids, slot, _ = vlm.layout.encode([(question, None)], k)
    embeds = vlm.prompt_embeds(question, patches)
    mask = torch.zeros(len(ids), dtype=torch.bool)
    if slot is not None:
        mask[slot: slot + k] = True
    return embeds, mask, ids


@torch.no_grad()
def example(vlm: VisionLanguageModel, question: str, patches: torch.Tensor, answer: list[int]) -> dict:
    """One teacher-forced training sequence: the prompt followed by the target's own answer (and
    its end token), with the target's last-layer features after the final norm."""
    embeds, mask, ids = prompt(vlm, question, patches)
    answer_ids = torch.tensor(answer, dtype=torch.long)
    full = torch.cat([embeds, vlm.lm.get_input_embeddings()(answer_ids)])
    features = vlm.lm.model(inputs_embeds=full[None]).last_hidden_state[0]
    return {"embeds": full.float(), "features": features.float(),
            "image_mask": torch.cat([mask, torch.zeros(len(answer), dtype=torch.bool)]),
            "ids": torch.tensor(list(ids) + list(answer), dtype=torch.long), "answer_start": len(ids)}
