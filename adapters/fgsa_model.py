"""Building and loading FGSA models (bundled and hub layouts); no gradio here."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from adapters.fgsa import FGSAConfig, FGSANet, TinyViT, TinyViTConfig
from studio.loader import read_bundled, save_bundled


@dataclass
class FGSABundle:
    """The adapter model and, for "adapter off", the frozen backbone with its own trained head.
    Both share one frozen backbone instance."""

    adapter: FGSANet
    frozen_head: FGSANet | None
    source: str
    frozen_name: str
    figures: dict = field(default_factory=dict)  # measured figures shipped with the weights

    @property
    def image_size(self) -> int:
        return self.adapter.backbone.image_size


def tiny_vit_from(tensors: dict, config: dict) -> TinyViT:
    cfg = TinyViTConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in config.items() if k in TinyViTConfig.__dataclass_fields__})
    vit = TinyViT(cfg)
    vit.load_state_dict(tensors)
    vit.eval().requires_grad_(False)
    return vit


def fgsa_config_from(config: dict) -> FGSAConfig:
    return FGSAConfig(**{k: v for k, v in config.items() if k in FGSAConfig.__dataclass_fields__})


def attach(backbone, tensors: dict, config: dict) -> FGSANet:
    """An FGSANet around `backbone` with the saved non-backbone weights."""
    model = FGSANet(backbone, fgsa_config_from(config))
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    missing = [k for k in missing if not k.startswith("backbone.")]
    if missing or unexpected:
        raise RuntimeError(f"adapter weights do not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model.eval()


def save_adapter(directory: Path, model: FGSANet, name: str, extra: dict | None = None) -> None:
    config = model.config.to_dict() | (extra or {})
    save_bundled(directory, model.adapter_state_dict(), config, name=name)


def load_bundled(directory: Path) -> FGSABundle:
    directory = Path(directory)
    vit = tiny_vit_from(*read_bundled(directory, "backbone"))
    adapter = attach(vit, *read_bundled(directory, "adapter"))
    frozen_head = attach(vit, *read_bundled(directory, "frozen_head")) if (directory / "frozen_head.safetensors").is_file() else None
    figures = {}
    ablation = directory / "ablation.json"
    if ablation.is_file():
        import json

        figures = json.loads(ablation.read_text())
    return FGSABundle(adapter, frozen_head, "bundled", "TinyViT (pretrained in-repo on salient synthetic scenes)", figures)


def load_hub(repo_or_dir: str) -> FGSABundle:
    from adapters.fgsa_sam import load_sam_bundle

    return load_sam_bundle(repo_or_dir)


@torch.no_grad()
def predict(model: FGSANet, image: torch.Tensor, gains=None, probes=None, embedded=None) -> torch.Tensor:
    """Probability map B x 1 x S x S."""
    return model(image, gains=gains, probes=probes, embedded=embedded).sigmoid()
