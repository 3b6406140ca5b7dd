"""Official-weight converter and the hub path, offline: a tiny model saved in hub layout (Stable
Diffusion folders, a motion adapter, an IP-Adapter with its image encoder, and an `i2v_module.pth`
with the official key names) goes through the same `load_hub` a GPU Space uses, both as the
`local` source's folders and as hub ids served from an offline hub cache."""
from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from adapters.common.errors import BadInput
from adapters.i2v import SPEC
from adapters.i2v import modeling as i2v
from adapters.i2v.loading import I2V_ADAPTER_FILE, IP_ADAPTER_WEIGHT, build_pipeline, load_hub
from adapters.i2v.testing import tiny_random_components
from studio.loader import hub_parts, local_parts

torch.set_num_threads(1)
SD15_CHANNELS = (320, 640, 1280, 1280)


def official_sd15_prefixes() -> list[str]:
    """Where the official (AnimateDiff-style UNet3D on SD 1.5) checkpoint puts its adapter layers."""
    prefixes = [f"down_blocks.{b}.attentions.{a}.transformer_blocks.0.attn1" for b in range(3) for a in range(2)]
    prefixes.append("mid_block.attentions.0.transformer_blocks.0.attn1")
    prefixes += [f"up_blocks.{b}.attentions.{a}.transformer_blocks.0.attn1" for b in range(1, 4) for a in range(3)]
    return prefixes


def official_state_dict(prefixes, width_of, seed=0, wrap=True, module_prefix="module."):
    g = torch.Generator().manual_seed(seed)
    state = {}
    for prefix in prefixes:
        c = width_of(prefix)
        state[f"{module_prefix}{prefix}.to_q_ff.weight"] = torch.randn(c, c, generator=g)
        state[f"{module_prefix}{prefix}.to_out_ff.weight"] = torch.randn(c, c, generator=g)
        state[f"{module_prefix}{prefix}.to_out_ff.bias"] = torch.randn(c, generator=g)
    # the official file also carries temporal layers, which are not ours to convert
    state[f"{module_prefix}down_blocks.0.motion_modules.0.temporal_transformer.proj_in.weight"] = torch.randn(4, 4, generator=g)
    return {"state_dict": state} if wrap else state


def sd15_width(prefix: str) -> int:
    if prefix.startswith("mid_block"):
        return SD15_CHANNELS[-1]
    block = int(prefix.split(".")[1])
    return SD15_CHANNELS[block] if prefix.startswith("down") else SD15_CHANNELS[::-1][block]


@pytest.fixture(scope="module")
def sd_shaped():
    """Tiny UNet with Stable Diffusion 1.5's block structure (2 layers per block, 4 blocks)."""
    pipe = build_pipeline(tiny_random_components(seed=0, layers_per_block=2, block_out_channels=(8, 8, 8, 8)))
    adapter = i2v.install_i2v_adapter(pipe.unet, seed=0)
    return pipe, adapter


def test_official_names_are_exactly_our_attention_layers(sd_shaped):
    _, adapter = sd_shaped
    ours = sorted(name[: -len(".processor")] for name in adapter.processor_names)
    assert ours == sorted(official_sd15_prefixes()) and len(ours) == 16
    report = i2v.convert_official_state_dict(official_state_dict(official_sd15_prefixes(), sd15_width)["state_dict"])
    assert report.converted == 48 and len(report.skipped) == 1 and "motion_modules" in report.skipped[0]
    q = report.state_dict["up_blocks.3.attentions.2.transformer_blocks.0.attn1.to_q_adapter.weight"]
    assert q.shape == (320, 320)
    assert report.state_dict["mid_block.attentions.0.transformer_blocks.0.attn1.to_out_adapter.bias"].shape == (1280,)


def test_converter_round_trip_through_a_safe_load(sd_shaped, tmp_path):
    _, adapter = sd_shaped
    official = official_state_dict(official_sd15_prefixes(), lambda p: 8, seed=1)
    path = tmp_path / I2V_ADAPTER_FILE
    torch.save(official, path)
    loaded = i2v.load_official_checkpoint(str(path))
    report = i2v.convert_official_state_dict(loaded)
    adapter.load_public_state_dict(report.state_dict)
    back = i2v.to_official_state_dict(adapter.public_state_dict())
    expected = {k.removeprefix("module."): v for k, v in official["state_dict"].items() if "motion_modules" not in k}
    assert back.keys() == expected.keys()
    assert all(torch.equal(back[k], expected[k]) for k in expected)
    # the processors in the UNet now use the loaded values
    name = adapter.processor_names[0]
    proc = sd_shaped[0].unet.get_submodule(name[: -len(".processor")]).processor
    assert torch.equal(proc.to_out_adapter.bias, expected[name.replace(".processor", ".to_out_ff.bias")])


