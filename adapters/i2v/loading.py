"""Loading the image-to-video model from either source into one `I2VModel`, and building the
small bundled models.

- bundled: the tiny models of `training/i2v/train.py`, stored as safetensors + JSON configs in
  `assets/i2v/` (no pickles).
- hub: Stable Diffusion 1.5 + the AnimateDiff motion adapter + IP-Adapter (content) + the
  official I2V-Adapter weights converted into our processor keys. `load_hub(parts)` gets one hub
  id or directory per part (`frozen`, `motion`, `ip_adapter`, `adapter`); the studio's `local`
  source hands it the folders of one directory (`stable-diffusion/`, `motion-adapter/`, optional
  `ip-adapter/`, `i2v_module.pth`), which is how the path is tested offline.
"""
from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from adapters.common.weights import count_safetensors_params, load_strict, read_bundled, resolve_file, save_bundled
from adapters.i2v.config import (
    FRAME_SIZE,
    MOTION_CONFIG,
    NUM_FRAMES,
    SCHEDULER_CONFIG,
    TEXT_CONFIG,
    TEXT_LENGTH,
    UNET_CONFIG,
    VAE_CONFIG,
)
from adapters.i2v import data, photos
from adapters.i2v.modeling import (
    I2VAdapter,
    convert_official_state_dict,
    install_i2v_adapter,
    load_ip_adapter_keeping_i2v,
    load_official_checkpoint,
)

log = logging.getLogger(__name__)

IP_ADAPTER_WEIGHT = "ip-adapter-plus_sd15.safetensors"  # the 16-token Resampler the paper pairs with
I2V_ADAPTER_FILE = "i2v_module.pth"
COMPONENTS = ("vae", "text_encoder", "unet", "motion_adapter")


@dataclass
class I2VModel:
    pipe: object  # AnimateDiffPipeline with I2V processors installed
    adapter: I2VAdapter
    frame_size: int
    num_frames: int
    uses_ip_adapter: bool = False
    skipped_keys: int = 0
    # EDG: the fine-tuned motion module + temporal text adapter (theta_sft), when the source has one
    edg_sft: dict | None = None
    edg_text_dim: int = 0
    merges: object = field(default_factory=lambda: _merge_cache())

    def param_counts(self) -> tuple[int, int]:
        """(adapter, frozen UNet + motion module) parameters."""
        adapter = sum(p.numel() for p in self.adapter.parameters())
        unet_total = sum(p.numel() for p in self.pipe.unet.parameters())
        return adapter, unet_total - adapter


def _merge_cache():
    from adapters.i2v.edg import MergeCache

    return MergeCache()


EDG_SFT = "edg_sft"


def _config_of(module) -> dict:
    config = module.config.to_dict() if hasattr(module.config, "to_dict") else dict(module.config)
    config = json.loads(json.dumps({k: v for k, v in config.items()}, default=list))
    # diffusers keeps this as a set: sorted, a retrained bundle's configs come out byte-identical
    if isinstance(config.get("_use_default_values"), list):
        config["_use_default_values"] = sorted(config["_use_default_values"])
    return config


def save_bundle(directory: Path, *, vae, text_encoder, unet, motion_adapter, adapter: I2VAdapter, scheduler) -> None:
    directory = Path(directory)
    save_bundled(directory, vae.state_dict(), _config_of(vae), "vae")
    save_bundled(directory, text_encoder.state_dict(), text_encoder.config.to_dict(), "text_encoder")
    save_bundled(directory, unet.state_dict(), _config_of(unet), "unet")
    save_bundled(directory, motion_adapter.state_dict(), _config_of(motion_adapter), "motion_adapter")
    save_bundled(directory, adapter.public_state_dict(), {"processors": adapter.processor_names}, "i2v_adapter")
    (directory / "scheduler.json").write_text(json.dumps(_config_of(scheduler), indent=2, sort_keys=True) + "\n")


def _strip_private(config: dict) -> dict:
    return {k: v for k, v in config.items() if not k.startswith("_")}


