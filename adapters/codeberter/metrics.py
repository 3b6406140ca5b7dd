"""Held-out measures: token-type accuracy (per scored Python token) and bug localisation / repair
accuracy."""
from __future__ import annotations

import torch

from adapters.codeberter.labels import TYPES
from adapters.codeberter.modeling import bug_batch, type_batch

EVAL_BATCH = 16


@torch.no_grad()
def type_accuracy(encoder, head, stack, examples) -> dict:
    """{"token": accuracy over every labelled first subword, "per_type": {type: accuracy},
    "tokens": how many were scored}."""
    correct = torch.zeros(len(TYPES))
    total = torch.zeros(len(TYPES))
    for i in range(0, len(examples), EVAL_BATCH):
        ids, mask, labels = type_batch(examples[i: i + EVAL_BATCH], encoder.info.pad_id)
        predicted = head(encoder.hidden(ids, mask, stack)).argmax(-1)
        keep = labels != -100
        truth, guess = labels[keep], predicted[keep]
        total += torch.bincount(truth, minlength=len(TYPES)).float()
        correct += torch.bincount(truth[guess == truth], minlength=len(TYPES)).float()
    return {"token": float(correct.sum() / total.sum().clamp(min=1)), "tokens": int(total.sum()),
            "per_type": {t: round(float(c / n), 4) for t, c, n in zip(TYPES, correct, total) if n > 0}}


@torch.no_grad()
def bug_predictions(encoder, head, stack, examples, special_ids):
    """Per example: (predicted location, repair index into [subwords..., operators...])."""
    out = []
    for i in range(0, len(examples), EVAL_BATCH):
        ids, mask, valid, *_ = bug_batch(examples[i: i + EVAL_BATCH], encoder.info.pad_id, special_ids)
        hidden = encoder.hidden(ids, mask, stack)
        location = head.location_logits(hidden, valid).argmax(-1)
        repair = head.repair_logits(hidden, valid, location).argmax(-1)
        T = ids.shape[1]
        for loc, rep in zip(location.tolist(), repair.tolist()):
            out.append((loc, rep, T))
    return out


def bug_accuracy(encoder, head, stack, examples, special_ids) -> dict:
    """Localisation (the bug's subword found), repair (the right fix proposed at the predicted place,
    counted only where the place is right) and joint accuracy, overall and per bug kind."""
    predictions = bug_predictions(encoder, head, stack, examples, special_ids)
    rows = {"all": [0, 0, 0], "variable misuse": [0, 0, 0], "operator swap": [0, 0, 0]}
    for example, (loc, rep, T) in zip(examples, predictions):
        kind = "operator swap" if example.operator >= 0 else "variable misuse"
        found = loc == example.location
        fixed = (rep - T == example.operator) if example.operator >= 0 else rep in example.pointer_targets
        for key in ("all", kind):
            rows[key][0] += 1
            rows[key][1] += int(found)
            rows[key][2] += int(found and fixed)
    out = {}
    for key, (n, found, joint) in rows.items():
        if n:
            out[key] = {"n": n, "localisation": found / n, "joint": joint / n}
    return out