def test_wrong_shapes_are_refused(sd_shaped):
    _, adapter = sd_shaped
    report = i2v.convert_official_state_dict(official_state_dict(official_sd15_prefixes(), sd15_width, wrap=False))
    with pytest.raises(ValueError, match="shape"):
        adapter.load_public_state_dict(report.state_dict)


class Payload:
    def __reduce__(self):  # what a malicious pickle does: run code on load
        return (print, ("this must never run",))


def test_pickles_with_code_are_refused(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as handle:
        pickle.dump({"state_dict": Payload()}, handle)
    with pytest.raises(BadInput, match="Refusing"):
        i2v.load_official_checkpoint(str(path))
    assert "must never run" not in capsys.readouterr().out
    plain = tmp_path / "list.pth"
    torch.save([1, 2, 3], plain)
    with pytest.raises(BadInput, match="state dict"):
        i2v.load_official_checkpoint(str(plain))


def save_hub_layout(root, with_ip=True):
    """Tiny models in the folders `load_hub` reads, plus official-format I2V weights."""
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    c = tiny_random_components(seed=2)
    base = root / "stable-diffusion"
    for name in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        c[name].save_pretrained(str(base / name))
    (base / "model_index.json").write_text(json.dumps({
        "_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.42.1",
        "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
        "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
        "scheduler": ["diffusers", "DDIMScheduler"], "safety_checker": [None, None],
        "feature_extractor": [None, None], "image_encoder": [None, None], "requires_safety_checker": False,
    }))
    c["motion_adapter"].save_pretrained(str(root / "motion-adapter"))
    prefixes = [n[: -len(".processor")] for n in build_pipeline(c).unet.attn_processors if i2v.is_spatial_self_attention(n)]
    widths = {p: (8 if p.startswith("down_blocks.0") or p.startswith("up_blocks.1") else 16) for p in prefixes}
    official = official_state_dict(prefixes, widths.__getitem__, seed=3)
    torch.save(official, root / I2V_ADAPTER_FILE)
    if with_ip:
        torch.manual_seed(4)
        encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
            hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2, image_size=32,
            patch_size=8, projection_dim=6))
        encoder.save_pretrained(str(root / "ip-adapter" / "image_encoder"))
        cross, embed = 8, 6
        weights = {"image_proj.proj.weight": torch.randn(4 * cross, embed) * 0.1,
                   "image_proj.proj.bias": torch.zeros(4 * cross),
                   "image_proj.norm.weight": torch.ones(cross), "image_proj.norm.bias": torch.zeros(cross)}
        key_id = 1
        for name in build_pipeline(c).unet.attn_processors:
            if name.endswith("attn2.processor") and "motion_modules" not in name:
                width = 8 if name.startswith("down_blocks.0") or name.startswith("up_blocks.1") else 16
                weights[f"ip_adapter.{key_id}.to_k_ip.weight"] = torch.randn(width, cross) * 0.1
                weights[f"ip_adapter.{key_id}.to_v_ip.weight"] = torch.randn(width, cross) * 0.1
                key_id += 2
        save_file(weights, str(root / "ip-adapter" / "ip-adapter.safetensors"))
    return official


def test_plain_ip_adapter_load_would_break_the_i2v_processors(tmp_path):
    """Why the install order matters: diffusers rebuilds every attn1 processor from its class."""
    save_hub_layout(tmp_path)
    from diffusers import AnimateDiffPipeline, MotionAdapter

    pipe = AnimateDiffPipeline.from_pretrained(str(tmp_path / "stable-diffusion"),
                                               motion_adapter=MotionAdapter.from_pretrained(str(tmp_path / "motion-adapter")))
    i2v.install_i2v_adapter(pipe.unet, seed=0)
    with pytest.raises(TypeError):
        pipe.load_ip_adapter(str(tmp_path / "ip-adapter"), subfolder="", weight_name="ip-adapter.safetensors")


