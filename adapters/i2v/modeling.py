"""I2V-Adapter (Guo et al., 2023) as a native diffusers component for `UNetMotionModel`.

The frozen text-to-image UNet and its AnimateDiff motion module stay untouched. In every *spatial*
self-attention (`attn1` of the spatial transformer blocks, never the motion modules) a parallel
branch lets each frame's tokens attend to frame 0's tokens:

    out = frozen_self_attention(x) + scale * W_out' Attn(W_q' x, W_k x_0, W_v x_0)

`W_q'` is a new query projection initialised from the frozen one, `W_out'` a new output projection
initialised to zero (so a fresh adapter reproduces the frozen model exactly), and keys/values come
from the *frozen* projections of frame 0. Sampling keeps frame 0 clean (the encoded input at every
step, never denoised) and starts from the Frame Similarity Prior: the first-frame latent repeated,
degraded (blur mixed in by a random mask) and noised to an intermediate step.

Per-call settings (frame count, branch scale) travel in a `contextvars` context around the UNet call
rather than on the shared model, so concurrent requests cannot change each other's settings.
The training loss (`diffusion_loss`) lives here too, so the training script and the contract's
one-step check use the very same code. No gradio import.
"""
from __future__ import annotations

import contextvars
import math
import re
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from adapters.common.contract import Progress
from adapters.common.errors import BadInput
from adapters.common.weights import WeightMismatch

_CALL = contextvars.ContextVar("i2v_call", default=None)


@dataclass(frozen=True)
class I2VCall:
    num_frames: int
    scale: float


@contextmanager
def i2v_context(num_frames: int, scale: float = 1.0):
    """Frame count and branch scale for every I2V processor called inside this block."""
    token = _CALL.set(I2VCall(int(num_frames), float(scale)))
    try:
        yield
    finally:
        _CALL.reset(token)


def is_spatial_self_attention(processor_name: str) -> bool:
    return processor_name.endswith("attn1.processor") and "motion_modules" not in processor_name


class ModuleProcessor(nn.Module):
    """An attention processor with weights: diffusers calls it plainly, not through nn.Module's
    hooks, so `__call__` goes straight to `forward`."""

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args, **kwargs):
        return self.forward(attn, hidden_states, encoder_hidden_states, attention_mask, temb)


