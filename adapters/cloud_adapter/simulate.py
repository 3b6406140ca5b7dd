"""A cloud, thin-cloud and shadow simulator over a clear RGB tile, with the 4-class mask it implies.

The cloud *shape* and its look come from ``satellite-cloud-generator`` (Apache-2.0; installed with
``--no-deps``): its multi-scale Perlin noise (`generate_perlin`) and its mixing (`mix`: cloud colour
from the scene's mean colour, ground blurred under thicker cloud). What is ours: the controls and
the shadow. Coverage picks the noise threshold as a quantile, so the cloudy fraction is what the
slider says; thickness is the peak opacity; the thin/thick mix sets how slowly opacity rises from
the cloud edge (a soft ramp leaves much of the cloud semi-transparent); the shadow is the cloud's
own opacity map shifted along a fixed sun direction by the offset and darkening the ground, so an
offset of 0 hides it under the cloud.

Labels follow the opacity actually drawn: thick cloud where opacity >= THICK, thin cloud where
THIN <= opacity < THICK, shadow where the shifted cloud darkens the visible ground by at least
SHADOW, clear elsewhere. (The class order is the paper's CloudSEN12 order.)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

CLASSES = ("clear", "thick cloud", "thin cloud", "shadow")
CLEAR, THICK_CLOUD, THIN_CLOUD, SHADOW = range(4)
THICK, THIN, SHADOW_MIN = 0.6, 0.12, 0.15
SUN = (0.6, 0.8)  # shadow direction (rows, columns) per pixel of offset
SHADOW_DARKNESS = 0.65  # how much light a fully opaque cloud's shadow removes


@dataclass(frozen=True)
class CloudSettings:
    coverage: float = 0.35  # fraction of the tile under some cloud, 0..0.9
    thickness: float = 0.9  # peak cloud opacity, 0.1..1
    thin_mix: float = 0.4  # 0 = hard-edged thick clouds, 1 = mostly thin veils
    shadow_offset: float = 10.0  # pixels between a cloud and its shadow, 0..40
    seed: int = 0

    def check(self) -> "CloudSettings":
        from adapters.common.errors import BadInput

        limits = {"coverage": (0.0, 0.9), "thickness": (0.1, 1.0), "thin_mix": (0.0, 1.0), "shadow_offset": (0.0, 40.0)}
        for name, (lo, hi) in limits.items():
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not np.isfinite(value) or not lo <= value <= hi:
                raise BadInput(f"The cloud {name.replace('_', ' ')} must lie between {lo:g} and {hi:g} (got {value}).")
        if not 0 <= int(self.seed) < 2**31:
            raise BadInput("The cloud seed must be a whole number from 0 to 2147483647.")
        return self


def _noise(size: tuple[int, int], generator_seed: int) -> torch.Tensor:
    from satellite_cloud_generator.noise import generate_perlin

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(generator_seed)
        field = generate_perlin(shape=size, batch=1, device="cpu", const_scale=True, decay_factor=1.0)[0]
    field = field - field.min()
    return field / field.max().clamp_min(1e-8)


def _shift(field: torch.Tensor, offset: float) -> torch.Tensor:
    """Translate an H x W map by `offset` px along SUN (sub-pixel, zeros enter at the border)."""
    if offset <= 0:
        return field
    h, w = field.shape
    dy, dx = SUN[0] * offset, SUN[1] * offset
    theta = torch.tensor([[1.0, 0.0, -2 * dx / w], [0.0, 1.0, -2 * dy / h]]).unsqueeze(0)
    grid = F.affine_grid(theta, (1, 1, h, w), align_corners=False)
    return F.grid_sample(field[None, None], grid, align_corners=False, padding_mode="zeros")[0, 0]


def opacity(size: tuple[int, int], settings: CloudSettings) -> torch.Tensor:
    """Cloud opacity H x W in [0, thickness]."""
    if settings.coverage <= 0:
        return torch.zeros(size)
    field = _noise(size, settings.seed)
    threshold = torch.quantile(field.flatten(), 1 - settings.coverage)
    # the ramp from the cloud edge to full opacity spans this much of the noise range above the edge
    ramp = 0.03 + 0.9 * settings.thin_mix
    rise = ((field - threshold) / (ramp * (1 - threshold).clamp_min(1e-6))).clamp(0, 1)
    return settings.thickness * rise


def simulate(rgb: np.ndarray, settings: CloudSettings) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clear H x W x 3 float [0, 1] -> (clouded RGB float32, labels H x W uint8, opacity float32)."""
    from satellite_cloud_generator.CloudSimulator import mix

    h, w = rgb.shape[:2]
    alpha = opacity((h, w), settings)
    shade = _shift(alpha, settings.shadow_offset) * SHADOW_DARKNESS
    ground = torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)).permute(2, 0, 1)[None]
    shaded = ground * (1 - shade)[None, None]
    cloud = alpha[None, None].expand(1, 3, h, w).contiguous()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        out = mix(shaded, cloud, blur_scaling=2.0, cloud_color=True)
    out = out[0].permute(1, 2, 0).clamp(0, 1).numpy().astype(np.float32)
    a = alpha.numpy()
    labels = np.full((h, w), CLEAR, np.uint8)
    visible_shadow = shade.numpy() * (1 - a)
    labels[visible_shadow >= SHADOW_MIN] = SHADOW
    labels[a >= THIN] = THIN_CLOUD
    labels[a >= THICK] = THICK_CLOUD
    return out, labels, a.astype(np.float32)


def random_settings(rng: np.random.Generator) -> CloudSettings:
    """Training draws: the whole slider range, with some clear and some fully thin tiles."""
    return CloudSettings(coverage=float(rng.uniform(0.05, 0.8)), thickness=float(rng.uniform(0.3, 1.0)),
                         thin_mix=float(rng.uniform(0.0, 1.0)), shadow_offset=float(rng.uniform(0, 30)),
                         seed=int(rng.integers(0, 2**31 - 1)))
