"""VQA accuracy of the VLM on scene questions, per question type, with or without the image.

Two scores from one decoding: ``accuracy`` (open: the first word of the greedy answer is the right
one) and ``choice`` (closed set: among the answers of the question's type, e.g. the four colours, the
one whose first token the model ranks highest at the answer's first position is the right one).
The closed-set score measures a model that never learned the one-word answer format too (the
frozen model without the picture answers in sentences), so it is the fair text-only prior."""
from __future__ import annotations

import re
from collections import defaultdict

import torch

from adapters.vlm.scenes import COLOURS, NUMBER_WORDS, QUESTION_TYPES, SHAPES

ANSWER_SETS = {"colour": tuple(COLOURS), "shape": SHAPES, "count": ("1", "2", "3"), "leftright": ("left", "right"),
               "abovebelow": ("above", "below"), "yesno": ("yes", "no")}

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
                 batch: int = 16, max_new: int = 4, predictions: list | None = None) -> dict:
    """Greedy exact-match accuracy (first word) per question type and overall, with the number of
    questions. ``predictions`` (a list) receives each item's (normalised open answer, closed-set
    choice), in item order. ``answer_fn(questions, patch_list, max_new)`` replaces ``vlm.answer`` (an adapted
    model); ``with_image=False`` withholds the image (the text-only prior of the same model)."""
    hits: dict[str, list[int]] = defaultdict(list)
    chosen: dict[str, list[int]] = defaultdict(list)
    answer_fn = answer_fn or (lambda qs, ps, n, first: vlm.answer(qs, ps, max_new=n, first_logits=first))
    first_ids = {kind: [vlm.layout.token_ids(a)[0] for a in answers] for kind, answers in ANSWER_SETS.items()}
    for lo in range(0, len(items), batch):
        chunk = items[lo:lo + batch]
        plist = [patches[i:i + 1] if with_image else None for i, _ in chunk]
        first: list = []
        outs = answer_fn([qa.question for _, qa in chunk], plist, max_new, first)
        for b, ((_, qa), ids) in enumerate(zip(chunk, outs)):
            said = vlm.decode(ids)
            hits[qa.kind].append(int(correct(said, qa.answer)))
            scores = first[0][b, first_ids[qa.kind]]
            choice = ANSWER_SETS[qa.kind][int(scores.argmax())]
            chosen[qa.kind].append(int(choice == qa.answer))
            if predictions is not None:
                predictions.append((normalise(said), choice))
    table = {kind: {"accuracy": sum(v) / len(v), "choice": sum(chosen[kind]) / len(v), "n": len(v)}
             for kind in QUESTION_TYPES if (v := hits.get(kind))}
    every = [x for v in hits.values() for x in v]
    every_choice = [x for v in chosen.values() for x in v]
    table["all"] = {"accuracy": sum(every) / max(len(every), 1), "choice": sum(every_choice) / max(len(every), 1),
                    "n": len(every)}
    return table
