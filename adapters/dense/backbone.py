"""A frozen DINOv2 (transformers ``Dinov2Model``) for dense prediction: the token stream with a
hook after every block, and normalised patch maps taken after chosen blocks ("taps").

The hook is how an adapter that lives *inside* the backbone (it rewrites the tokens after a block,
as Cloud-Adapter does) sees and changes the stream, without touching the frozen weights.
`embed` is the patch embedding alone: the part every variant shares when the first adapted block
is block 0, and what training can cache.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# (block index, tokens B x 1+hw x C) -> tokens
BlockHook = Callable[[int, torch.Tensor], torch.Tensor]


def _call(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = layer(x)
    return out[0] if isinstance(out, (tuple, list)) else out


class FrozenDino(nn.Module):
    """A frozen ``Dinov2Model`` with `embed`, `blocks(x, hook, taps)` and `dim`/`patch`/`depth`."""

    def __init__(self, model: nn.Module, norm_taps: bool = True):
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.norm_taps = norm_taps
        self.dim = model.config.hidden_size
        self.patch = model.config.patch_size
        self.depth = model.config.num_hidden_layers
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True):
        # frozen: dropout/drop-path never switch on, whatever the surrounding module does
        return super().train(False)

    def normalise(self, image: torch.Tensor) -> torch.Tensor:
        """[0, 1] RGB -> the model's input scale."""
        return (image - self.mean) / self.std

    def embed(self, image: torch.Tensor) -> torch.Tensor:
        """[0, 1] RGB B x 3 x H x W (sides a multiple of the patch) -> tokens B x 1+hw x C."""
        if image.shape[-1] % self.patch or image.shape[-2] % self.patch:
            raise ValueError(f"image sides must be multiples of {self.patch}, got {tuple(image.shape[-2:])}")
        return self.model.embeddings(self.normalise(image))

    def patch_map(self, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Patch tokens as B x C x h x w, through DINOv2's final LayerNorm (as
        get_intermediate_layers(norm=True)) unless `norm_taps` is off (the official Cloud-Adapter
        backbone feeds its head the raw tokens)."""
        patches = (self.model.layernorm(tokens) if self.norm_taps else tokens)[:, 1:]
        return patches.transpose(1, 2).reshape(tokens.shape[0], -1, *grid)

    def blocks(self, tokens: torch.Tensor, grid: tuple[int, int], taps: Sequence[int],
               hook: BlockHook | None = None) -> list[torch.Tensor]:
        """Run every block (the hook after each), returning the patch maps after the `taps` blocks."""
        outs = []
        for index, layer in enumerate(self.model.encoder.layer):
            tokens = _call(layer, tokens)
            if hook is not None:
                tokens = hook(index, tokens)
            if index in taps:
                outs.append(self.patch_map(tokens, grid))
        return outs

    def forward(self, image: torch.Tensor, taps: Sequence[int], hook: BlockHook | None = None,
                embedded: torch.Tensor | None = None) -> list[torch.Tensor]:
        grid = (image.shape[-2] // self.patch, image.shape[-1] // self.patch)
        tokens = self.embed(image) if embedded is None else embedded
        return self.blocks(tokens, grid, taps, hook)


def default_taps(depth: int) -> tuple[int, ...]:
    """Four evenly spaced blocks ending at the last (12 blocks: 2, 5, 8, 11, as the paper's ViT-S)."""
    step = depth // 4
    return tuple(step * (i + 1) - 1 for i in range(4)) if step else tuple(range(depth))


def tiny_dinov2(seed: int = 0, layers: int = 4, width: int = 16, image_size: int = 56) -> FrozenDino:
    """A tiny random ``Dinov2Model`` (patch 14) for tests: the real class, tiny sizes."""
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(seed)
    config = Dinov2Config(hidden_size=width, num_hidden_layers=layers, num_attention_heads=2,
                          intermediate_size=2 * width, patch_size=14, image_size=image_size, layerscale_value=1.0)
    return FrozenDino(Dinov2Model(config))


def load_dinov2_small(source: str | None = None) -> FrozenDino:
    """DINOv2-S/14 from the model zoo (package weights; `source` None) or a hub id / directory."""
    from adapters.zoo import dinov2

    model, _ = dinov2.load_dinov2_small() if source is None else dinov2.from_pretrained(source)
    return FrozenDino(model)
