"""The device entry: type every token of a piece of code (NER adapter on, and the linear probe on the
frozen features) against the `ast` ground truth, and look for one bug with the task adapter trained
above the NER adapter and with the one trained alone. Plain data in and out."""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from adapters.codeberter.config import REQUEST_MAX_LEN, Request
from adapters.codeberter.data import OPERATORS, first_subwords, subword_offsets
from adapters.codeberter.labels import TYPE_INDEX, TYPES, python_tokens
from adapters.common.contract import Progress


@dataclass(frozen=True)
class BugGuess:
    start: int  # character span of the token the model blames
    end: int
    token: str
    fix: str  # the token it would put there
    confidence: float  # softmax probability of the chosen place


@dataclass(frozen=True)
class Result:
    code: str
    spans: tuple  # per Python token: (start, end, text, true type)
    adapter_types: tuple  # per Python token: predicted type with the NER adapter, or "" (not read)
    probe_types: tuple  # per Python token: predicted type by the linear probe on frozen features, or ""
    adapter_accuracy: float
    probe_accuracy: float
    scored: int  # Python tokens scored (they own their first subword)
    total: int  # Python tokens in the code
    past_input: int  # tokens after the model's input length (shown, not typed)
    bug_with_ner: BugGuess
    bug_alone: BugGuess
    scale: float
    seconds: float
    model: str


def _span_of(subword: int, offsets, tokens) -> int:
    """Index of the Python token a subword overlaps (a byte-level subword may start with the space
    before its token), or the nearest one before it."""
    start, end = offsets[subword]
    best = 0
    for i, tok in enumerate(tokens):
        if tok.start < end and tok.end > start:
            return i
        if tok.start <= start:
            best = i
    return best


def _bug(bundle, stack, adapter_head, ids, mask, valid, offsets, tokens) -> BugGuess:
    adapter, head = adapter_head
    hidden = bundle.encoder.hidden(ids, mask, [*stack, (adapter, 1.0)])
    probs = head.location_logits(hidden, valid).softmax(-1)[0]
    location = int(probs.argmax())
    repair = int(head.repair_logits(hidden, valid, torch.tensor([location])).argmax(-1)[0])
    T = ids.shape[1]
    blamed = tokens[_span_of(location, offsets, tokens)]
    fix = OPERATORS[repair - T] if repair >= T else tokens[_span_of(repair, offsets, tokens)].text
    return BugGuess(blamed.start, blamed.end, blamed.text, fix, float(probs[location]))


@torch.no_grad()
def run(bundle, request: Request, *, device=None, progress: Progress = None) -> Result:
    started = time.perf_counter()
    if progress:
        progress(0.0, "Reading the code")
    tokens = python_tokens(request.code)
    ids_list, offsets = subword_offsets(bundle.tokenizer, request.code, REQUEST_MAX_LEN)
    owned = first_subwords(tokens, offsets)
    ids = torch.tensor([ids_list])
    mask = torch.ones_like(ids)
    valid = mask.bool()
    for special in bundle.special_ids:
        valid &= ids != special
    enc = bundle.encoder
    if progress:
        progress(0.2, "Typing tokens (NER adapter on, and the probe on frozen features)")
    with_adapter = bundle.type_head(enc.hidden(ids, mask, [(bundle.ner, request.scale)])).argmax(-1)[0].tolist()
    probe = bundle.probe_head(enc.hidden(ids, mask)).argmax(-1)[0].tolist()
    adapter_types, probe_types, hits_a, hits_p = [], [], 0, 0
    for tok, k in zip(tokens, owned):
        if k < 0:
            adapter_types.append("")
            probe_types.append("")
            continue
        adapter_types.append(TYPES[with_adapter[k]])
        probe_types.append(TYPES[probe[k]])
        hits_a += with_adapter[k] == TYPE_INDEX[tok.kind]
        hits_p += probe[k] == TYPE_INDEX[tok.kind]
    scored = sum(k >= 0 for k in owned)
    read_up_to = max(end for _, end in offsets)
    past_input = sum(t.start >= read_up_to for t in tokens)
    if progress:
        progress(0.6, "Looking for a bug (with and without the NER adapter)")
    bug_with = _bug(bundle, [(bundle.ner, request.scale)], bundle.bug[True], ids, mask, valid, offsets, tokens)
    bug_alone = _bug(bundle, [], bundle.bug[False], ids, mask, valid, offsets, tokens)
    if progress:
        progress(1.0, "Done")
    return Result(
        code=request.code,
        spans=tuple((t.start, t.end, t.text, t.kind) for t in tokens),
        adapter_types=tuple(adapter_types), probe_types=tuple(probe_types),
        adapter_accuracy=hits_a / max(1, scored), probe_accuracy=hits_p / max(1, scored),
        scored=scored, total=len(tokens), past_input=past_input, bug_with_ner=bug_with, bug_alone=bug_alone, scale=request.scale,
        seconds=time.perf_counter() - started, model=bundle.name)


def gpu_seconds(entry: str, request) -> int:
    return 20
