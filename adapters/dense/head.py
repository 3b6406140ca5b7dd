"""A light FPN-style multi-scale head for a plain ViT: four tapped patch maps (all at the patch
grid) are turned into a 4/8/16/32-stride pyramid (upsampled x4, x2, kept, pooled x2, as the paper's
backbone does before its Mask2Former head), merged top-down, fused, and classified at stride 4."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FPNHead(nn.Module):
    def __init__(self, in_dim: int, n_classes: int, width: int = 64, levels: int = 4):
        super().__init__()
        self.levels = levels
        self.lateral = nn.ModuleList(nn.Conv2d(in_dim, width, 1) for _ in range(levels))
        self.smooth = nn.ModuleList(
            nn.Sequential(nn.Conv2d(width, width, 3, padding=1, bias=False), nn.GroupNorm(8, width), nn.GELU())
            for _ in range(levels))
        self.fuse = nn.Sequential(nn.Conv2d(width * levels, width, 3, padding=1, bias=False), nn.GroupNorm(8, width),
                                  nn.GELU())
        self.classify = nn.Conv2d(width, n_classes, 1)

    @staticmethod
    def pyramid(maps: list[torch.Tensor]) -> list[torch.Tensor]:
        """Patch-grid maps -> strides patch/4, patch/2, patch, 2*patch."""
        scales = (4.0, 2.0, 1.0, 0.5)
        out = []
        for m, s in zip(maps, scales):
            if s > 1:
                m = F.interpolate(m, scale_factor=s, mode="bilinear", align_corners=False)
            elif s < 1:
                m = F.max_pool2d(m, 2, ceil_mode=True)
            out.append(m)
        return out

    def forward(self, maps: list[torch.Tensor], size: tuple[int, int],
                extra: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Logits B x classes x H x W for an H x W input. `extra` (one map per pyramid level, any
        size) is pooled to each level's size and concatenated to it before the lateral maps."""
        levels = self.pyramid(maps)
        if extra is not None:
            levels = [torch.cat([m, F.adaptive_avg_pool2d(e, m.shape[-2:])], 1) for m, e in zip(levels, extra)]
        feats = [lat(m) for lat, m in zip(self.lateral, levels)]
        for i in range(len(feats) - 2, -1, -1):  # top-down
            feats[i] = feats[i] + F.interpolate(feats[i + 1], size=feats[i].shape[-2:], mode="bilinear", align_corners=False)
        target = feats[0].shape[-2:]
        feats = [F.interpolate(s(f), size=target, mode="bilinear", align_corners=False) if f.shape[-2:] != target else s(f)
                 for s, f in zip(self.smooth, feats)]
        logits = self.classify(self.fuse(torch.cat(feats, 1)))
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
