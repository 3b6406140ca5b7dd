"""Official Cloud-Adapter checkpoints (mmseg ``EncoderDecoder`` state dicts) -> this code, without
mmcv or mmseg.

The released checkpoints (``XavierJiezou/cloud-adapter-models``; e.g. ``l8_full_weight.pth``) hold:

- ``backbone.*``: DINOv2 in the original layout (``patch_embed.proj``, ``cls_token``, ``pos_embed``,
  ``mask_token``, ``blocks.N.{norm1, attn.qkv, attn.proj, ls1.gamma, norm2, mlp.fc1, mlp.fc2,
  ls2.gamma}``, ``norm``), patch 16 at 512 px for the released models;
- ``backbone.cloud_adapter.cnn.*``: the PMAA-style context ConvNet (``proj_1x1``, ``spp_dw.K``, each
  ``conv_dw``/``bn1``/``conv_pw``/``bn2``);
- ``backbone.cloud_adapter.net.N.attn.to_{q,k,v,out}.loramlp.{0,1}.weight``: one low-rank
  cross-attention after each adapted block;
- ``decode_head.*``: a Mask2Former head (mmdet), which this code does not re-implement: those keys
  are counted and left out.

The backbone becomes a transformers ``Dinov2Model`` state dict (q/k/v split from the fused qkv in
that order, layer scales as ``layer_scale{1,2}.lambda1``); the adapter keys keep their names under
``adapter.``. Sizes are read from the tensors; what the tensors cannot say (attention heads, which
blocks are tapped) comes from the official configs: 64-wide heads in DINOv2 and 8 heads in the
adapter's cross-attention, taps (7, 11, 15, 23) for 24 blocks and (2, 5, 8, 11) for 12.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from adapters.dense.backbone import default_taps

BACKBONE = "backbone."
ADAPTER = "backbone.cloud_adapter."
HEAD = "decode_head."
OFFICIAL_TAPS = {24: (7, 11, 15, 23), 12: (2, 5, 8, 11)}
OFFICIAL_ADAPTER_HEADS = 8
DINO_HEAD_DIM = 64
_BLOCK = re.compile(r"^blocks\.(\d+)\.(.+)$")
_BLOCK_NAMES = {
    "norm1.weight": "norm1.weight", "norm1.bias": "norm1.bias",
    "attn.proj.weight": "attention.o_proj.weight", "attn.proj.bias": "attention.o_proj.bias",
    "ls1.gamma": "layer_scale1.lambda1", "ls2.gamma": "layer_scale2.lambda1",
    "norm2.weight": "norm2.weight", "norm2.bias": "norm2.bias",
    "mlp.fc1.weight": "mlp.fc1.weight", "mlp.fc1.bias": "mlp.fc1.bias",
    "mlp.fc2.weight": "mlp.fc2.weight", "mlp.fc2.bias": "mlp.fc2.bias",
}
_TOP_NAMES = {
    "cls_token": "embeddings.cls_token", "pos_embed": "embeddings.position_embeddings",
    "patch_embed.proj.weight": "embeddings.patch_embeddings.projection.weight",
    "patch_embed.proj.bias": "embeddings.patch_embeddings.projection.bias",
    "norm.weight": "layernorm.weight", "norm.bias": "layernorm.bias",
}


@dataclass(frozen=True)
class Converted:
    dino: dict  # transformers Dinov2Model state dict
    dino_config: dict  # Dinov2Config keyword arguments
    adapter: dict  # CloudAdapter state dict (keys cnn.*, net.N.*)
    adapter_config: dict  # CloudAdapterConfig keyword arguments (variant "full")
    skipped_head_keys: int  # decode_head.* tensors left out (Mask2Former)


def state_dict_of(checkpoint) -> dict:
    """The tensors of an mmseg checkpoint ({"meta", "state_dict", ...}) or of a bare state dict."""
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not any(k.startswith(BACKBONE) for k in state):
        raise ValueError("this is not a Cloud-Adapter checkpoint: it has no backbone.* tensors")
    return state


def convert(checkpoint) -> Converted:
    state = state_dict_of(checkpoint)
    dino, adapter, skipped = {}, {}, 0
    for key, value in state.items():
        if key.startswith(HEAD):
            skipped += 1
        elif key.startswith(ADAPTER):
            adapter[key[len(ADAPTER):]] = value
        elif key.startswith(BACKBONE):
            _backbone_key(key[len(BACKBONE):], value, dino)
    if "embeddings.mask_token" in dino:
        dino["embeddings.mask_token"] = dino["embeddings.mask_token"].reshape(1, -1)
    dim = dino["embeddings.cls_token"].shape[-1]
    depth = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"^backbone\.blocks\.(\d+)\.", k)))
    patch = dino["embeddings.patch_embeddings.projection.weight"].shape[-1]
    grid = round((dino["embeddings.position_embeddings"].shape[1] - 1) ** 0.5)
    dino_config = dict(hidden_size=dim, num_hidden_layers=depth, num_attention_heads=dim // DINO_HEAD_DIM,
                       mlp_ratio=dino["encoder.layer.0.mlp.fc1.weight"].shape[0] // dim, patch_size=patch,
                       image_size=grid * patch, layerscale_value=1e-5, layer_norm_eps=1e-6, qkv_bias=True,
                       use_swiglu_ffn=False, hidden_act="gelu")
    return Converted(dino, dino_config, adapter, _adapter_config(adapter, depth, grid * patch), skipped)


def _backbone_key(key: str, value: torch.Tensor, out: dict) -> None:
    match = _BLOCK.match(key)
    if match is None:
        if key == "mask_token":
            out["embeddings.mask_token"] = value
        elif key in _TOP_NAMES:
            out[_TOP_NAMES[key]] = value
        else:
            raise KeyError(f"unexpected backbone tensor '{key}' in the checkpoint")
        return
    index, rest = match.groups()
    prefix = f"encoder.layer.{index}."
    if rest in ("attn.qkv.weight", "attn.qkv.bias"):
        kind = rest.rsplit(".", 1)[1]
        for name, part in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3, dim=0)):
            out[f"{prefix}attention.{name}.{kind}"] = part.clone()
    elif rest in _BLOCK_NAMES:
        out[prefix + _BLOCK_NAMES[rest]] = value
    else:
        raise KeyError(f"unexpected block tensor '{rest}' in the checkpoint")


def _adapter_config(adapter: dict, depth: int, image_size: int) -> dict:
    nets = sorted({int(k.split(".")[1]) for k in adapter if k.startswith("net.")})
    if len(nets) != depth:
        raise ValueError(f"{len(nets)} adapting modules for {depth} blocks: only checkpoints adapted after every "
                         f"block (the released ones) are supported")
    q0 = adapter["net.0.attn.to_q.loramlp.0.weight"]
    q1 = adapter["net.0.attn.to_q.loramlp.1.weight"]
    context_dim = adapter["cnn.proj_1x1.conv_pw.weight"].shape[0]
    stages = sorted({int(k.split(".")[2]) for k in adapter if k.startswith("cnn.spp_dw.")})
    k0 = adapter["net.0.attn.to_k.loramlp.0.weight"]
    if k0.shape[1] != context_dim:
        raise ValueError("the adapting modules do not attend to the context ConvNet's channels")
    return dict(variant="full", depth=depth, adapted=tuple(range(depth)), taps=OFFICIAL_TAPS.get(depth) or default_taps(depth),
                rank=q0.shape[0], heads=OFFICIAL_ADAPTER_HEADS, dim_head=q1.shape[0] // OFFICIAL_ADAPTER_HEADS,
                context_dim=context_dim, context_depth=len(stages) - 1, image_size=image_size,
                backbone={"kind": "official-dinov2", "norm_taps": False})


def load_checkpoint(path) -> dict:
    """An official .pth read as tensors only (``weights_only``: no code from the file runs)."""
    return torch.load(path, map_location="cpu", weights_only=True)