class I2VAttnProcessor(ModuleProcessor):
    """Frozen self-attention plus the first-frame branch (the I2V-Adapter's only new weights)."""

    def __init__(self, attn) -> None:
        super().__init__()
        from diffusers.models.attention_processor import AttnProcessor2_0

        inner_dim, query_dim = attn.to_q.out_features, attn.to_q.in_features
        self.to_q_adapter = nn.Linear(query_dim, inner_dim, bias=attn.to_q.bias is not None)
        self.to_out_adapter = nn.Linear(inner_dim, attn.to_out[0].out_features, bias=True)
        with torch.no_grad():
            self.to_q_adapter.weight.copy_(attn.to_q.weight)
            if attn.to_q.bias is not None:
                self.to_q_adapter.bias.copy_(attn.to_q.bias)
        nn.init.zeros_(self.to_out_adapter.weight)
        nn.init.zeros_(self.to_out_adapter.bias)
        self._frozen = AttnProcessor2_0()

    def forward(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None):
        frozen = self._frozen(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        call = _CALL.get()
        if call is None:
            raise RuntimeError("I2V processors need the frame count: run the UNet inside `i2v_context(...)`.")
        if call.scale == 0.0:
            return frozen
        if hidden_states.ndim != 3 or encoder_hidden_states is not None or attention_mask is not None:
            raise RuntimeError("I2V processors belong on spatial self-attention (3-D tokens, no mask).")
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        frames = call.num_frames
        batch_frames, tokens, channels = hidden_states.shape
        if batch_frames % frames:
            raise RuntimeError(f"batch of {batch_frames} frame images is not a multiple of {frames} frames")
        clips = batch_frames // frames
        heads = attn.heads
        first = hidden_states.view(clips, frames, tokens, channels)[:, 0]
        key, value = attn.to_k(first), attn.to_v(first)  # frozen projections of frame 0
        query = self.to_q_adapter(hidden_states.reshape(clips, frames * tokens, channels))
        head_dim = key.shape[-1] // heads
        query = query.view(clips, -1, heads, head_dim).transpose(1, 2)
        key = key.view(clips, -1, heads, head_dim).transpose(1, 2)
        value = value.view(clips, -1, heads, head_dim).transpose(1, 2)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        # all frames' queries of one clip attend to that clip's frame-0 tokens in one call
        branch = F.scaled_dot_product_attention(query, key, value)
        branch = branch.transpose(1, 2).reshape(batch_frames, tokens, heads * head_dim)
        branch = self.to_out_adapter(branch) / attn.rescale_output_factor
        return frozen + call.scale * branch


class ProcessorSet(nn.Module):
    """Every processor of one kind in a UNet, for saving, loading, counting and training; keys are
    named after the attention they extend (`<...>.attn1.<weight>`)."""

    what = "processor"

    def __init__(self, processors: Mapping[str, ModuleProcessor]) -> None:
        super().__init__()
        self.layers = nn.ModuleDict({_module_key(name): proc for name, proc in processors.items()})

    @property
    def processor_names(self) -> list[str]:
        return [_processor_name(key) for key in self.layers]

    def public_state_dict(self) -> dict[str, torch.Tensor]:
        out = {}
        for key, proc in self.layers.items():
            prefix = _processor_name(key)[: -len(".processor")]
            for name, tensor in proc.state_dict().items():
                out[f"{prefix}.{name}"] = tensor
        return out

    def load_public_state_dict(self, state: Mapping[str, torch.Tensor], strict: bool = True) -> None:
        wanted = self.public_state_dict()
        missing = sorted(set(wanted) - set(state))
        unexpected = sorted(set(state) - set(wanted))
        if strict and (missing or unexpected):
            raise WeightMismatch(f"The {self.what} weights do not match the model: missing {missing[:3]}, "
                                 f"unexpected {unexpected[:3]}.")
        for key, proc in self.layers.items():
            prefix = _processor_name(key)[: -len(".processor")]
            own = {n: state[f"{prefix}.{n}"] for n in proc.state_dict() if f"{prefix}.{n}" in state}
            for n, tensor in own.items():
                if tensor.shape != proc.state_dict()[n].shape:
                    raise WeightMismatch(f"The {self.what} weights do not match the model: {prefix}.{n} has shape "
                                         f"{tuple(tensor.shape)}, the model {tuple(proc.state_dict()[n].shape)}.")
            proc.load_state_dict(own, strict=strict)


class I2VAdapter(ProcessorSet):
    """All I2V processors of one UNet."""

    what = "I2V adapter"


def _module_key(processor_name: str) -> str:
    return processor_name.replace(".", "__")


def _processor_name(module_key: str) -> str:
    return module_key.replace("__", ".")


def install_i2v_adapter(unet, adapter: I2VAdapter | None = None, seed: int | None = None) -> I2VAdapter:
    """Put I2V processors on every spatial self-attention of `unet` (a `UNetMotionModel`).

    With `adapter`, its existing processors (and weights) are put back, e.g. after an IP-Adapter
    load reset them. Every other processor (cross-attention, IP-Adapter, motion modules) is kept.
    """
    processors = dict(unet.attn_processors)
    targets = [name for name in processors if is_spatial_self_attention(name)]
    if not targets:
        raise ValueError("this UNet has no spatial self-attention to adapt")
    if adapter is None:
        if seed is not None:
            torch.manual_seed(seed)
        created = {}
        for name in targets:
            attn = unet.get_submodule(name[: -len(".processor")])
            created[name] = I2VAttnProcessor(attn).to(device=attn.to_q.weight.device, dtype=attn.to_q.weight.dtype)
        adapter = I2VAdapter(created)
    elif sorted(adapter.processor_names) != sorted(targets):
        raise ValueError("the I2V adapter was made for a UNet with different attention layers")
    for name in targets:
        processors[name] = adapter.layers[_module_key(name)]
    unet.set_attn_processor(processors)
    adapter.requires_grad_(False)
    return adapter


def remove_i2v_adapter(unet) -> None:
    """Back to plain frozen self-attention (weights of the adapter object are kept by the caller)."""
    from diffusers.models.attention_processor import AttnProcessor2_0

    processors = dict(unet.attn_processors)
    for name, proc in processors.items():
        if isinstance(proc, I2VAttnProcessor):
            processors[name] = AttnProcessor2_0()
    unet.set_attn_processor(processors)


def load_ip_adapter_keeping_i2v(pipe, adapter: I2VAdapter | None, *args, **kwargs) -> None:
    """`pipe.load_ip_adapter` rebuilds every `attn1` processor from its class with no arguments,
    which would drop (or fail on) the I2V processors: take them off, load, put them back."""
    if adapter is not None:
        remove_i2v_adapter(pipe.unet)
    pipe.load_ip_adapter(*args, **kwargs)
    if adapter is not None:
        install_i2v_adapter(pipe.unet, adapter)


# --- motion strength and the Frame Similarity Prior ---------------------------------------------

@dataclass(frozen=True)
class MotionSettings:
    """What one motion-strength value m sets."""

    strength: float  # m itself
    start_fraction: float  # share of the denoising schedule run from the prior (noise level)
    blur_sigma: float  # degradation of the repeated first-frame latent, in latent pixels
    blur_mix: float  # share of latent positions that take the blurred value
    adapter_scale: float  # scale of the first-frame branch


def motion_settings(m: float) -> MotionSettings:
    """One slider for the paper's three knobs. Low m: start close to the (clean-ish) repeated first
    frame and lean hard on it (little motion). High m: start from more noise with a more degraded
    prior and a lighter first-frame branch, so the motion module has room to move things."""
    m = float(m)
    if not math.isfinite(m) or not 0.0 <= m <= 1.0:
        raise BadInput(f"Motion strength must be between 0 and 1 (got {m}).")
    return MotionSettings(
        strength=m,
        start_fraction=0.45 + 0.55 * m,
        blur_sigma=0.4 + 1.6 * m,
        blur_mix=0.5 * m,
        adapter_scale=1.0 - 0.2 * m,
    )


def gaussian_blur(latents: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (..., H, W) with reflect padding; sigma 0 returns the input."""
    if sigma <= 0:
        return latents
    radius = max(1, int(math.ceil(2.5 * sigma)))
    size = latents.shape[-1]
    radius = min(radius, size - 1, latents.shape[-2] - 1)
    x = torch.arange(-radius, radius + 1, dtype=latents.dtype, device=latents.device)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = kernel / kernel.sum()
    shape = latents.shape
    flat = latents.reshape(-1, 1, *shape[-2:])
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="reflect"), kernel.view(1, 1, 1, -1))
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="reflect"), kernel.view(1, 1, -1, 1))
    return flat.reshape(shape)


def frame_similarity_prior(first_latent: torch.Tensor, num_frames: int, scheduler, timestep, settings: MotionSettings,
                           generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, C, h, w) clean first-frame latent -> (B, C, F, h, w) starting latents: the latent repeated,
    degraded (blur mixed in where a random mask says), noised to `timestep`; frame 0 stays clean."""
    b, c, h, w = first_latent.shape
    repeated = first_latent[:, :, None].expand(b, c, num_frames, h, w).contiguous()
    blurred = gaussian_blur(repeated, settings.blur_sigma)
    mask = (torch.rand(repeated.shape, generator=generator, device="cpu") < settings.blur_mix).to(repeated)
    degraded = repeated * (1 - mask) + blurred * mask
    noise = torch.randn(repeated.shape, generator=generator, device="cpu").to(repeated)
    t = torch.as_tensor(timestep, device=repeated.device).reshape(1).long()
    noisy = scheduler.add_noise(degraded, noise, t)
    noisy[:, :, 0] = first_latent
    return noisy


# --- sampling -----------------------------------------------------------------------------------

@dataclass
class I2VResult:
    video: torch.Tensor  # (F, 3, H, W) in [0, 1]
    latents: torch.Tensor  # (1, C, F, h, w)
    timesteps: list[int]


@torch.no_grad()
def encode_first_frame(pipe, image: torch.Tensor) -> torch.Tensor:
    """(1, 3, H, W) in [0, 1] -> scaled latent mean (deterministic, so frame 0 decodes faithfully)."""
    vae = pipe.vae
    dist = vae.encode((image * 2 - 1).to(device=vae.device, dtype=vae.dtype)).latent_dist
    return dist.mean * vae.config.scaling_factor


@torch.no_grad()
def animate(
    pipe,
    image: torch.Tensor,
    prompt: str,
    *,
    motion: MotionSettings,
    num_frames: int = 8,
    steps: int = 20,
    guidance: float = 4.0,
    negative_prompt: str = "",
    seed: int = 0,
    adapter_on: bool = True,
    ip_adapter_image=None,
    progress: Progress = None,
    progress_span: tuple[float, float] = (0.0, 1.0),
    progress_text: str = "Denoising",
    unets=None,
) -> I2VResult:
    """Animate `image` (1, 3, H, W in [0, 1]) with an AnimateDiffPipeline whose UNet carries I2V
    processors. `adapter_on=False` runs the very same sampler with the first-frame branch at zero:
    the frozen model with the clean first frame and the prior, for a fair side-by-side.
    `progress(fraction, text)` hears after every step, the fraction within `progress_span`.
    `unets` (an `edg.DecoupledUNets`) picks the UNet per step instead of the pipeline's own; the
    caption reaches any temporal text processors through `edg.temporal_text_context`."""
    from diffusers import DDIMScheduler

    from adapters.i2v.edg import temporal_text_context

    device = pipe.unet.device
    # a private scheduler: set_timesteps mutates state that concurrent requests must not share
    scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    scheduler.set_timesteps(steps, device=device)
    run = max(1, int(round(steps * motion.start_fraction)))
    timesteps = scheduler.timesteps[-run:]
    generator = torch.Generator().manual_seed(int(seed))
    cfg = guidance > 1.0
    positive, negative = pipe.encode_prompt(prompt, device, 1, cfg, negative_prompt or None)
    clip_embeds = torch.cat([negative, positive]) if cfg else positive
    embeds = clip_embeds.repeat_interleave(num_frames, dim=0)
    added = None
    if ip_adapter_image is not None:
        image_embeds = pipe.prepare_ip_adapter_image_embeds(ip_adapter_image, None, device, 1, cfg)
        added = {"image_embeds": image_embeds}
    first = encode_first_frame(pipe, image)
    latents = frame_similarity_prior(first, num_frames, scheduler, timesteps[0], motion, generator).to(device)
    scale = motion.adapter_scale if adapter_on else 0.0
    for i, t in enumerate(timesteps):
        model_input = torch.cat([latents] * 2) if cfg else latents
        unet = pipe.unet if unets is None else unets.for_timestep(t)
        with i2v_context(num_frames, scale), temporal_text_context(clip_embeds):
            eps = unet(model_input, t, encoder_hidden_states=embeds, added_cond_kwargs=added).sample
        if cfg:
            uncond, cond = eps.chunk(2)
            eps = uncond + guidance * (cond - uncond)
        # frame 0 is the encoded input at every step: only frames 1.. are denoised
        latents[:, :, 1:] = scheduler.step(eps[:, :, 1:], t, latents[:, :, 1:]).prev_sample
        latents[:, :, 0] = first
        if progress is not None:
            low, high = progress_span
            progress(low + (high - low) * (i + 1) / len(timesteps), progress_text)
    video = pipe.decode_latents(latents)  # (1, 3, F, H, W) in [-1, 1]
    video = ((video[0].permute(1, 0, 2, 3).float() + 1) / 2).clamp(0, 1).cpu()
    return I2VResult(video=video, latents=latents.cpu(), timesteps=[int(t) for t in timesteps])


@torch.no_grad()
def text_to_video(pipe, prompt: str, *, num_frames: int = 8, steps: int = 20, guidance: float = 4.0,
                  negative_prompt: str = "", seed: int = 0) -> torch.Tensor:
    """The frozen model alone: diffusers' own AnimateDiffPipeline from pure noise, no image and the
    first-frame branch at zero. The baseline that shows what the image (and the adapter) add.
    Returns (F, 3, H, W) in [0, 1]."""
    generator = torch.Generator().manual_seed(int(seed))
    with i2v_context(num_frames, 0.0):
        out = pipe(prompt, negative_prompt=negative_prompt or None, num_frames=num_frames, num_inference_steps=steps,
                   guidance_scale=guidance, generator=generator, output_type="pt")
    return out.frames[0].float().clamp(0, 1).cpu()


# --- official weights ---------------------------------------------------------------------------

OFFICIAL_QUERY = "to_q_ff.weight"
OFFICIAL_OUT = ("to_out_ff.weight", "to_out_ff.bias")
_OFFICIAL_KEY = re.compile(r"^(?:module\.)?(?:unet\.)?(?P<prefix>(?:down_blocks|up_blocks|mid_block)\..*\.attn1)\.(?P<param>to_q_ff\.weight|to_out_ff\.weight|to_out_ff\.bias)$")
_OFFICIAL_TO_OURS = {"to_q_ff.weight": "to_q_adapter.weight", "to_out_ff.weight": "to_out_adapter.weight", "to_out_ff.bias": "to_out_adapter.bias"}


@dataclass
class ConversionReport:
    state_dict: dict[str, torch.Tensor]
    converted: int
    skipped: list[str]  # official keys that are not I2V branch weights (motion modules, IP layers, ...)


def load_official_checkpoint(path: str) -> dict[str, torch.Tensor]:
    """Read `i2v_module.pth` without executing pickled code (weights_only); refuse anything else."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # the safe unpickler rejects objects it would have to construct
        raise BadInput(f"Refusing to load {path}: it is not a plain tensor checkpoint ({type(exc).__name__}).") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BadInput(f"{path} does not hold a state dict of tensors.")
    return state


def convert_official_state_dict(official: Mapping[str, torch.Tensor]) -> ConversionReport:
    """Official I2V-Adapter keys (`<block>.attn1.to_q_ff.weight`, `.to_out_ff.{weight,bias}` in the
    AnimateDiff-style UNet3D naming, optionally `module.`-prefixed) -> our processor keys
    (`<block>.attn1.to_q_adapter.weight`, `.to_out_adapter.{weight,bias}`). diffusers'
    UNetMotionModel names its spatial blocks the same way, so only the parameter names change.
    The official query projection has no bias; ours copies the frozen `to_q`, which in SD 1.5 has
    none either."""
    out: dict[str, torch.Tensor] = {}
    skipped = []
    for key, tensor in official.items():
        match = _OFFICIAL_KEY.match(key)
        if match is None:
            skipped.append(key)
            continue
        out[f"{match['prefix']}.{_OFFICIAL_TO_OURS[match['param']]}"] = tensor.detach().clone().float()
    return ConversionReport(out, len(out), skipped)


def to_official_state_dict(ours: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse mapping (for round-trip tests and for sharing weights back)."""
    back = {v: k for k, v in _OFFICIAL_TO_OURS.items()}
    out = {}
    for key, tensor in ours.items():
        prefix, _, rest = key.partition(".attn1.")
        out[f"{prefix}.attn1.{back[rest]}"] = tensor
    return out


def count_adapter_params(adapter: I2VAdapter) -> int:
    return sum(p.numel() for p in adapter.parameters())


# --- the training loss (training/i2v/train.py and the contract's one-step check) -------------------

def to_pixels(frames: np.ndarray) -> torch.Tensor:
    """(B, F, H, W, 3) in [0, 1] -> (B*F, 3, H, W) in [-1, 1]."""
    x = torch.from_numpy(frames).float()
    return x.reshape(-1, *x.shape[-3:]).permute(0, 3, 1, 2) * 2 - 1


@torch.no_grad()
def encode_latents(vae, pixels: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    dist = vae.encode(pixels).latent_dist
    return (dist.mean + dist.std * torch.randn(dist.mean.shape, generator=gen)) * vae.config.scaling_factor


def diffusion_loss(model_fn, latents: torch.Tensor, scheduler, gen: torch.Generator, keep_first: bool = False,
                   frames: int = 1) -> torch.Tensor:
    """Epsilon-prediction loss. With `keep_first`, frame 0 of every clip stays clean in the input
    and is left out of the loss (the I2V-Adapter setting)."""
    n = latents.shape[0] // frames
    noise = torch.randn(latents.shape, generator=gen)
    if keep_first:
        # the first-frame branch matters where the noisy frames have lost the appearance: weight
        # high noise levels more (t = T(1 - u^2): density rising towards T), as sampling from the
        # Frame Similarity Prior starts there
        u = torch.rand(n, generator=gen)
        t = ((1 - u**2) * (scheduler.config.num_train_timesteps - 1)).round().long()
    else:
        t = torch.randint(0, scheduler.config.num_train_timesteps, (n,), generator=gen)
    noisy = scheduler.add_noise(latents, noise, t.repeat_interleave(frames))
    if keep_first:
        first = torch.arange(n) * frames
        noisy[first] = latents[first]
    pred = model_fn(noisy, t)
    if keep_first:
        keep = torch.ones(latents.shape[0], dtype=torch.bool)
        keep[torch.arange(n) * frames] = False
        return F.mse_loss(pred[keep], noise[keep])
    return F.mse_loss(pred, noise)


def video_to_unet(latents: torch.Tensor, frames: int) -> torch.Tensor:
    """(B*F, C, h, w) -> (B, C, F, h, w) as UNetMotionModel takes it."""
    return latents.reshape(-1, frames, *latents.shape[1:]).permute(0, 2, 1, 3, 4)


def unet_to_frames(sample: torch.Tensor) -> torch.Tensor:
    return sample.permute(0, 2, 1, 3, 4).reshape(-1, *sample.shape[1:2], *sample.shape[3:])
