"""Extrapolating and Decoupling (EDG; Tian et al., CVPR 2025) on the image-to-video stack.

Three steps on top of a pretrained image-to-video model (theta_pre):

1. **Text into the temporal module.** A light adapter lets every motion-module self-attention also
   attend to the caption (`TemporalTextProcessor`: a new query of the temporal tokens, keys/values
   of the text embeddings, a zero-initialised output projection, so a fresh adapter is the
   pretrained model exactly). Fine-tuning the motion module and this adapter on captioned clips
   gives theta_sft: it follows the prompt's motion, usually with less of it.
2. **Extrapolate** away from the fine-tune to get motion back:
   theta_dyn = theta_pre + alpha * (theta_pre - theta_sft).
3. **Decouple** with DARE-sparsified task vectors (random drop, rescaled by 1 / keep rate):
   dyn = theta_pre + beta_dyn * deg(theta_dyn - theta_pre)
   con = alpha_con * theta_sft + beta_con * adt(theta_sft - theta_pre)
   and sample with `dyn` while t > T (where layout and motion form) and `con` for t <= T.
   Parameters only the fine-tune has (the text adapter) take adt's sparsified values in both, as
   the official merge does.

Merges run on the motion-module weights (and the text adapter); every other weight is shared. The
merged UNets are copies of the request's UNet, built once per setting and cached, so concurrent
requests never change each other's weights. No gradio import.
"""
from __future__ import annotations

import contextvars
import copy
import math
import threading
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from adapters.common.errors import BadInput
from adapters.common.weights import WeightMismatch
from adapters.i2v.config import EDG_LIMITS, EDGSettings
from adapters.i2v.modeling import ModuleProcessor, ProcessorSet

_TEXT = contextvars.ContextVar("edg_text", default=None)
MOTION_KEY = "motion_modules"


@contextmanager
def temporal_text_context(text_embeds: torch.Tensor | None):
    """Per-clip caption embeddings (clips, tokens, dim) for every temporal text processor called in
    this block; the batch of the UNet call is these clips in the same order (CFG: negative first)."""
    token = _TEXT.set(text_embeds)
    try:
        yield
    finally:
        _TEXT.reset(token)


def is_temporal_self_attention(processor_name: str) -> bool:
    return MOTION_KEY in processor_name and processor_name.endswith("attn1.processor")


