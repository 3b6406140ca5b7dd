"""Fitting the linear land-cover head on the features of a few labelled pixels."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from adapters.dense.metrics import confusion, scores
from adapters.glare.modeling import N_CLASSES, LinearHead

STEPS = 300
LR = 0.01
# chosen on the frozen backbone's features (seeds 0-2, every fraction) before any adapter was trained:
# standardised features with this L2 weight beat raw features and a weight of 1e-4 at every fraction
WEIGHT_DECAY = 1e-2


def fit_head(features: np.ndarray, classes: np.ndarray, seed: int, reference: np.ndarray,
             n_classes: int = N_CLASSES) -> LinearHead:
    """Full-batch Adam on the cross-entropy of N x C pixel features (a linear probe, L2-regularised)
    after standardising each channel by the mean and spread of `reference` features (unlabelled use:
    every training-region labelled pixel, labels unread). The standardisation is folded into the
    returned head, which is applied to raw features."""
    torch.manual_seed(seed)
    mean = torch.from_numpy(reference.mean(0))
    spread = torch.from_numpy(reference.std(0) + 1e-6)
    head = LinearHead(features.shape[1], n_classes)
    x = (torch.from_numpy(features) - mean) / spread
    y = torch.from_numpy(classes.astype(np.int64))
    optimiser = torch.optim.Adam(head.parameters(), lr=LR)
    for _ in range(STEPS):
        loss = F.cross_entropy(head(x), y) + WEIGHT_DECAY * head.linear.weight.pow(2).sum()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        weight = head.linear.weight / spread
        head.linear.bias -= weight @ mean
        head.linear.weight.copy_(weight)
    return head.eval()


@torch.no_grad()
def evaluate(head: LinearHead, features: np.ndarray, classes: np.ndarray, n_classes: int = N_CLASSES) -> dict:
    pred = head(torch.from_numpy(features)).argmax(1).numpy()
    s = scores(confusion(pred, classes, n_classes))
    return {"miou": s["miou"], "accuracy": s["accuracy"], "iou": [None if not np.isfinite(v) else float(v) for v in s["iou"]]}
