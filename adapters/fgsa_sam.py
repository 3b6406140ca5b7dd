"""The `hub` backbone: SAM's ViT image encoder from transformers (`facebook/sam-vit-base`), frozen,
with the FGSA adapter around it. The paper froze a Uni-Perceiver ViT-L; SAM's encoder is a plain
ViT of the same family (B x H x W x C token maps, global attention every few blocks) that
transformers ships, so the adapter drives its patch embedding and blocks directly."""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from adapters.fgsa import FGSAConfig, FGSANet
from studio.loader import resolve_file

SAM_ID = "facebook/sam-vit-base"
ADAPTER_FILE = "fgsa_adapter"  # .safetensors + .json, next to the backbone or in STUDIO_FGSA_ADAPTER
FROZEN_HEAD_FILE = "fgsa_frozen_head"
# SamProcessor's normalisation, for pixels in [0, 1]
SAM_MEAN = (0.485, 0.456, 0.406)
SAM_STD = (0.229, 0.224, 0.225)


class SamBackbone(nn.Module):
    """SAM's vision encoder seen through the interface FGSANet expects."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder
        config = encoder.config
        self.layers = encoder.layers
        self.dim = config.hidden_size
        self.patch = config.patch_size if isinstance(config.patch_size, int) else config.patch_size[0]
        self.image_size = config.image_size if isinstance(config.image_size, int) else config.image_size[0]
        self.mean, self.std = SAM_MEAN, SAM_STD

    def embed(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.encoder.patch_embed(pixels)
        return x + self.encoder.pos_embed if self.encoder.pos_embed is not None else x


def even_groups(n_layers: int, n_groups: int = 4) -> tuple[tuple[int, ...], ...]:
    """Blocks split into consecutive groups (the paper: 4 interactions over the ViT)."""
    n_groups = min(n_groups, n_layers)
    bounds = [round(i * n_layers / n_groups) for i in range(n_groups + 1)]
    return tuple(tuple(range(bounds[i], bounds[i + 1])) for i in range(n_groups))


def sam_fgsa_config(n_layers: int, dim: int, **overrides) -> FGSAConfig:
    """Adapter sizes for a SAM-sized backbone (the bundled defaults are for a 96-wide TinyViT)."""
    wide = dim >= 256
    settings = dict(
        variant="fgsa", groups=even_groups(n_layers), planes=64 if wide else 8, heads=6 if wide else 2,
        points=4 if wide else 2, inner=dim // 4 if wide else 16, head_width=64 if wide else 8,
    )
    return FGSAConfig(**(settings | overrides))


def load_sam_backbone(repo_or_dir: str) -> SamBackbone:
    from transformers import SamVisionModel

    vision = SamVisionModel.from_pretrained(repo_or_dir)
    vision.eval().requires_grad_(False)
    return SamBackbone(vision.vision_encoder)


def load_sam_bundle(repo_or_dir: str):
    """Frozen SAM encoder from `repo_or_dir` (hub id or directory) plus trained FGSA weights from
    `STUDIO_FGSA_ADAPTER` (hub id or directory; default: the same place)."""
    from adapters.fgsa_model import FGSABundle, attach
    from safetensors.torch import load_file

    backbone = load_sam_backbone(repo_or_dir)
    adapter_source = os.environ.get("STUDIO_FGSA_ADAPTER") or repo_or_dir
    try:
        weights = resolve_file(adapter_source, f"{ADAPTER_FILE}.safetensors")
        config = json.loads(Path(resolve_file(adapter_source, f"{ADAPTER_FILE}.json")).read_text())
    except Exception as exc:
        raise FileNotFoundError(
            f"no trained FGSA adapter for SAM in {adapter_source} ({type(exc).__name__}); train one with "
            f"training/train_fgsa_cod.py and point STUDIO_FGSA_ADAPTER at its output"
        ) from exc
    adapter = attach(backbone, load_file(weights), config)
    frozen_head = None
    try:
        head_weights = resolve_file(adapter_source, f"{FROZEN_HEAD_FILE}.safetensors")
        head_config = json.loads(Path(resolve_file(adapter_source, f"{FROZEN_HEAD_FILE}.json")).read_text())
        frozen_head = attach(backbone, load_file(head_weights), head_config)
    except Exception:  # the frozen-head baseline is optional on the hub path
        frozen_head = None
    return FGSABundle(adapter, frozen_head, "hub", f"SAM ViT image encoder ({repo_or_dir})", config.get("figures", {}))
