"""Salient/camouflaged-object metrics (pysodmetrics) on probability maps."""
from __future__ import annotations

from typing import Iterable

import numpy as np

METRICS = ("S", "E", "wF", "MAE")


def to_uint8(prob: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(np.asarray(prob, dtype=np.float64) * 255), 0, 255).astype(np.uint8)


def sod_metrics(probs: Iterable[np.ndarray], gts: Iterable[np.ndarray], which: tuple[str, ...] = METRICS) -> dict[str, float]:
    """Mean S-measure, mean E-measure (curve average), weighted F and MAE over pairs of
    probability maps in [0, 1] and 0/1 ground truths (H x W each); `which` picks a subset."""
    import py_sod_metrics as sod

    makers = {"S": (sod.Smeasure, lambda r: r["sm"]), "E": (sod.Emeasure, lambda r: np.mean(r["em"]["curve"])),
              "wF": (sod.WeightedFmeasure, lambda r: r["wfm"]), "MAE": (sod.MAE, lambda r: r["mae"])}
    meters = {name: makers[name][0]() for name in which}
    n = 0
    for prob, gt in zip(probs, gts):
        pred, truth = to_uint8(prob), to_uint8(np.asarray(gt) > 0.5)
        for meter in meters.values():
            meter.step(pred=pred, gt=truth)
        n += 1
    if n == 0:
        raise ValueError("no images to score")
    return {name: float(makers[name][1](meter.get_results())) for name, meter in meters.items()}
