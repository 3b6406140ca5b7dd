"""The contract every paper package keeps. Strings and frozen dataclasses only: cheap to import.

A paper lives in ``adapters/<key>/`` with fixed module roles:

- ``__init__``: ``SPEC``, a `PaperSpec` (what the paper is, what is frozen, what the adapter adds,
  what is real and what is synthetic, and the parts of its real model on the Hugging Face Hub).
- ``config``: the architecture config saved next to the weights, and frozen ``Request``
  dataclasses of validated per-call settings (their limits are the UI's slider limits).
- ``modeling``: the torch modules. ``loading``: ``load_bundled(directory)``,
  ``load_hub(parts)`` (``parts`` maps each `HubPart.role` to a hub id or a directory in hub
  layout; only ``from_pretrained`` / `resolve_file` may touch it) and
  ``header_param_counts(directory)``. Every loaded bundle has ``param_counts() -> (adapter, frozen)``.
- ``inference``: ``run(bundle, request, *, device, progress=None) -> Result`` and any other entry
  point the tab calls on the device; requests and results are plain data (numbers, strings, numpy
  arrays, frozen dataclasses of those) because on ZeroGPU they are pickled. Optionally
  ``gpu_seconds(entry, request) -> int``, the ZeroGPU time to reserve.
- ``testing``: a tiny real bundle and the hooks the contract tests in ``tests/contract`` call.
- optional: ``inject``, ``io``, ``viz``, ``data``, ``metrics``, ``cli``.

No paper imports another; shared substrates live in ``adapters/common`` or a package of their own.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

# (fraction done in [0, 1], what is happening) -> None. Passed *inside* the device call only.
Progress = Optional[Callable[[float, str], None]]


@dataclass(frozen=True)
class HubPart:
    """One part of a paper's real model stack on the Hugging Face Hub.

    ``repo`` is None when nothing is published for this part: then the hub source is unavailable
    for the paper and the studio says ``unpublished`` instead of downloading anything.
    ``local_subdir`` is where the part sits inside a ``local`` directory in hub layout ("" = the
    directory itself). The environment variable ``STUDIO_HUB_<KEY>_<ROLE>`` overrides ``repo``.
    ``bundled=True`` marks a part that this repository ships itself in ``assets/<key>/`` (an adapter
    trained here for the real frozen model): every source reads it from there unless overridden.
    """

    role: str  # "frozen", "adapter", or an extra such as "motion"
    repo: str | None
    what: str  # in words, for the About tab and the README
    local_subdir: str = ""
    unpublished: str = ""  # why there is no repo, and how to make one
    bundled: bool = False  # shipped in assets/<key> by this repository


@dataclass(frozen=True)
class PaperSpec:
    key: str  # adapters/<key>, assets/<key>, tabs/<key>.py, elem_ids and api_names derive from it
    title: str  # the tab's title
    paper: str  # full citation
    paper_url: str
    official_code: str  # where the mechanism was read ("" when none was found)
    frozen_model: str  # what stays frozen, per source
    adapter: str  # what the adapter adds, one sentence
    real: str  # one line: what is real and what is synthetic, shown in the tab
    description: str  # one paragraph at the top of the tab
    hub: tuple[HubPart, ...] = ()
    # Papers with nothing pretrained (the adapter trains on the input itself) have no hub parts and
    # load the same on every source.
    identity_at_start: bool = True  # a fresh adapter leaves the frozen model's output unchanged

    def part(self, role: str) -> HubPart:
        for part in self.hub:
            if part.role == role:
                return part
        raise KeyError(f"{self.key} has no hub part '{role}'")
