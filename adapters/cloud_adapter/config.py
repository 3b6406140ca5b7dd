"""Per-call settings of the Cloud-Adapter tab, validated in the web process, and the limits the
sliders read. The architecture config saved next to the weights is
`adapters.cloud_adapter.modeling.CloudAdapterConfig`."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from adapters.cloud_adapter.simulate import CloudSettings
from adapters.common.errors import BadInput

STRENGTH_MAX = 2.0
MAX_UPLOAD_SIDE = 1024  # an uploaded tile larger than this is refused (the model tiles at 112 px)


def strength(value) -> float:
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise BadInput("The adapter strength must be a number.") from None
    if not np.isfinite(f) or not 0.0 <= f <= STRENGTH_MAX:
        raise BadInput(f"The adapter strength must lie between 0 and {STRENGTH_MAX:g} (got {value}).")
    return f


def cloud_settings(coverage, thickness, thin_mix, shadow_offset, seed) -> CloudSettings:
    try:
        values = [float(v) for v in (coverage, thickness, thin_mix, shadow_offset)]
        seed = int(seed)
    except (TypeError, ValueError):
        raise BadInput("The cloud settings must be numbers.") from None
    return CloudSettings(*values, seed=seed).check()


@dataclass(frozen=True)
class SegmentRequest:
    """One image (a clouded held-out tile or an upload), segmented with the adapter (at the chosen
    strength and depths) and without it (the frozen backbone + the same kind of head)."""

    image: np.ndarray  # H x W x 3 float32 in [0, 1]; sides at least one tile
    labels: np.ndarray | None  # H x W uint8 class mask when known (simulated clouds), else None
    strength: float = 1.0
    shallow: bool = True
    middle: bool = True
    deep: bool = True
    baseline: bool = True
    lora: bool = False  # also run the LoRA-only variant

    def depths(self) -> dict:
        return {"shallow": self.shallow, "middle": self.middle, "deep": self.deep}
