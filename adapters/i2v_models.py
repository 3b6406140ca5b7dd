"""The small frozen models behind the bundled image-to-video tab, and how they are saved and loaded.

Same diffusers classes as the real thing (AutoencoderKL, CLIPTextModel, UNet2DConditionModel,
MotionAdapter -> UNetMotionModel), only tiny: 32x32 frames, 8x8x4 latents, a UNet of
block_out_channels (32, 64). The tokenizer knows the sprite vocabulary as whole words and
spells anything else letter by letter. No gradio import.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from adapters.i2v_data import VOCABULARY

FRAME_SIZE = 32
NUM_FRAMES = 8
TEXT_LENGTH = 12

VAE_CONFIG = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 3,
    up_block_types=("UpDecoderBlock2D",) * 3,
    block_out_channels=(16, 32, 32),
    layers_per_block=1,
    latent_channels=4,
    norm_num_groups=4,  # 16 groups of a 16-wide block would normalise away each channel's mean (the colours)
    sample_size=FRAME_SIZE,
    mid_block_add_attention=False,
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
    in_channels=4,
    out_channels=4,
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


def write_tokenizer(directory: Path) -> None:
    """A CLIP BPE tokenizer whose merges build every sprite word whole (anything else is spelt)."""
    from transformers import CLIPTokenizer

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    vocab: dict[str, int] = {}
    for token in ("<|startoftext|>", "<|endoftext|>"):
        vocab[token] = len(vocab)
    for letter in "abcdefghijklmnopqrstuvwxyz":
        vocab.setdefault(letter, len(vocab))
        vocab.setdefault(letter + "</w>", len(vocab))
    merges: list[str] = []
    for word in VOCABULARY:
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        current = pieces[0]
        for piece in pieces[1:]:
            merge = f"{current} {piece}"
            if merge not in merges:
                merges.append(merge)
            current += piece
            vocab.setdefault(current, len(vocab))
    raw = directory / "raw"
    raw.mkdir(exist_ok=True)
    (raw / "vocab.json").write_text(json.dumps(vocab))
    (raw / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    tokenizer = CLIPTokenizer(str(raw / "vocab.json"), str(raw / "merges.txt"), model_max_length=TEXT_LENGTH)
    tokenizer.save_pretrained(str(directory))
    for path in raw.iterdir():
        path.unlink()
    raw.rmdir()


def new_components(seed: int, tokenizer_dir: Path):
    """Freshly initialised (untrained) components, seeded."""
    from diffusers import AutoencoderKL, DDIMScheduler, MotionAdapter, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(str(tokenizer_dir))
    torch.manual_seed(seed)
    vae = AutoencoderKL(**VAE_CONFIG)
    torch.manual_seed(seed + 1)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id, **TEXT_CONFIG,
        )
    )
    torch.manual_seed(seed + 2)
    unet = UNet2DConditionModel(**UNET_CONFIG)
    torch.manual_seed(seed + 3)
    motion = MotionAdapter(**MOTION_CONFIG)
    return dict(tokenizer=tokenizer, vae=vae, text_encoder=text_encoder, unet=unet, motion_adapter=motion,
                scheduler=DDIMScheduler(**SCHEDULER_CONFIG))


def build_pipeline(components: dict):
    """An AnimateDiffPipeline (it builds the UNetMotionModel) from components."""
    from diffusers import AnimateDiffPipeline

    pipe = AnimateDiffPipeline(
        vae=components["vae"], text_encoder=components["text_encoder"], tokenizer=components["tokenizer"],
        unet=components["unet"], motion_adapter=components["motion_adapter"], scheduler=components["scheduler"],
        feature_extractor=None, image_encoder=None,
    )
    pipe.set_progress_bar_config(disable=True)
    for module in (pipe.unet, pipe.vae, pipe.text_encoder):
        module.requires_grad_(False).eval()
    return pipe


@torch.no_grad()
def encode_text(tokenizer, text_encoder, prompts: list[str]) -> torch.Tensor:
    ids = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt").input_ids
    return text_encoder(ids.to(text_encoder.device))[0]


def tiny_random_components(seed: int = 0, tokenizer_dir: Path | None = None, layers_per_block: int = 1,
                           block_out_channels: tuple[int, ...] = (8, 16)):
    """Untrained components at diffusers' own dummy-test sizes (16x16 frames, 8x8 latents), for
    tests and the hub-layout check. `block_out_channels=(8, 8, 8, 8)` with `layers_per_block=2`
    gives Stable Diffusion 1.5's block structure (same attention names), only narrow."""
    import tempfile

    from diffusers import AutoencoderKL, DDIMScheduler, MotionAdapter, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    if tokenizer_dir is None:
        tokenizer_dir = Path(tempfile.mkdtemp(prefix="i2v-tok-"))
        write_tokenizer(tokenizer_dir)
    tokenizer = CLIPTokenizer.from_pretrained(str(tokenizer_dir))
    n = len(block_out_channels)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=layers_per_block,
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
