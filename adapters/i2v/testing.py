"""A tiny real image-to-video bundle (the same `I2VModel`, AnimateDiff pipeline and I2V processors,
with untrained diffusers components at their own dummy-test sizes) and the hooks the contract tests
in `tests/contract` call. Offline: the tokenizer is written from the caption vocabulary."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from adapters.i2v import modeling as i2v
from adapters.i2v.config import SCHEDULER_CONFIG, TEXT_LENGTH, AnimateRequest
from adapters.i2v.loading import I2VModel, build_pipeline

TINY_FRAMES = 4
TINY_SIZE = 32  # pixels; the tiny VAE halves it, so latents are 16x16
TINY_STEPS = 2
PROMPT = "the scene moves left slowly"


def tiny_bundle(seed: int = 0) -> I2VModel:
    """Untrained tiny components (UNet and motion module blocks (8, 8)) with a fresh, zero-initialised
    I2V adapter installed, exactly as the bundled loader assembles them."""
    components = tiny_random_components(seed=seed, block_out_channels=(8, 8), sample_size=TINY_SIZE // 2)
    pipe = build_pipeline(components)
    adapter = install_fresh_adapter(pipe, seed)
    return I2VModel(pipe, adapter, frame_size=TINY_SIZE, num_frames=TINY_FRAMES)


def install_fresh_adapter(pipe, seed: int = 0):
    adapter = i2v.install_i2v_adapter(pipe.unet, seed=seed)
    adapter.requires_grad_(True)  # what training updates; sampling runs under no_grad anyway
    return adapter


def _image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((TINY_SIZE, TINY_SIZE, 3)).astype(np.float32)


def example_request() -> AnimateRequest:
    return AnimateRequest(pixels=_image(), prompt=PROMPT, negative_prompt="", motion_strength=1.0,
                          frames=TINY_FRAMES, steps=TINY_STEPS, guidance=2.0, seed=0)


def adapter_parameters(bundle: I2VModel) -> dict[str, torch.nn.Parameter]:
    return dict(bundle.adapter.named_parameters())


def frozen_parameters(bundle: I2VModel) -> dict[str, torch.Tensor]:
    """Every weight of the VAE, text encoder, UNet and motion module (not the adapter's)."""
    ours = {id(p) for p in bundle.adapter.parameters()}
    out = {}
    for prefix, module in (("unet", bundle.pipe.unet), ("vae", bundle.pipe.vae), ("text_encoder", bundle.pipe.text_encoder)):
        for name, p in module.named_parameters():
            if id(p) not in ours:
                out[f"{prefix}.{name}"] = p
    return out


def perturb_adapter(bundle: I2VModel, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for proc in bundle.adapter.layers.values():
            proc.to_out_adapter.weight.copy_(torch.randn(proc.to_out_adapter.weight.shape, generator=g) * 0.5)
            proc.to_q_adapter.weight.add_(torch.randn(proc.to_q_adapter.weight.shape, generator=g) * 0.1)


def _animate(bundle: I2VModel, adapter_on: bool) -> np.ndarray:
    image = torch.from_numpy(_image()).permute(2, 0, 1)[None]
    with torch.no_grad():
        result = i2v.animate(bundle.pipe, image, PROMPT, motion=i2v.motion_settings(1.0), num_frames=TINY_FRAMES,
                             steps=TINY_STEPS, guidance=2.0, seed=0, adapter_on=adapter_on)
    return result.video.numpy()


def output(bundle: I2VModel, adapter_on: bool) -> np.ndarray:
    """A short video at a fixed seed through the I2V sampler (adapter off = branch scale 0)."""
    return _animate(bundle, adapter_on)


def frozen_output(bundle: I2VModel) -> np.ndarray:
    """The same sampler with no I2V processor installed at all (plain frozen self-attention)."""
    i2v.remove_i2v_adapter(bundle.pipe.unet)
    try:
        return _animate(bundle, adapter_on=False)
    finally:
        i2v.install_i2v_adapter(bundle.pipe.unet, bundle.adapter)
        bundle.adapter.requires_grad_(True)


def training_step(bundle: I2VModel, seed: int = 0) -> float:
    """One AdamW step of the I2V stage's own loss (training/i2v/train.py): photo clips, frame 0
    clean and out of the loss, epsilon prediction through the frozen UNet and motion module."""
    from adapters.i2v.photos import clip_batch
    from adapters.i2v.loading import encode_text

    pipe, frames = bundle.pipe, bundle.num_frames
    rng, gen = np.random.default_rng([seed, 3]), torch.Generator().manual_seed(seed)
    clips, captions = clip_batch(rng, 2, size=bundle.frame_size, frames=frames)
    latents = i2v.encode_latents(pipe.vae, i2v.to_pixels(clips), gen)
    text = encode_text(pipe.tokenizer, pipe.text_encoder, captions).repeat_interleave(frames, 0)
    params = list(bundle.adapter.parameters())
    bundle.adapter.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=3e-3, weight_decay=1e-4)

    def model_fn(z, t):
        return i2v.unet_to_frames(pipe.unet(i2v.video_to_unet(z, frames), t, text).sample)

    with i2v.i2v_context(num_frames=frames, scale=1.0):
        loss = i2v.diffusion_loss(model_fn, latents, pipe.scheduler, gen, keep_first=True, frames=frames)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optimizer.step()
    return float(loss.detach())


def adapter_state_dict(bundle: I2VModel) -> dict:
    return bundle.adapter.public_state_dict()


def load_adapter_state_dict(bundle: I2VModel, state: dict) -> None:
    bundle.adapter.load_public_state_dict(state)


# --- tiny components (also used by the paper's own tests and the hub-layout check) --------------

def tiny_random_components(seed: int = 0, tokenizer_dir: Path | None = None, layers_per_block: int = 1,
                           block_out_channels: tuple[int, ...] = (8, 16), sample_size: int = 8):
    """Untrained components at diffusers' own dummy-test sizes (16x16 frames, 8x8 latents), for
    tests and the hub-layout check. `block_out_channels=(8, 8, 8, 8)` with `layers_per_block=2`
    gives Stable Diffusion 1.5's block structure (same attention names), only narrow."""
    import tempfile

    from diffusers import AutoencoderKL, DDIMScheduler, MotionAdapter, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from adapters.i2v.loading import write_tokenizer

    if tokenizer_dir is None:
        tokenizer_dir = Path(tempfile.mkdtemp(prefix="i2v-tok-"))
        write_tokenizer(tokenizer_dir)
    tokenizer = CLIPTokenizer.from_pretrained(str(tokenizer_dir))
    n = len(block_out_channels)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=sample_size, in_channels=4, out_channels=4, layers_per_block=layers_per_block,
        block_out_channels=block_out_channels, norm_num_groups=2, cross_attention_dim=8, attention_head_dim=2,
        down_block_types=("CrossAttnDownBlock2D",) * (n - 1) + ("DownBlock2D",) if n > 2 else ("CrossAttnDownBlock2D",) * n,
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (n - 1) if n > 2 else ("CrossAttnUpBlock2D",) * n,
    )
    vae = AutoencoderKL(block_out_channels=(8, 8), in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=2,
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=8, intermediate_size=16, num_hidden_layers=2, num_attention_heads=2,
        max_position_embeddings=TEXT_LENGTH, projection_dim=8, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id))
    motion = MotionAdapter(block_out_channels=block_out_channels, motion_layers_per_block=layers_per_block,
                           motion_norm_num_groups=2, motion_num_attention_heads=2, motion_max_seq_length=16)
    return dict(tokenizer=tokenizer, vae=vae, text_encoder=text_encoder, unet=unet, motion_adapter=motion,
                scheduler=DDIMScheduler(**SCHEDULER_CONFIG))
