"""Per-call settings of the GLARE tab, validated in the web process. The architecture config saved
next to the weights is `adapters.glare.modeling.GlareConfig`."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from adapters.common.errors import BadInput
from adapters.glare.data import FRACTIONS
from adapters.glare.modeling import LOSS_SETS, N_CLASSES

MAX_SIDE = 512  # an image larger than this is refused (it is cut into 112 px tiles)
MIN_SIDE = 112


def fraction_label(fraction: float) -> str:
    return f"{fraction * 100:g}%"


FRACTION_LABELS = tuple(fraction_label(f) for f in FRACTIONS)


def loss_set(value) -> str:
    if value not in LOSS_SETS:
        raise BadInput(f"Unknown loss set '{value}': choose one of {', '.join(LOSS_SETS)}.")
    return value


def fraction(value) -> float:
    """'5%' or 0.05 -> 0.05, one of the fractions the heads were fitted at."""
    if isinstance(value, str) and value in FRACTION_LABELS:
        return FRACTIONS[FRACTION_LABELS.index(value)]
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise BadInput(f"The labelled fraction must be one of {', '.join(FRACTION_LABELS)}.") from None
    for known in FRACTIONS:
        if np.isclose(f, known):
            return known
    raise BadInput(f"The labelled fraction must be one of {', '.join(FRACTION_LABELS)} (got {value}).")


def image(values) -> np.ndarray:
    """An H x W x 3 float image in [0, 1] with sides between MIN_SIDE and MAX_SIDE."""
    arr = np.asarray(values, dtype=np.float32)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise BadInput("The image must be RGB (height x width x 3).")
    if not np.isfinite(arr).all():
        raise BadInput("The image contains NaN or infinite values.")
    if min(arr.shape[:2]) < MIN_SIDE or max(arr.shape[:2]) > MAX_SIDE:
        raise BadInput(f"The image must be {MIN_SIDE} to {MAX_SIDE} px a side (got {arr.shape[1]}x{arr.shape[0]}).")
    return np.clip(arr, 0, 1)


@dataclass(frozen=True)
class SegmentRequest:
    """One image segmented by the linear head fitted at `fraction` on the features adapted with the
    `loss_set` checkpoint, and by the head fitted on the same pixels of the frozen features."""

    image: np.ndarray  # H x W x 3 float32 in [0, 1]
    labels: np.ndarray | None  # H x W uint8 land-cover codes 1..7, 0 = unlabelled; None for an upload
    loss_set: str = LOSS_SETS[-1]
    fraction: float = FRACTIONS[0]

    def check(self) -> "SegmentRequest":
        image(self.image)
        loss_set(self.loss_set)
        fraction(self.fraction)
        if self.labels is not None:
            labels = np.asarray(self.labels)
            if labels.shape != self.image.shape[:2] or labels.min() < 0 or labels.max() > N_CLASSES:
                raise BadInput("The label mask does not fit the image.")
        return self
