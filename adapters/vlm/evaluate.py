"""VQA accuracy of the VLM on scene questions, per question type, with or without the image."""
from __future__ import annotations

import re
from collections import defaultdict

import torch

from adapters.vlm.scenes import NUMBER_WORDS, QUESTION_TYPES

_WORD_NUMBERS = {v: str(k) for k, v in NUMBER_WORDS.items()}


def normalise(answer: str) -> str:
    """The first word of an answer, lower case, number words as digits ("Three." -> "3")."""
    words = re.findall(r"[a-z0-9]+", answer.lower())
    if not words:
        return ""
    return _WORD_NUMBERS.get(words[0], words[0])


def correct(predicted: str, answer: str) -> bool:
    return normalise(predicted) == normalise(answer)


def question_items(scenes, per_type: int | None = None) -> list[tuple[int, object]]:
    """(scene index, QA) pairs, at most ``per_type`` of each question type, in scene order."""
    taken: dict[str, int] = defaultdict(int)
    items = []
    for i, scene in enumerate(scenes):
        for qa in scene.qa:
            if per_type is None or taken[qa.kind] < per_type:
                taken[qa.kind] += 1
                items.append((i, qa))
    return items


@torch.no_grad()
def vqa_accuracy(vlm, patches: torch.Tensor, items, *, with_image: bool = True, answer_fn=None,
                 batch: int = 16, max_new: int = 4) -> dict:
    """Greedy exact-match accuracy (first word) per question type and overall, with the number of
    questions. ``answer_fn(questions, patch_list, max_new)`` replaces ``vlm.answer`` (an adapted
    model); ``with_image=False`` withholds the image (the text-only prior of the same model)."""
    hits: dict[str, list[int]] = defaultdict(list)
    answer_fn = answer_fn or (lambda qs, ps, n: vlm.answer(qs, ps, max_new=n))
    for lo in range(0, len(items), batch):
        chunk = items[lo:lo + batch]
        plist = [patches[i:i + 1] if with_image else None for i, _ in chunk]
        outs = answer_fn([qa.question for _, qa in chunk], plist, max_new)
        for (_, qa), ids in zip(chunk, outs):
            hits[qa.kind].append(int(correct(vlm.decode(ids), qa.answer)))
    table = {kind: {"accuracy": sum(v) / len(v), "n": len(v)} for kind in QUESTION_TYPES if (v := hits.get(kind))}
    every = [x for v in hits.values() for x in v]
    table["all"] = {"accuracy": sum(every) / max(len(every), 1), "n": len(every)}
    return table