def load_bundled(directory: Path) -> I2VModel:
    from diffusers import AutoencoderKL, DDIMScheduler, MotionAdapter, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from adapters.i2v.vae import PatchAutoencoder

    directory = Path(directory)
    built = {}
    for name, cls in (("vae", AutoencoderKL), ("unet", UNet2DConditionModel), ("motion_adapter", MotionAdapter)):
        tensors, config = read_bundled(directory, name)
        if "patch" in config:  # the bundled patch VAE (AutoencoderKL has no such setting)
            cls = PatchAutoencoder
        module = cls.from_config(_strip_private(config))
        load_strict(module, tensors, role=f"image-to-video {name}")
        built[name] = module.eval().requires_grad_(False)
    tensors, config = read_bundled(directory, "text_encoder")
    text_encoder = CLIPTextModel(CLIPTextConfig(**config))
    # the position_ids buffer is stored by some transformers versions and not others
    load_strict(text_encoder, tensors, role="image-to-video text encoder", ignore=("text_model.embeddings.position_ids",))
    built["text_encoder"] = text_encoder.eval().requires_grad_(False)
    built["tokenizer"] = CLIPTokenizer.from_pretrained(str(directory / "tokenizer"))
    built["scheduler"] = DDIMScheduler.from_config(json.loads((directory / "scheduler.json").read_text()))
    pipe = build_pipeline(built)
    adapter = install_i2v_adapter(pipe.unet)
    tensors, _ = read_bundled(directory, "i2v_adapter")
    adapter.load_public_state_dict(tensors)
    model = I2VModel(pipe, adapter, FRAME_SIZE, NUM_FRAMES)
    if (directory / f"{EDG_SFT}.safetensors").is_file():
        from adapters.i2v.edg import check_fine_tune

        tensors, config = read_bundled(directory, EDG_SFT)
        check_fine_tune(pipe.unet, tensors)
        model.edg_sft, model.edg_text_dim = tensors, int(config["text_dim"])
    return model


# stored with the motion module but not parameters: its sinusoidal position tables
BUFFER_SUFFIXES = (".pos_embed.pe",)


def header_count(path: Path) -> int:
    from safetensors import safe_open

    total = count_safetensors_params(path)
    with safe_open(str(path), framework="pt") as handle:
        for key in handle.keys():
            if key.endswith(BUFFER_SUFFIXES):
                total -= math.prod(handle.get_slice(key).get_shape())
    return total


def header_param_counts(directory: Path) -> tuple[int, int]:
    """(I2V branch, frozen UNet + motion module) from the bundled files' headers alone: the same
    numbers `I2VModel.param_counts` gives once loaded (buffers left out)."""
    directory = Path(directory)
    adapter = header_count(directory / "i2v_adapter.safetensors")
    frozen = header_count(directory / "unet.safetensors") + header_count(directory / "motion_adapter.safetensors")
    return adapter, frozen


def load_hub(parts: dict[str, str]) -> I2VModel:
    """The real models, one hub id or directory per part (`frozen`, `motion`, `ip_adapter`,
    `adapter`). The IP-Adapter is optional where the parts are local directories: a missing
    `ip-adapter/` folder leaves it out, as a mirrored stack without it."""
    from diffusers import AnimateDiffPipeline, DDIMScheduler, MotionAdapter

    base, motion_id, ip_source, i2v_source = parts["frozen"], parts["motion"], parts.get("ip_adapter"), parts["adapter"]
    local = os.path.isdir(base)
    ip_local = bool(ip_source) and os.path.isdir(ip_source)
    dtype = torch.float16 if torch.cuda.is_available() else torch.float32
    motion = MotionAdapter.from_pretrained(motion_id, dtype=dtype)
    pipe = AnimateDiffPipeline.from_pretrained(base, motion_adapter=motion, dtype=dtype)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config, clip_sample=False, timestep_spacing="linspace", steps_offset=1)
    pipe.set_progress_bar_config(disable=True)
    adapter = install_i2v_adapter(pipe.unet)
    uses_ip = False
    if ip_source and (ip_local or not local):
        # IP-Adapter first would be the simple order; doing it after shows (and tests) the fix
        load_ip_adapter_keeping_i2v(pipe, adapter, ip_source, subfolder="" if ip_local else "models",
                                    weight_name="ip-adapter.safetensors" if ip_local else IP_ADAPTER_WEIGHT)
        uses_ip = True
    official = load_official_checkpoint(resolve_file(i2v_source, I2V_ADAPTER_FILE))
    report = convert_official_state_dict(official)
    adapter.load_public_state_dict(report.state_dict)
    if report.skipped:
        log.info("i2v: %d non-adapter keys in %s left to their own loaders", len(report.skipped), I2V_ADAPTER_FILE)
    adapter.to(dtype)
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    return I2VModel(pipe, adapter, frame_size=size, num_frames=16, uses_ip_adapter=uses_ip, skipped_keys=len(report.skipped))


# --- the small bundled models -------------------------------------------------------------------

def write_tokenizer(directory: Path) -> None:
    """A CLIP BPE tokenizer whose merges build every caption word whole (anything else is spelt)."""
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
    for word in dict.fromkeys((*photos.VOCABULARY, *data.VOCABULARY)):
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
    from diffusers import DDIMScheduler, MotionAdapter, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from adapters.i2v.vae import PatchAutoencoder

    tokenizer = CLIPTokenizer.from_pretrained(str(tokenizer_dir))
    torch.manual_seed(seed)
    vae = PatchAutoencoder(**VAE_CONFIG)
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
