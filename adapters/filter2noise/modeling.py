"""Filter2Noise (F2N): an attention-guided bilateral filter trained on the one slice it denoises.

Re-implemented from the paper's description (Sun et al., 2025); no code of the official
repository (CC BY-NC 4.0) is used. What is different here, and why:

- Intensities are mapped from HU by one fixed rule, ``(HU + 1024) / 4095``, never per-image
  min-max, so ``sigma_range`` is a number of HU on every image.
- The filter is explicit: its only inputs are the image and per-pixel ``sigma_x``, ``sigma_y``
  (pixels) and ``sigma_range``. Its kernel radius is a fixed :data:`RADIUS`, not the maximum
  sigma of the image, so a change of the sigmas at a pixel changes that pixel's output only (one
  stage) and nothing farther than ``(stages - 1) * RADIUS`` from it (the cascade). Sigmas above
  the radius stay exactly as set; the Gaussian is simply truncated at the radius.
- The sigma predictor keeps local context: patch tokens carry their own pixels and a 3x3
  neighbourhood mixing on the token grid, and global attention is added residually, so a patch's
  sigmas cannot be washed out into the image average. The patch-rate maps are upsampled
  bilinearly, so the sigmas are smooth per-pixel maps rather than 8x8 blocks.
- Any image size works: the predictor pads to its patch grid internally and the filter pads by
  reflection.

Training is the paper's self-supervised scheme: the ZS-N2N pair downsampler, a local shuffle that
swaps the two most similar pixels of each 2x2 block, three L1 consistency terms between the two
half-resolution outputs and the downsampled full-resolution output, and lambda times an L1 between
the absolute difference-of-Gaussians responses of input and output.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from adapters.filter2noise.config import (  # noqa: F401  (re-exported: the filter's constants)
    HU_OFFSET,
    HU_RANGE,
    PATCH,
    RADIUS,
    SIGMA_R_MAX_HU,
    SIGMA_XY_MAX,
    F2NConfig,
    FitSettings,
)


def hu_to_unit(hu):
    return (hu + HU_OFFSET) / HU_RANGE


def unit_to_hu(x):
    return x * HU_RANGE - HU_OFFSET


# --- the explicit filter ------------------------------------------------------------------------

def _offsets(radius: int, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    r = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    dy, dx = torch.meshgrid(r, r, indexing="ij")
    k = (2 * radius + 1) ** 2
    return (dx.reshape(1, k, 1, 1) ** 2), (dy.reshape(1, k, 1, 1) ** 2)


def bilateral_valid(padded: torch.Tensor, sigma_x: torch.Tensor, sigma_y: torch.Tensor,
                    sigma_r: torch.Tensor, radius: int = RADIUS) -> torch.Tensor:
    """Bilateral filter of an input already padded by ``radius`` on every side.

    ``padded`` is (B, 1, H + 2r, W + 2r); the sigma maps are (B, 1, H, W), spatial ones in pixels,
    the range one in the image's intensity units. Each output pixel uses only its own sigmas and
    the (2r+1)^2 input values around it, which is what makes crops exact.

    With autograd on, all offsets are computed at once (fast for training crops); without it, one
    offset at a time with in-place accumulation, which keeps a 512x512 slice in cache instead of
    allocating (2r+1)^2 full-size maps.
    """
    if torch.is_grad_enabled() and any(t.requires_grad for t in (padded, sigma_x, sigma_y, sigma_r)):
        return _bilateral_unfold(padded, sigma_x, sigma_y, sigma_r, radius)
    return _bilateral_loop(padded, sigma_x, sigma_y, sigma_r, radius)


def _bilateral_unfold(padded, sigma_x, sigma_y, sigma_r, radius):
    b, _, hp, wp = padded.shape
    h, w = hp - 2 * radius, wp - 2 * radius
    k = 2 * radius + 1
    neighbours = F.unfold(padded, k).view(b, k * k, h, w)
    centre = padded[:, :, radius:radius + h, radius:radius + w]
    dx2, dy2 = _offsets(radius, padded.device, padded.dtype)
    exponent = (neighbours - centre).square() * (0.5 / sigma_r.square())
    exponent = exponent + dx2 * (0.5 / sigma_x.square()) + dy2 * (0.5 / sigma_y.square())
    weights = torch.exp(-exponent)
    return (weights * neighbours).sum(1, keepdim=True) / weights.sum(1, keepdim=True)


@torch.no_grad()
def _bilateral_loop(padded, sigma_x, sigma_y, sigma_r, radius):
    h, w = padded.shape[-2] - 2 * radius, padded.shape[-1] - 2 * radius
    centre = padded[:, :, radius:radius + h, radius:radius + w]
    range_coef = -0.5 / sigma_r.square()
    ax, ay = 0.5 / sigma_x.square(), 0.5 / sigma_y.square()
    num = torch.zeros_like(centre)
    den = torch.zeros_like(centre)
    weight = torch.empty_like(centre)
    for dy in range(-radius, radius + 1):
        spatial_y = ay * float(dy * dy)
        for dx in range(-radius, radius + 1):
            spatial = torch.add(spatial_y, ax, alpha=float(dx * dx))
            nb = padded[:, :, radius + dy:radius + dy + h, radius + dx:radius + dx + w]
            torch.sub(nb, centre, out=weight)
            weight.square_().mul_(range_coef).sub_(spatial).exp_()
            den.add_(weight)
            num.addcmul_(weight, nb)
    return num / den


def pad_reflect(x: torch.Tensor, radius: int = RADIUS) -> torch.Tensor:
    return F.pad(x, (radius, radius, radius, radius), mode="reflect")


def bilateral(x: torch.Tensor, sigma_x, sigma_y, sigma_r, radius: int = RADIUS) -> torch.Tensor:
    """Per-pixel-sigma bilateral filter of ``x`` (B, 1, H, W), reflection at the borders."""
    return bilateral_valid(pad_reflect(x, radius), sigma_x, sigma_y, sigma_r, radius)


# --- the adapter: an attention sigma predictor per stage ----------------------------------------

class SigmaPredictor(nn.Module):
    """Per-patch (sigma_x, sigma_y, sigma_range) from patch tokens with local and global context."""

    def __init__(self, config: F2NConfig):
        super().__init__()
        self.config = config
        d, p = config.width, config.patch
        self.embed = nn.Linear(p * p + 1, d)
        self.local = nn.Conv2d(d, d, 3, padding=1, groups=d)
        self.norm_attn = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.attn_out = nn.Linear(d, d)
        self.norm_mlp = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
        self.norm_head = nn.LayerNorm(d)
        self.head = nn.Linear(d, 3)
        nn.init.zeros_(self.head.weight)  # start from one global setting; training makes it local

    def set_initial_sigmas(self, sigma_xy_px: float, sigma_r_hu: float) -> None:
        """Bias the head so an untrained predictor gives these sigmas everywhere."""
        def logit(v, vmax):
            v = min(max(v / vmax, 1e-3), 1 - 1e-3)
            return math.log(v / (1 - v))

        with torch.no_grad():
            c = self.config
            self.head.bias.copy_(torch.tensor([logit(sigma_xy_px, c.sigma_xy_max), logit(sigma_xy_px, c.sigma_xy_max),
                                               logit(sigma_r_hu, c.sigma_r_max_hu)]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (B, 1, H, W) in unit intensities -> (B, 3, H, W): sigma_x, sigma_y (px), sigma_r (unit)."""
        c = self.config
        b, _, h, w = x.shape
        ph, pw = -h % c.patch, -w % c.patch
        xp = F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x
        gh, gw = xp.shape[2] // c.patch, xp.shape[3] // c.patch
        patches = F.unfold(xp, c.patch, stride=c.patch).transpose(1, 2)  # B, N, p*p
        mean = patches.mean(-1, keepdim=True)
        scale = HU_RANGE / c.token_scale_hu
        tokens = torch.cat([(patches - mean) * scale, (mean - hu_to_unit(0.0)) * 4.0], -1)
        e = self.embed(tokens)  # B, N, d
        grid = e.transpose(1, 2).reshape(b, -1, gh, gw)
        e = e + self.local(grid).flatten(2).transpose(1, 2)
        q, k, v = self.qkv(self.norm_attn(e)).chunk(3, -1)
        e = e + self.attn_out(F.scaled_dot_product_attention(q, k, v))
        e = e + self.mlp(self.norm_mlp(e))
        raw = torch.sigmoid(self.head(self.norm_head(e)))  # B, N, 3 in (0, 1)
        maxima = torch.tensor([c.sigma_xy_max, c.sigma_xy_max, c.sigma_r_max_hu / HU_RANGE], dtype=x.dtype, device=x.device)
        sig = (raw * maxima).transpose(1, 2).reshape(b, 3, gh, gw)
        sig = F.interpolate(sig, size=xp.shape[2:], mode="bilinear", align_corners=False)
        return sig[:, :, :h, :w]


