"""The Filter2Noise 'model': nothing pretrained exists, so the bundle is the configuration every
slice is trained from, plus a fresh predictor built from it (the adapter whose size is reported)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from adapters.filter2noise.config import F2NConfig


@dataclass
class F2NBundle:
    config: F2NConfig = field(default_factory=F2NConfig)
    # a fresh cascade of sigma predictors; each slice trains its own copy from `init_state` (None:
    # a fresh initialisation set from the slice's estimated noise)
    model: object = None
    init_state: dict | None = None

    def __post_init__(self):
        if self.model is None:
            from adapters.filter2noise.modeling import Filter2Noise

            self.model = Filter2Noise(self.config)

    def param_counts(self) -> tuple[int, int]:
        from adapters.filter2noise.modeling import count_parameters

        return count_parameters(self.model), 0  # the filter itself has no parameters


def load_bundled(directory: str | os.PathLike) -> F2NBundle:
    """No weight file: the bundled model is the default configuration (the same on every source)."""
    return F2NBundle(F2NConfig())


def load_hub(parts: dict) -> F2NBundle:
    """Nothing is pretrained, so the hub has nothing to give: the same as the bundled model."""
    return F2NBundle(F2NConfig())


def header_param_counts(directory: str | os.PathLike) -> tuple[int, int]:
    """Building the ~7k-parameter predictor is cheaper than any file read; no file is needed."""
    from adapters.filter2noise.modeling import Filter2Noise, count_parameters

    return count_parameters(Filter2Noise(F2NConfig())), 0
