"""Loading the image-to-video model from either source into one `I2VModel`.

- bundled: the tiny models of `training/train_i2v.py`, stored as safetensors + JSON configs in
  `assets/i2v/` (no pickles).
- hub: Stable Diffusion 1.5 + the AnimateDiff motion adapter + IP-Adapter (content) + the
  official I2V-Adapter weights converted into our processor keys. `load_hub(directory)` reads the
  same layout from a local directory (`stable-diffusion/`, `motion-adapter/`, optional
  `ip-adapter/`, `i2v_module.pth`), which is how the path is tested offline.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from adapters.i2v import I2VAdapter, convert_official_state_dict, install_i2v_adapter, load_ip_adapter_keeping_i2v, load_official_checkpoint
from studio.loader import read_bundled, resolve_file, save_bundled

log = logging.getLogger(__name__)

BASE_MODEL_ID = "stable-diffusion-v1-5/stable-diffusion-v1-5"
MOTION_ADAPTER_ID = "guoyww/animatediff-motion-adapter-v1-5-2"
IP_ADAPTER_ID = "h94/IP-Adapter"
IP_ADAPTER_WEIGHT = "ip-adapter-plus_sd15.safetensors"  # the 16-token Resampler the paper pairs with
I2V_ADAPTER_ID = "space-xun/i2v_adapter"
I2V_ADAPTER_FILE = "i2v_module.pth"
COMPONENTS = ("vae", "text_encoder", "unet", "motion_adapter")


@dataclass
class I2VModel:
    pipe: object  # AnimateDiffPipeline with I2V processors installed
    adapter: I2VAdapter
    frame_size: int
    num_frames: int
    uses_ip_adapter: bool = False
    figures: dict = field(default_factory=dict)  # measured on this model (bundled only)
    skipped_keys: int = 0

    def param_counts(self) -> tuple[int, int]:
        """(adapter, frozen UNet + motion module) parameters."""
        adapter = sum(p.numel() for p in self.adapter.parameters())
        unet_total = sum(p.numel() for p in self.pipe.unet.parameters())
        return adapter, unet_total - adapter


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

    from adapters.i2v_models import FRAME_SIZE, NUM_FRAMES, build_pipeline

    directory = Path(directory)
    built = {}
    for name, cls in (("vae", AutoencoderKL), ("unet", UNet2DConditionModel), ("motion_adapter", MotionAdapter)):
        tensors, config = read_bundled(directory, name)
        module = cls.from_config(_strip_private(config))
        module.load_state_dict(tensors)
        built[name] = module.eval().requires_grad_(False)
    tensors, config = read_bundled(directory, "text_encoder")
    text_encoder = CLIPTextModel(CLIPTextConfig(**config))
    text_encoder.load_state_dict(tensors, strict=False)  # position_ids buffers differ across versions
    built["text_encoder"] = text_encoder.eval().requires_grad_(False)
    built["tokenizer"] = CLIPTokenizer.from_pretrained(str(directory / "tokenizer"))
    built["scheduler"] = DDIMScheduler.from_config(json.loads((directory / "scheduler.json").read_text()))
    pipe = build_pipeline(built)
    adapter = install_i2v_adapter(pipe.unet)
    tensors, _ = read_bundled(directory, "i2v_adapter")
    adapter.load_public_state_dict(tensors)
    figures_path = directory / "figures.json"
    figures = json.loads(figures_path.read_text()) if figures_path.is_file() else {}
    return I2VModel(pipe, adapter, FRAME_SIZE, NUM_FRAMES, figures=figures)


def load_hub(repo_or_dir: str) -> I2VModel:
    """The real models. A directory stands in for every hub id (offline tests, mirrored models)."""
    from diffusers import AnimateDiffPipeline, DDIMScheduler, MotionAdapter

    local = os.path.isdir(repo_or_dir)
    base = os.path.join(repo_or_dir, "stable-diffusion") if local else BASE_MODEL_ID
    motion_id = os.path.join(repo_or_dir, "motion-adapter") if local else MOTION_ADAPTER_ID
    ip_source = os.path.join(repo_or_dir, "ip-adapter") if local else IP_ADAPTER_ID
    i2v_source = repo_or_dir if local else I2V_ADAPTER_ID
    dtype = torch.float16 if torch.cuda.is_available() else torch.float32
    motion = MotionAdapter.from_pretrained(motion_id, dtype=dtype)
    pipe = AnimateDiffPipeline.from_pretrained(base, motion_adapter=motion, dtype=dtype)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config, clip_sample=False, timestep_spacing="linspace", steps_offset=1)
    pipe.set_progress_bar_config(disable=True)
    adapter = install_i2v_adapter(pipe.unet)
    uses_ip = False
    if not local or os.path.isdir(ip_source):
        # IP-Adapter first would be the simple order; doing it after shows (and tests) the fix
        load_ip_adapter_keeping_i2v(pipe, adapter, ip_source, subfolder="models" if not local else "",
                                    weight_name=IP_ADAPTER_WEIGHT if not local else "ip-adapter.safetensors")
        uses_ip = True
    official = load_official_checkpoint(resolve_file(i2v_source, I2V_ADAPTER_FILE))
    report = convert_official_state_dict(official)
    adapter.load_public_state_dict(report.state_dict)
    if report.skipped:
        log.info("i2v: %d non-adapter keys in %s left to their own loaders", len(report.skipped), I2V_ADAPTER_FILE)
    adapter.to(dtype)
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    return I2VModel(pipe, adapter, frame_size=size, num_frames=16, uses_ip_adapter=uses_ip, skipped_keys=len(report.skipped))