class TemporalTextProcessor(ModuleProcessor):
    """A motion module's frozen temporal self-attention plus a cross-attention to the caption."""

    def __init__(self, attn, text_dim: int) -> None:
        super().__init__()
        from diffusers.models.attention_processor import AttnProcessor2_0

        inner, query_dim = attn.to_q.out_features, attn.to_q.in_features
        self.text_q = nn.Linear(query_dim, inner, bias=False)
        self.text_k = nn.Linear(text_dim, inner, bias=False)
        self.text_v = nn.Linear(text_dim, inner, bias=False)
        self.text_out = nn.Linear(inner, attn.to_out[0].out_features, bias=True)
        with torch.no_grad():
            self.text_q.weight.copy_(attn.to_q.weight)
        nn.init.zeros_(self.text_out.weight)
        nn.init.zeros_(self.text_out.bias)
        self._frozen = AttnProcessor2_0()

    def forward(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None):
        frozen = self._frozen(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        text = _TEXT.get()
        if text is None:
            return frozen
        tokens, frames, channels = hidden_states.shape  # (clips * h * w, frames, channels)
        clips = text.shape[0]
        if tokens % clips:
            raise RuntimeError(f"{tokens} temporal sequences do not split into {clips} clips")
        heads = attn.heads
        text = text.to(hidden_states.dtype)
        # every temporal token of a clip attends to that clip's caption: group them per clip rather
        # than repeating the caption for each of the h*w sequences
        query = self.text_q(hidden_states).reshape(clips, -1, heads, self.text_q.out_features // heads).transpose(1, 2)
        key = self.text_k(text).view(clips, -1, heads, query.shape[-1]).transpose(1, 2)
        value = self.text_v(text).view(clips, -1, heads, query.shape[-1]).transpose(1, 2)
        branch = F.scaled_dot_product_attention(query, key, value)
        branch = branch.transpose(1, 2).reshape(tokens, frames, -1)
        return frozen + self.text_out(branch) / attn.rescale_output_factor


class TemporalTextAdapter(ProcessorSet):
    """Every temporal text processor of one UNet."""

    what = "temporal text adapter"


def install_temporal_text_adapter(unet, text_dim: int, seed: int | None = None) -> TemporalTextAdapter:
    """Temporal text processors on every motion-module self-attention of `unet`; every other
    processor (spatial, I2V, cross-attention) is kept."""
    processors = dict(unet.attn_processors)
    targets = [name for name in processors if is_temporal_self_attention(name)]
    if not targets:
        raise ValueError("this UNet has no motion-module self-attention to adapt")
    if seed is not None:
        torch.manual_seed(seed)
    created = {}
    for name in targets:
        attn = unet.get_submodule(name[: -len(".processor")])
        created[name] = TemporalTextProcessor(attn, text_dim).to(device=attn.to_q.weight.device, dtype=attn.to_q.weight.dtype)
        processors[name] = created[name]
    unet.set_attn_processor(processors)
    adapter = TemporalTextAdapter(created)
    adapter.requires_grad_(False)
    return adapter


def adapter_prefix(key: str) -> bool:
    """Whether a state-dict key belongs to the temporal text adapter (not to the pretrained model)."""
    return any(f".{name}." in key for name in ("text_q", "text_k", "text_v", "text_out"))


def motion_state(unet) -> dict[str, torch.Tensor]:
    """The motion-module weights of a UNetMotionModel (what EDG merges), detached copies."""
    # attention processors that are modules (I2V, temporal text) show up in the UNet's state dict
    # under `.processor.`: they are adapters, not the model
    return {k: v.detach().clone() for k, v in unet.state_dict().items() if MOTION_KEY in k and ".processor." not in k}


# --- the merges ------------------------------------------------------------------------------------

def check_settings(settings: EDGSettings) -> EDGSettings:
    for field in fields(settings):
        value = getattr(settings, field.name)
        low, high = EDG_LIMITS[field.name]
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or not low <= value <= high:
            raise BadInput(f"{field.name} must be a number between {low} and {high} (got {value!r}).")
    return settings


def extrapolate(pre: Mapping[str, torch.Tensor], sft: Mapping[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    """theta_pre + alpha * (theta_pre - theta_sft) over the pretrained model's keys."""
    return {k: pre[k] + alpha * (pre[k] - sft[k]) for k in pre}


def dare(delta: Mapping[str, torch.Tensor], keep: float, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Drop And REscale: keep each entry of a matrix with probability `keep`, divide by `keep`.
    Vectors (biases, norms) stay whole, as in the official sparsifier."""
    out = {}
    for key in sorted(delta):
        tensor = delta[key]
        if keep >= 1 or tensor.ndim < 2:
            out[key] = tensor.clone()
            continue
        mask = torch.rand(tensor.shape, generator=generator) < keep
        out[key] = tensor * mask.to(tensor.dtype) / keep
    return out


def decouple(pre: Mapping[str, torch.Tensor], sft: Mapping[str, torch.Tensor], settings: EDGSettings
             ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(dynamic, controllable) weights. `sft` may hold keys `pre` lacks (the text adapter)."""
    missing = sorted(set(pre) - set(sft))
    if missing:
        raise WeightMismatch(f"The EDG fine-tune weights do not match the model: {len(missing)} motion-module "
                             f"weights missing, e.g. {missing[0]}.")
    generator = torch.Generator().manual_seed(int(settings.seed))
    dynamic_full = extrapolate(pre, sft, settings.alpha)
    deg = dare({k: dynamic_full[k] - pre[k] for k in pre}, settings.keep, generator)
    adt = dare({k: sft[k] - pre[k] if k in pre else sft[k] for k in sft}, settings.keep, generator)
    dynamic = {k: pre[k] + settings.beta_dyn * deg[k] for k in pre}
    controllable = {k: settings.alpha_con * sft[k] + settings.beta_con * adt[k] for k in pre}
    for key in set(sft) - set(pre):
        dynamic[key] = adt[key]
        controllable[key] = adt[key]
    return dynamic, controllable


# --- models for sampling ---------------------------------------------------------------------------

@dataclass
class DecoupledUNets:
    """The UNet for each denoising step: `dynamic` while t > switch_t, `controllable` after."""

    dynamic: nn.Module
    controllable: nn.Module
    switch_t: int

    def for_timestep(self, t) -> nn.Module:
        return self.dynamic if int(t) > self.switch_t else self.controllable


def unet_with(unet, weights: Mapping[str, torch.Tensor], text_dim: int) -> nn.Module:
    """A copy of `unet` with a temporal text adapter installed and `weights` (motion-module keys of
    the model, and adapter keys) loaded; every key must land somewhere."""
    copy_ = copy.deepcopy(unet)
    adapter = install_temporal_text_adapter(copy_, text_dim)
    own = {k: v for k, v in weights.items() if not adapter_prefix(k)}
    unknown = sorted(set(own) - set(copy_.state_dict()))
    if unknown:
        raise WeightMismatch(f"The EDG fine-tune weights do not match the model: {len(unknown)} weights the UNet "
                             f"does not have, e.g. {unknown[0]}.")
    copy_.load_state_dict(own, strict=False)
    adapter.load_public_state_dict({k: v for k, v in weights.items() if adapter_prefix(k)})
    return copy_.requires_grad_(False).eval()


class MergeCache:
    """Merged UNets per (settings) for one bundle: building one copies the UNet, so the last few
    are kept; a lock keeps two requests from building the same pair at once."""

    def __init__(self, size: int = 2):
        self.size = size
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key, build):
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            value = build()
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)
            return value


def models_for(bundle, settings: EDGSettings, device="cpu") -> tuple[DecoupledUNets, DecoupledUNets]:
    """(the fine-tune alone, EDG's dynamic-then-controllable pair) for a bundle that carries a
    fine-tune (`edg_sft`, `edg_text_dim`, `merges`), each built once per setting and cached."""
    unet, sft, text_dim = bundle.pipe.unet, bundle.edg_sft, bundle.edg_text_dim

    def fine_tuned():
        return unet_with(unet, sft, text_dim).to(device)

    def decoupled():
        dynamic, controllable = decouple(motion_state(unet), sft, settings)
        return DecoupledUNets(unet_with(unet, dynamic, text_dim).to(device),
                              unet_with(unet, controllable, text_dim).to(device), settings.switch_t)

    sft_unet = bundle.merges.get(("sft", str(device)), fine_tuned)
    return DecoupledUNets(sft_unet, sft_unet, settings.switch_t), bundle.merges.get(("edg", settings, str(device)), decoupled)


def check_fine_tune(unet, sft: Mapping[str, torch.Tensor]) -> None:
    """A fine-tune must carry exactly the model's motion-module weights (same shapes) plus adapter
    weights: checked when the bundle loads, so a wrong file is a sentence, never a half-merged model."""
    own = {k: tuple(v.shape) for k, v in unet.state_dict().items() if MOTION_KEY in k and ".processor." not in k}
    given = {k: tuple(v.shape) for k, v in sft.items() if not adapter_prefix(k)}
    if own != given or not any(adapter_prefix(k) for k in sft):
        wrong = sorted(set(own) ^ set(given)) or sorted(k for k in own if own[k] != given.get(k))
        raise WeightMismatch(f"The EDG fine-tune weights do not match the model (e.g. {wrong[:2]}).")
