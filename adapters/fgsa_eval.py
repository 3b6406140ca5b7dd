"""Salient/camouflaged-object metrics (pysodmetrics) on probability maps."""
from __future__ import annotations

from typing import Iterable

import numpy as np

METRICS = ("S", "E", "wF", "MAE")


def to_uint8(prob: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(np.asarray(prob, dtype=np.float64) * 255), 0, 255).astype(np.uint8)


def sod_metrics(probs: Iterable[np.ndarray], gts: Iterable[np.ndarray]) -> dict[str, float]:
    """Mean S-measure, mean E-measure (curve average), weighted F and MAE over pairs of
    probability maps in [0, 1] and 0/1 ground truths (H x W each)."""
    import py_sod_metrics as sod

    s, e, w, m = sod.Smeasure(), sod.Emeasure(), sod.WeightedFmeasure(), sod.MAE()
    n = 0
    for prob, gt in zip(probs, gts):
        pred, truth = to_uint8(prob), to_uint8(np.asarray(gt) > 0.5)
        for metric in (s, e, w, m):
            metric.step(pred=pred, gt=truth)
        n += 1
    if n == 0:
        raise ValueError("no images to score")
    return {
        "S": float(s.get_results()["sm"]),
        "E": float(np.mean(e.get_results()["em"]["curve"])),
        "wF": float(w.get_results()["wfm"]),
        "MAE": float(m.get_results()["mae"]),
    }
