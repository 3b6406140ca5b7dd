"""The frozen language model, its tokenizer codec and the exit adapters behind the Kangaroo tab.

- bundled: a small Llama trained by `training/kangaroo/train.py` on the standard library, stored
  as fp16 safetensors plus a `tokenizers` BPE (`assets/kangaroo/`).
- hub / local: any transformers Llama-family causal LM by id or directory (part ``frozen``), with
  its own tokenizer, and a `kangaroo_adapter.safetensors` trained by the same script (part
  ``adapter``; none is published, so the hub source needs `STUDIO_HUB_KANGAROO_ADAPTER`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from adapters.common.errors import BadInput
from adapters.common.weights import count_safetensors_params, read_bundled, resolve_file
from adapters.kangaroo.config import BUNDLED_CONFIG, DEFAULT_EXIT
from adapters.kangaroo.modeling import KangarooAdapter, load_adapters
from adapters.speculative.engine import context_length

ADAPTER_FILE = "kangaroo_adapter.safetensors"
END_OF_TEXT = "<|endoftext|>"


class TextCodec:
    """The one tokenizer interface decoding needs: ids in, ids out, and readable pieces."""

    def __init__(self, encode, decode, bos_id: int | None, eos_id: int | None):
        self._encode, self._decode = encode, decode
        self.bos_id, self.eos_id = bos_id, eos_id

    def encode(self, text: str) -> list[int]:
        ids = list(self._encode(text))
        return ([self.bos_id] if self.bos_id is not None else []) + ids

    def decode(self, ids: list[int]) -> str:
        return self._decode(list(ids))

    def pieces(self, prefix: list[int], new: list[int]) -> list[str]:
        """The text each new token adds after `prefix` (byte-level tokens may split a character,
        so pieces are differences of decoded prefixes rather than per-token decodes)."""
        out, previous = [], self.decode(prefix)
        for i in range(1, len(new) + 1):
            text = self.decode(prefix + new[:i])
            if text.startswith(previous):
                out.append(text[len(previous):])
            else:
                out.append(self.decode(new[i - 1: i]))
            previous = text
        return out


def bundled_codec(path: Path) -> TextCodec:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(path))
    eot = tok.token_to_id(END_OF_TEXT)
    return TextCodec(
        lambda text: tok.encode(text).ids,
        lambda ids: tok.decode(ids, skip_special_tokens=True),
        bos_id=eot,
        eos_id=eot,
    )


def hf_codec(tokenizer) -> TextCodec:
    return TextCodec(
        lambda text: tokenizer(text, add_special_tokens=False)["input_ids"],
        lambda ids: tokenizer.decode(ids, skip_special_tokens=True),
        bos_id=tokenizer.bos_token_id,
        eos_id=tokenizer.eos_token_id,
    )


@dataclass
class KangarooBundle:
    """A frozen causal LM, its tokenizer and one trained adapter per exit layer."""

    model: torch.nn.Module
    codec: TextCodec
    adapters: dict[int, KangarooAdapter]
    name: str

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
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata() or {}
    return [int(x) for x in meta.get("exits", "").split(",") if x]


def header_param_counts(directory: Path) -> tuple[int, int]:
    """`KangarooBundle.param_counts` of the bundled files, from their headers alone."""
    directory = Path(directory)
    k = default_exit(adapter_exits(directory / ADAPTER_FILE))
    return (count_safetensors_params(directory / ADAPTER_FILE, prefixes=(f"exit{k}.",)),
            count_safetensors_params(directory / "model.safetensors"))


def bundled_llama(dtype: torch.dtype = torch.float32):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**BUNDLED_CONFIG)
    config._attn_implementation = "sdpa"
    return LlamaForCausalLM(config).to(dtype)


def freeze(model: torch.nn.Module) -> torch.nn.Module:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def load_bundled(directory: Path) -> KangarooBundle:
    directory = Path(directory)
    tensors, config = read_bundled(directory, name="model")
    model = bundled_llama()
    model.load_state_dict({k: v.float() for k, v in tensors.items()}, strict=False)
    model.tie_weights()
    freeze(model)
    adapters = load_adapters(directory / ADAPTER_FILE, model)
    return KangarooBundle(freeze(model), bundled_codec(directory / "tokenizer.json"), adapters, "bundled stdlib Llama")


def load_hub(parts: dict[str, str]) -> KangarooBundle:
    """Any Llama-family checkpoint (``parts["frozen"]``: a hub id or a directory in hub layout) with
    the Kangaroo adapter file of ``parts["adapter"]``. The adapter file is found first, so a
    missing one costs no model download."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    frozen, adapter_repo = parts["frozen"], parts["adapter"]
    adapter_path = Path(resolve_file(adapter_repo, ADAPTER_FILE))
    model = AutoModelForCausalLM.from_pretrained(frozen, dtype=torch.float32, attn_implementation="sdpa")
    tokenizer = AutoTokenizer.from_pretrained(frozen)
    adapters = load_adapters(adapter_path, freeze(model))
    return KangarooBundle(model, hf_codec(tokenizer), adapters, str(frozen))
