"""Text-only instructions for the mixture: short everyday requests built from templates and
fillers. Training and held-out prompts use disjoint fillers, so retention is measured on prompts
the adapters never saw. Their targets are the frozen model's own greedy answers (made by the
training script), so any change the adapters make to text-only answers is measurable drift."""
from __future__ import annotations

import itertools

TEMPLATES = (
    "What is the capital of {place}?",
    "Write one sentence about {thing}.",
    "Give me a synonym for the word '{word}'.",
    "Explain in one sentence what a {thing} is.",
    "Name three things that are {adjective}.",
    "What is {a} plus {b}?",
    "Suggest a name for a pet {animal}.",
    "Why do people like {thing}?",
)
FILLERS = {
    "place": (("France", "Japan", "Italy", "Canada", "Egypt", "Spain", "Kenya", "Peru"),
              ("Germany", "Brazil", "India", "Norway")),
    "thing": (("the sea", "a bicycle", "bread", "rain", "a library", "the moon", "coffee", "a bridge", "music", "snow"),
              ("a volcano", "chess", "a garden", "the wind")),
    "word": (("happy", "big", "fast", "cold", "smart", "quiet", "old", "bright"),
             ("angry", "small", "brave", "tired")),
    "adjective": (("green", "round", "soft", "heavy", "sweet", "loud", "tiny", "hot"),
                  ("sharp", "wet", "shiny", "bitter")),
    "animal": (("cat", "dog", "parrot", "rabbit", "turtle", "hamster", "goldfish", "horse"),
               ("lizard", "mouse", "duck", "goat")),
}
NUMBERS = ((3, 4), (12, 7), (25, 17), (8, 9), (40, 2), (6, 15)), ((19, 23), (5, 31))


def prompts(split: str) -> list[str]:
    """Every prompt of the split (``train`` or ``heldout``), in a fixed order."""
    if split not in ("train", "heldout"):
        raise ValueError("split must be 'train' or 'heldout'")
    part = 0 if split == "train" else 1
    out = []
    for template in TEMPLATES:
        if "{a}" in template:
            out += [template.format(a=a, b=b) for a, b in NUMBERS[part]]
            continue
        key = next(k for k in FILLERS if "{" + k + "}" in template)
        out += [template.format(**{key: v}) for v in FILLERS[key][part]]
    return list(dict.fromkeys(itertools.chain(out)))
