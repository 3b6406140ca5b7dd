"""Architecture of the small frozen models behind the bundled image-to-video tab (saved next to
their weights), the per-call limits the tab's sliders read, and the frozen request that crosses the
device boundary.

Same diffusers classes as the real thing (CLIPTextModel, UNet2DConditionModel, MotionAdapter ->
UNetMotionModel), only tiny: 64x64 frames, 16x16x8 latents, a UNet of block_out_channels (32, 64);
the VAE is a patch autoencoder with AutoencoderKL's interface (`adapters/i2v/vae.py`). The
tokenizer knows the caption vocabulary (camera moves over photographs, and the older sprite words)
as whole words and spells anything else letter by letter. No torch, no gradio: cheap to import.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FRAME_SIZE = 64
NUM_FRAMES = 8
TEXT_LENGTH = 12

# a patch autoencoder (adapters/i2v/vae.py), not an AutoencoderKL: see there for the measurement
VAE_CONFIG = dict(
    in_channels=3,
    out_channels=3,
    patch=4,
    latent_channels=8,
    hidden=64,
    block_out_channels=(48, 48, 48),  # only its length counts: diffusers reads the factor 4 from it
)
TEXT_CONFIG = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=2,
    max_position_embeddings=TEXT_LENGTH,
    projection_dim=32,
)
UNET_CONFIG = dict(
    sample_size=FRAME_SIZE // 4,
    in_channels=VAE_CONFIG["latent_channels"],
    out_channels=VAE_CONFIG["latent_channels"],
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    block_out_channels=(32, 64),
    layers_per_block=1,
    cross_attention_dim=32,
    attention_head_dim=4,
    norm_num_groups=8,
)
MOTION_CONFIG = dict(
    block_out_channels=(32, 64),
    motion_layers_per_block=1,
    motion_mid_block_layers_per_block=1,
    motion_num_attention_heads=4,
    motion_norm_num_groups=8,
    motion_max_seq_length=16,
    use_motion_mid_block=True,
)
SCHEDULER_CONFIG = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    clip_sample=False,
    set_alpha_to_one=False,
    steps_offset=1,
)


# Per-call limits (the sliders read them; `io.check_settings` enforces them in the web process).
LIMITS = {"frames": (2, 16), "steps": (2, 50), "guidance": (1.0, 15.0), "seed": (0, 2**31 - 1)}
MOTION_LIMITS = (0.0, 1.0)
DEFAULTS = {"prompt": "the scene moves left slowly", "motion_strength": 0.5, "frames": 8, "steps": 20, "guidance": 4.0,
            "seed": 0, "negative_prompt": ""}


@dataclass(frozen=True)
class AnimateRequest:
    """One validated animation: the first frame already cropped and resized to the model's frame size."""

    pixels: np.ndarray  # (S, S, 3) float32 in [0, 1]
    prompt: str
    negative_prompt: str
    motion_strength: float  # m in [0, 1]
    frames: int
    steps: int
    guidance: float
    seed: int


@dataclass(frozen=True)
class EDGSettings:
    """Extrapolate-and-decouple merge and schedule; the official defaults. `keep` is DARE's keep
    rate (the official mask rate is 1 - keep); `seed` draws its masks."""

    alpha: float = 0.25
    beta_dyn: float = 0.75
    alpha_con: float = 1.0
    beta_con: float = 0.25
    switch_t: int = 500
    keep: float = 0.3
    seed: int = 0


EDG_LIMITS = {"alpha": (0.0, 2.0), "beta_dyn": (0.0, 2.0), "alpha_con": (0.0, 2.0), "beta_con": (0.0, 2.0),
              "switch_t": (0, 1000), "keep": (0.05, 1.0), "seed": (0, 2**31 - 1)}


@dataclass(frozen=True)
class EDGRequest:
    """One validated animation rendered three ways: pretrained, fine-tuned (theta_sft) and EDG."""

    animate: AnimateRequest
    settings: EDGSettings