class Filter2Noise(nn.Module):
    """A cascade of attention-guided bilateral filters; the predictors are the only parameters."""

    def __init__(self, config: F2NConfig | None = None):
        super().__init__()
        self.config = config or F2NConfig()
        self.predictors = nn.ModuleList(SigmaPredictor(self.config) for _ in range(self.config.stages))

    def forward(self, x: torch.Tensor, return_sigmas: bool = False):
        sigmas = []
        for predictor in self.predictors:
            s = predictor(x)
            x = bilateral(x, s[:, 0:1], s[:, 1:2], s[:, 2:3], self.config.radius)
            sigmas.append(s)
        return (x, sigmas) if return_sigmas else x


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --- the self-supervised loss -------------------------------------------------------------------

def pair_downsample(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """ZS-N2N's two half-resolution images: the two diagonals of every 2x2 block, averaged."""
    a, b_, c, d = x[..., 0::2, 0::2], x[..., 0::2, 1::2], x[..., 1::2, 0::2], x[..., 1::2, 1::2]
    return (b_ + c) / 2, (a + d) / 2


def local_shuffle(x: torch.Tensor) -> torch.Tensor:
    """In every 2x2 block swap the two pixels whose values are closest (a deterministic shuffle)."""
    b, ch, h, w = x.shape
    blocks = x.reshape(b, ch, h // 2, 2, w // 2, 2).permute(0, 1, 2, 4, 3, 5).reshape(b, ch, h // 2, w // 2, 4)
    diff = (blocks.unsqueeze(-1) - blocks.unsqueeze(-2)).abs()
    diff = diff + torch.eye(4, dtype=x.dtype, device=x.device) * 1e9
    flat = diff.flatten(-2).argmin(-1)
    i, j = flat // 4, flat % 4
    perm = torch.arange(4, device=x.device).expand(*blocks.shape[:-1], 4).clone()
    perm.scatter_(-1, i.unsqueeze(-1), j.unsqueeze(-1))
    perm.scatter_(-1, j.unsqueeze(-1), i.unsqueeze(-1))
    shuffled = blocks.gather(-1, perm)
    return shuffled.reshape(b, ch, h // 2, w // 2, 2, 2).permute(0, 1, 2, 4, 3, 5).reshape(b, ch, h, w)


def dog_kernel(size: int = 7, narrow: float = 9.0, wide: float = 10.0) -> torch.Tensor:
    """The paper's 7x7 difference of Gaussians; its weights are ~1e-4, hence lambda in the hundreds."""
    r = torch.arange(size, dtype=torch.float32) - size // 2
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    d2 = xx ** 2 + yy ** 2
    g1 = torch.exp(-d2 / (2 * narrow ** 2))
    g2 = torch.exp(-d2 / (2 * wide ** 2))
    return (g1 / g1.sum() - g2 / g2.sum()).view(1, 1, size, size)


@dataclass
class LossTerms:
    total: torch.Tensor
    consistency: float
    edge: float


def f2n_loss(model: nn.Module, noisy: torch.Tensor, edge_weight: float, dog: torch.Tensor) -> LossTerms:
    """The paper's loss on one (even-sized) image in unit intensities."""
    half1, half2 = pair_downsample(noisy)
    out1, out2 = model(local_shuffle(half1)), model(local_shuffle(half2))
    full = model(noisy)
    down1, down2 = pair_downsample(full)
    consistency = (F.l1_loss(out1, out2) + F.l1_loss(out1, down1) + F.l1_loss(out2, down2)
                   + F.l1_loss(down1, down2)) / 3.0
    pad = dog.shape[-1] // 2
    edges_in = F.conv2d(F.pad(noisy, (pad,) * 4, mode="reflect"), dog)
    edges_out = F.conv2d(F.pad(full, (pad,) * 4, mode="reflect"), dog)
    edge = F.l1_loss(edges_in.abs(), edges_out.abs())
    total = consistency + edge_weight * edge
    return LossTerms(total, float(consistency.detach()), float(edge.detach()))


# --- fitting one slice --------------------------------------------------------------------------

def estimate_noise_hu(hu: np.ndarray) -> float:
    """Noise SD from the median absolute deviation of a Laplacian-like residual (Immerkaer)."""
    x = np.asarray(hu, dtype=np.float64)
    if min(x.shape) < 3:
        return float(np.std(x))
    m = (x[:-2, :-2] - 2 * x[:-2, 1:-1] + x[:-2, 2:] - 2 * x[1:-1, :-2] + 4 * x[1:-1, 1:-1]
         - 2 * x[1:-1, 2:] + x[2:, :-2] - 2 * x[2:, 1:-1] + x[2:, 2:])
    return float(np.sqrt(math.pi / 2) * np.mean(np.abs(m)) / 6.0)


@dataclass
class FitResult:
    model: Filter2Noise
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0


def _even_pad(x: torch.Tensor) -> torch.Tensor:
    h, w = x.shape[-2:]
    return F.pad(x, (0, w % 2, 0, h % 2), mode="replicate") if (h % 2 or w % 2) else x


def fit(noisy_hu: np.ndarray, settings: FitSettings | None = None, config: F2NConfig | None = None,
        init_state: dict | None = None, on_step: Callable[[int, int], None] | None = None,
        device: torch.device | str = "cpu") -> FitResult:
    """Train a fresh Filter2Noise on one slice (HU, 2-D) with the self-supervised loss."""
    s = settings or FitSettings()
    previous = torch.get_num_threads()
    if s.threads and torch.device(device).type == "cpu":
        torch.set_num_threads(s.threads)
    try:
        return _fit(noisy_hu, s, config, init_state, on_step, device)
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)


def warmup_fraction(iterations: int, fraction: float = 0.1) -> float:
    """OneCycleLR's warm-up fraction. Its warm-up phase ends at step ``fraction * iterations - 1``;
    where that is exactly 0 (10 iterations at 0.1) the schedule divides by zero, so the warm-up
    gets two steps there instead. Every other count keeps the usual 10%."""
    if float(fraction * iterations) - 1 == 0:
        return 2.0 / iterations
    return fraction


def _fit(noisy_hu, s: FitSettings, config, init_state, on_step, device) -> FitResult:
    import time

    start = time.perf_counter()
    generator = torch.Generator().manual_seed(s.seed)
    torch.manual_seed(s.seed)
    model = Filter2Noise(config).to(device)
    if init_state is not None:
        model.load_state_dict(init_state)
    else:
        noise = max(estimate_noise_hu(noisy_hu), 1.0)
        for predictor in model.predictors:
            predictor.set_initial_sigmas(1.0, min(1.5 * noise, 0.9 * model.config.sigma_r_max_hu))
    x = _even_pad(torch.as_tensor(hu_to_unit(np.asarray(noisy_hu, np.float32)), device=device)[None, None])
    dog = dog_kernel().to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=s.lr, weight_decay=s.weight_decay)
    iterations = max(int(s.iterations), 1)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=s.lr, total_steps=iterations,
                                                    pct_start=warmup_fraction(iterations))
    h, w = x.shape[-2:]
    crop_h, crop_w = min(s.crop, h), min(s.crop, w)
    crop_h, crop_w = crop_h - crop_h % 2, crop_w - crop_w % 2
    losses = []
    model.train()
    for i in range(iterations):
        top = int(torch.randint(0, h - crop_h + 1, (1,), generator=generator)) // 2 * 2
        left = int(torch.randint(0, w - crop_w + 1, (1,), generator=generator)) // 2 * 2
        patch = x[..., top:top + crop_h, left:left + crop_w]
        terms = f2n_loss(model, patch, s.edge_weight, dog)
        optimizer.zero_grad(set_to_none=True)
        terms.total.backward()
        optimizer.step()
        scheduler.step()
        losses.append(float(terms.total.detach()))
        if on_step is not None:
            on_step(i + 1, iterations)
    model.eval()
    return FitResult(model, losses, time.perf_counter() - start)


