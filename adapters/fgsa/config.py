"""Per-call settings of the FGSA tab, validated in the web process, and the limits the UI reads.

The architecture configs saved next to the weights (`FGSAConfig`, `TinyViTConfig`) live with the
modules in `adapters.fgsa.modeling`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from adapters.common.errors import BadInput

BAND_NAMES = ("DC", "low", "mid-low", "mid-high", "high")
BAND_MIN, BAND_MAX = 0.0, 4.0  # what a request may carry
SLIDER_MAX = 3.0  # what the sliders offer
PRESETS = {
    "reset": (1.0, 1.0, 1.0, 1.0, 1.0),
    "low-pass": (1.0, 1.0, 1.0, 0.0, 0.0),
    "high-pass": (0.0, 0.0, 1.0, 1.0, 1.0),
    "band-stop": (1.0, 1.0, 0.0, 0.0, 1.0),
}


def band_scales(*values) -> tuple[float, ...]:
    """The five band scales as floats, or `BadInput` naming the band that is wrong."""
    out = []
    for name, v in zip(BAND_NAMES, values):
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise BadInput(f"The {name} band scale must be a number.") from None
        if not BAND_MIN <= f <= BAND_MAX:
            raise BadInput(f"The {name} band scale must lie between 0 and 4 (got {f}).")
        out.append(f)
    return tuple(out)


def check_site(site: str, site_names) -> str:
    names = list(site_names)
    if site not in names:
        raise BadInput(f"Unknown adapter site '{site}': choose one of {', '.join(names)}.")
    return site


@dataclass(frozen=True)
class SegmentRequest:
    """A full run: the frozen prefix, the adapter with the edited and the learned gains,
    and (with `baseline`) the frozen backbone + head."""

    image: np.ndarray  # 1 x 3 x S x S float32 in [0, 1], already at the model's input size
    site: str
    bands: tuple[float, ...]
    all_sites: bool = False
    baseline: bool = True


@dataclass(frozen=True)
class EditRequest:
    """A band edit: only the adapter path, from the frozen prefix of an earlier run."""

    image: np.ndarray  # as in SegmentRequest
    embedded: np.ndarray  # float32, from SegmentResult.embedded (DINOv2: 1 x 1+hw x C tokens after block 7)
    site: str
    bands: tuple[float, ...]
    all_sites: bool = False
