"""Confusion matrices, per-class IoU and F1, and mIoU for dense labels (numpy only)."""
from __future__ import annotations

import numpy as np

IGNORE = 255


def confusion(pred: np.ndarray, truth: np.ndarray, n_classes: int, ignore: int = IGNORE) -> np.ndarray:
    """n x n counts, rows = truth, columns = prediction; `ignore` labels are left out."""
    pred = np.asarray(pred).reshape(-1).astype(np.int64)
    truth = np.asarray(truth).reshape(-1).astype(np.int64)
    keep = truth != ignore
    index = truth[keep] * n_classes + pred[keep]
    return np.bincount(index, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def scores(matrix: np.ndarray) -> dict:
    """Per-class IoU and F1 (NaN for a class absent from both truth and prediction), their means
    over the classes that occur, and pixel accuracy."""
    matrix = np.asarray(matrix, dtype=np.float64)
    tp = np.diag(matrix)
    fp = matrix.sum(0) - tp
    fn = matrix.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(tp + fp + fn > 0, tp / (tp + fp + fn), np.nan)
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan)
    total = matrix.sum()
    return {"iou": iou, "f1": f1, "miou": float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan"),
            "mf1": float(np.nanmean(f1)) if np.isfinite(f1).any() else float("nan"),
            "accuracy": float(tp.sum() / total) if total else float("nan")}
