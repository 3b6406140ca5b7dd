"""Filter2Noise settings: the predictor's architecture config and the frozen per-call requests.

Nothing is pretrained, so the config is not read from any file: every slice trains a fresh
predictor built from `F2NConfig()`. The requests hold validated plain data (numbers and numpy
arrays) because they cross the device boundary.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from adapters.common.errors import BadInput

HU_OFFSET = 1024.0
HU_RANGE = 4095.0  # (HU + 1024) / 4095 maps [-1024, 3071] HU onto [0, 1]
RADIUS = 5  # fixed kernel radius in pixels: an 11x11 window
SIGMA_XY_MAX = 3.0  # pixels; the predictor's bound (edits may go beyond, the kernel is truncated)
SIGMA_R_MAX_HU = 400.0  # HU; the predictor's bound
PATCH = 8

DEFAULT_ITERATIONS = 100
MAX_ITERATIONS = 2000
DEFAULT_EDGE_WEIGHT = 250.0
MAX_EDGE_WEIGHT = 5000.0
FACTOR_RANGE = (0.1, 10.0)  # region edit: sigma factor limits
BASELINE_ZS_ITERATIONS = 200
BASELINE_ZS_CROP = 64  # ZS-N2N trains on random 64x64 crops in the tab: the same cost on any slice
BASELINE_BUDGET_S = 90.0  # the tab's cap on one baselines run, stated on its button


@dataclass(frozen=True)
class F2NConfig:
    stages: int = 2
    patch: int = PATCH
    width: int = 16
    radius: int = RADIUS
    sigma_xy_max: float = SIGMA_XY_MAX
    sigma_r_max_hu: float = SIGMA_R_MAX_HU
    # token scaling: patch pixels relative to their mean, in units of ~50 HU
    token_scale_hu: float = 50.0

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class FitSettings:
    iterations: int = DEFAULT_ITERATIONS
    edge_weight: float = DEFAULT_EDGE_WEIGHT  # chosen on a development phantom kept out of the bench (see MODEL_CARD)
    lr: float = 3e-3
    weight_decay: float = 0.01
    crop: int = 64  # training crops (even; smaller is faster and scored as well here); whole slice if smaller
    seed: int = 0
    # CPU threads while training: the ops act on 64x64 crops, too small to gain from intra-op
    # threads; measured here 0.33 s/iteration with 1 thread against 1.54 s with 2 (None: leave as is)
    threads: int | None = 1


def check_settings(iterations, edge_weight) -> FitSettings:
    try:
        iterations = int(iterations)
        edge_weight = float(edge_weight)
    except (TypeError, ValueError):
        raise BadInput("Iterations and the loss weight must be numbers.") from None
    if not 1 <= iterations <= MAX_ITERATIONS:
        raise BadInput(f"Iterations must be between 1 and {MAX_ITERATIONS}.")
    if not np.isfinite(edge_weight) or not 0 <= edge_weight <= MAX_EDGE_WEIGHT:
        raise BadInput(f"The edge loss weight must be between 0 and {MAX_EDGE_WEIGHT:.0f}.")
    return FitSettings(iterations=iterations, edge_weight=edge_weight)


_TRUE = ("true", "yes", "1")
_FALSE = ("false", "no", "0")


def check_flag(value, what: str = "The option") -> bool:
    """A yes/no setting parsed strictly: a string is never true by accident ("false" is False).

    Accepts True/False, the numbers 1/0, and (any case, surrounding spaces ignored) "true"/"false",
    "yes"/"no", "1"/"0"; None means "not given" (False, the safe default). Anything else is refused.
    """
    if value is None or isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        if value in (0, 1):
            return bool(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise BadInput(f"{what} must be yes or no (true/false, 1/0); {str(value)[:40]!r} is neither.")


def check_factor(factor) -> float:
    try:
        factor = float(factor)
    except (TypeError, ValueError):
        raise BadInput("The factor must be a number.") from None
    lo, hi = FACTOR_RANGE
    if not lo <= factor <= hi:
        raise BadInput(f"The factor must be between {lo:g} and {hi:g}.")
    return factor


@dataclass(frozen=True)
class DenoiseRequest:
    """One slice to denoise (HU, float32, 2-D, already checked by `io.check_slice`)."""

    hu: np.ndarray
    settings: FitSettings = FitSettings()


@dataclass(frozen=True)
class BaselinesRequest:
    """The baselines on one slice; with a reference the oracle bilateral is grid-searched against it.

    ``time_budget_s`` caps the run: a baseline whose estimate no longer fits is skipped (and said
    so), and ZS-N2N stops training at the deadline. ``zs_crop`` None trains ZS-N2N on the whole slice."""

    noisy_hu: np.ndarray
    reference_hu: np.ndarray | None = None
    zs_iterations: int = BASELINE_ZS_ITERATIONS
    time_budget_s: float = BASELINE_BUDGET_S
    zs_crop: int | None = BASELINE_ZS_CROP


SERIES_TRAIN_SLICES = 3


@dataclass(frozen=True)
class SeriesRequest:
    """Every slice of a series (n, H, W) in HU. ``shared``: train one predictor on a few slices spread
    through the series (tiled side by side) and apply it to all; otherwise train on each slice."""

    volume: np.ndarray
    settings: FitSettings = FitSettings()
    shared: bool = True
    train_slices: int = SERIES_TRAIN_SLICES