# --- applying a trained model, and editing its sigma maps afterwards ----------------------------

@dataclass(frozen=True)
class FilterState:
    """Everything needed to re-render a denoised slice from its sigma maps, without the predictor.

    Plain data (float32 numpy arrays in tuples, a frozen dataclass) so the state can live in a
    per-session `gr.State` and cross the device boundary. ``base_sigmas[s]`` is (3, H, W):
    sigma_x, sigma_y in pixels, sigma_r in unit intensities; ``multiplier`` (H, W) scales all three
    in every stage; ``stage_outputs[s]`` is the output of stage s under the current multiplier.
    """

    noisy_unit: np.ndarray
    base_sigmas: tuple[np.ndarray, ...]
    multiplier: np.ndarray
    stage_outputs: tuple[np.ndarray, ...]
    radius: int = RADIUS

    @property
    def denoised_unit(self) -> np.ndarray:
        return self.stage_outputs[-1]

    @property
    def denoised_hu(self) -> np.ndarray:
        return unit_to_hu(self.stage_outputs[-1])

    def sigmas(self, stage: int) -> np.ndarray:
        return self.base_sigmas[stage] * self.multiplier[None]

    @property
    def locality_radius(self) -> int:
        """No pixel farther than this from an edited pixel can change (stage 1 is pointwise)."""
        return (len(self.base_sigmas) - 1) * self.radius