def test_hub_layout_loads_with_ip_adapter_and_converted_weights(tmp_path):
    from diffusers.models.attention_processor import IPAdapterAttnProcessor2_0

    official = save_hub_layout(tmp_path)
    model = load_hub(local_parts(SPEC, tmp_path))
    procs = model.pipe.unet.attn_processors
    spatial = [n for n in procs if i2v.is_spatial_self_attention(n)]
    assert spatial and all(isinstance(procs[n], i2v.I2VAttnProcessor) for n in spatial)
    cross = [n for n in procs if n.endswith("attn2.processor") and "motion_modules" not in n]
    assert cross and all(isinstance(procs[n], IPAdapterAttnProcessor2_0) for n in cross)
    assert model.uses_ip_adapter and model.skipped_keys == 1
    ours = model.adapter.public_state_dict()
    for key, value in official["state_dict"].items():
        if "motion_modules" in key:
            continue
        mapped = key.removeprefix("module.").replace("to_q_ff", "to_q_adapter").replace("to_out_ff", "to_out_adapter")
        assert torch.equal(ours[mapped], value)
    adapter_params, frozen_params = model.param_counts()
    assert adapter_params == sum(v.numel() for k, v in official["state_dict"].items() if "motion_modules" not in k)
    assert frozen_params > adapter_params
    # one short generation with the image prompt: frame 0 is still the encoded input
    from PIL import Image

    image = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    pil = Image.fromarray((image[0].permute(1, 2, 0).numpy() * 255).astype("uint8"))
    result = i2v.animate(model.pipe, image, "red circle moving left", motion=i2v.motion_settings(0.5), num_frames=4,
                         steps=2, guidance=2.0, seed=0, ip_adapter_image=pil)
    assert result.video.shape == (4, 3, 16, 16) and torch.isfinite(result.video).all()
    assert torch.equal(result.latents[:, :, 0], i2v.encode_first_frame(model.pipe, image))


def test_local_layout_without_ip_adapter_loads_without_it(tmp_path):
    save_hub_layout(tmp_path, with_ip=False)
    model = load_hub(local_parts(SPEC, tmp_path))
    assert not model.uses_ip_adapter and model.skipped_keys == 1


REPO = Path(__file__).resolve().parents[3]


def test_hub_ids_load_from_an_offline_hub_cache(tmp_path):
    """Every part by its hub id (the IP-Adapter in `models/` as on h94/IP-Adapter), from a hub
    cache with the network off: the `from_pretrained` / `hf_hub_download` path a Space takes."""
    from tests.hub_layout import install_in_hub_cache

    layout = tmp_path / "layout"
    official = save_hub_layout(layout)
    ip = tmp_path / "ip-hub" / "models"
    shutil.copytree(layout / "ip-adapter" / "image_encoder", ip / "image_encoder")
    shutil.copy(layout / "ip-adapter" / "ip-adapter.safetensors", ip / IP_ADAPTER_WEIGHT)
    adapter_dir = tmp_path / "adapter-hub"
    adapter_dir.mkdir()
    shutil.copy(layout / I2V_ADAPTER_FILE, adapter_dir / I2V_ADAPTER_FILE)
    cache = tmp_path / "cache"
    parts = hub_parts(SPEC)
    sources = {"frozen": layout / "stable-diffusion", "motion": layout / "motion-adapter",
               "ip_adapter": tmp_path / "ip-hub", "adapter": adapter_dir}
    for role, files in sources.items():
        install_in_hub_cache(cache, parts[role], files)
    code = ("import json; from adapters.i2v import SPEC; from adapters.i2v.loading import load_hub; "
            "from studio.loader import hub_parts; m = load_hub(hub_parts(SPEC)); "
            "print(json.dumps([m.uses_ip_adapter, m.skipped_keys, *m.param_counts()]))")
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(cache), HF_HOME=str(tmp_path / "home"))
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    uses_ip, skipped, adapter_params, frozen_params = json.loads(out.stdout.strip().splitlines()[-1])
    assert uses_ip and skipped == 1
    assert adapter_params == sum(v.numel() for k, v in official["state_dict"].items() if "motion_modules" not in k)
    assert frozen_params > adapter_params
