"""The frozen language model and tokenizer behind the Kangaroo tab, from either source.

- bundled: a small Llama trained by `training/train_kangaroo.py` on the standard library, stored
  as fp16 safetensors plus a `tokenizers` BPE (`assets/kangaroo/`).
- hub / local: any transformers Llama-family causal LM by id or directory, with its own tokenizer
  and a `kangaroo_adapter.safetensors` trained by the same script.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from adapters.kangaroo import KangarooAdapter, load_adapters
from studio.errors import BadInput

BUNDLED_CONFIG = dict(
    vocab_size=4096,
    hidden_size=128,
    intermediate_size=384,
    num_hidden_layers=12,
    num_attention_heads=4,
    num_key_value_heads=4,
    max_position_embeddings=1024,
    rope_theta=10000.0,
    tie_word_embeddings=True,
    rms_norm_eps=1e-5,
)
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
    card: dict = field(default_factory=dict)  # measured figures shown in the tab, if any

    @property
    def num_layers(self) -> int:
        return len(self.model.model.layers)

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
    from studio.loader import read_bundled

    directory = Path(directory)
    tensors, config = read_bundled(directory, name="model")
    model = bundled_llama()
    model.load_state_dict({k: v.float() for k, v in tensors.items()}, strict=False)
    model.tie_weights()
    freeze(model)
    adapters = load_adapters(directory / ADAPTER_FILE, model)
    card_path = directory / "figures.json"
    card = json.loads(card_path.read_text()) if card_path.is_file() else {}
    return KangarooBundle(freeze(model), bundled_codec(directory / "tokenizer.json"), adapters, "bundled stdlib Llama", card)


def load_hub(repo_or_dir: str) -> KangarooBundle:
    """Any Llama-family checkpoint by id or directory; the adapter file is looked up in
    `STUDIO_KANGAROO_ADAPTER_REPO` when set, else next to the model."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from studio.loader import resolve_file

    model = AutoModelForCausalLM.from_pretrained(repo_or_dir, dtype=torch.float32, attn_implementation="sdpa")
    tokenizer = AutoTokenizer.from_pretrained(repo_or_dir)
    adapter_repo = os.environ.get("STUDIO_KANGAROO_ADAPTER_REPO") or repo_or_dir
    adapters = load_adapters(Path(resolve_file(adapter_repo, ADAPTER_FILE)), freeze(model))
    return KangarooBundle(model, hf_codec(tokenizer), adapters, str(repo_or_dir))