@torch.no_grad()
def apply_model(model: Filter2Noise, noisy_hu: np.ndarray, device="cpu") -> FilterState:
    x = torch.as_tensor(hu_to_unit(np.asarray(noisy_hu, np.float32)), device=device)[None, None]
    model.eval()
    outputs, sigmas = [], []
    for predictor in model.predictors:
        s = predictor(x)
        x = bilateral(x, s[:, 0:1], s[:, 1:2], s[:, 2:3], model.config.radius)
        sigmas.append(s[0].float().cpu().numpy())
        outputs.append(x[0, 0].float().cpu().numpy())
    noisy_unit = hu_to_unit(np.asarray(noisy_hu, np.float32)).astype(np.float32)
    return FilterState(noisy_unit, tuple(sigmas), np.ones(noisy_unit.shape, np.float32), tuple(outputs), model.config.radius)


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def render(state: FilterState) -> list[np.ndarray]:
    """All stage outputs recomputed from the current (edited) sigma maps; the slow reference path."""
    x = _t(state.noisy_unit)[None, None]
    outputs = []
    for stage in range(len(state.base_sigmas)):
        s = _t(state.sigmas(stage))[None]
        x = bilateral(x, s[:, 0:1], s[:, 1:2], s[:, 2:3], state.radius)
        outputs.append(x[0, 0].numpy())
    return outputs


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Square (Chebyshev) dilation, the footprint of a (2r+1)^2 kernel."""
    from scipy.ndimage import maximum_filter

    return maximum_filter(mask, size=2 * radius + 1, mode="constant", cval=False)


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return None
    return int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1


@torch.no_grad()
def set_region_factor(state: FilterState, region: np.ndarray, factor: float) -> FilterState:
    """A new state whose sigmas inside ``region`` are the trained ones times ``factor`` exactly.

    Setting, not compounding: painting the same region twice with 2 gives 2, not 4. Only the
    window around the changed pixels is re-filtered; the result equals :func:`render` there and
    is untouched elsewhere.
    """
    if not np.isfinite(factor) or factor <= 0:
        raise ValueError("The factor must be a positive number.")
    region = np.asarray(region, bool)
    if region.shape != state.multiplier.shape:
        raise ValueError(f"The region is {region.shape[1]}x{region.shape[0]} but the slice is "
                         f"{state.multiplier.shape[1]}x{state.multiplier.shape[0]}.")
    multiplier = state.multiplier.copy()
    multiplier[region] = np.float32(factor)
    return _rerender(state, multiplier)


def reset_edits(state: FilterState) -> FilterState:
    return _rerender(state, np.ones_like(state.multiplier))


def _rerender(state: FilterState, multiplier: np.ndarray) -> FilterState:
    changed = multiplier != state.multiplier
    new = FilterState(state.noisy_unit, state.base_sigmas, multiplier, tuple(o.copy() for o in state.stage_outputs), state.radius)
    box = _bbox(changed)
    if box is None:
        return new
    h, w = multiplier.shape
    r = state.radius
    inp = _t(state.noisy_unit)[None, None]
    for stage in range(len(state.base_sigmas)):
        # stage 0 changes only where its sigmas changed; every later stage widens the window by r
        grow = stage * r
        y0, y1 = max(box[0] - grow, 0), min(box[1] + grow, h)
        x0, x1 = max(box[2] - grow, 0), min(box[3] + grow, w)
        padded = pad_reflect(inp, r)[..., y0:y1 + 2 * r, x0:x1 + 2 * r]
        s = _t(new.sigmas(stage)[:, y0:y1, x0:x1])[None]
        window = bilateral_valid(padded, s[:, 0:1], s[:, 1:2], s[:, 2:3], r)[0, 0].numpy()
        # paste only pixels within Chebyshev distance `grow` of a changed sigma: nothing else moves
        reach = _dilate(changed[y0:y1, x0:x1], grow) if grow else changed[y0:y1, x0:x1]
        target = new.stage_outputs[stage][y0:y1, x0:x1]
        target[reach] = window[reach]
        inp = _t(new.stage_outputs[stage])[None, None]
    return new


def sigma_map_stats(state: FilterState, stage: int, edges: np.ndarray, flat: np.ndarray,
                    spacing_mm: tuple[float, float] = (1.0, 1.0)) -> dict:
    """How much one stage's maps vary, and their means at edges versus flat tissue.

    Spatial sigmas in mm (x uses the column spacing, y the row spacing), range sigma in HU.
    """
    s = state.sigmas(stage)
    maps = {"sigma_x_mm": s[0] * spacing_mm[1], "sigma_y_mm": s[1] * spacing_mm[0], "sigma_r_hu": s[2] * HU_RANGE}
    out = {}
    for name, m in maps.items():
        out[name] = {
            "min": float(m.min()), "max": float(m.max()), "mean": float(m.mean()),
            "cv": float(m.std() / max(m.mean(), 1e-12)),
            "edge_mean": float(m[edges].mean()) if edges.any() else float("nan"),
            "flat_mean": float(m[flat].mean()) if flat.any() else float("nan"),
        }
    return out
