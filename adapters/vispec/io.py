"""The official ViSpec heads (``JLKang/ViSpec-*``) on their real target, LLaVA-1.5 through
transformers, decoded by the same engine and drafter as the bundled small VLM.

An official head is a ``config.json`` (the target's text config with one decoder layer) and a
state dict whose names are this package's (`ViSpecDraft` follows them): ``fc``, ``layers.0.*`` (no
input norm), ``imadpt.{q,k_proj,v_proj,o_proj}``, ``img_fc``; its ``embed_tokens.weight`` is the
target's own embedding table and is not used (the engine embeds with the target). The number of
queries is read from ``imadpt.q``, the MLP width from ``layers.0.mlp.gate_proj``; the head has no
trimmed vocabulary (it reads out through the target's full head).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from adapters.common.weights import load_strict
from adapters.vispec.config import DraftConfig
from adapters.vispec.modeling import ViSpecDraft

UNUSED_KEYS = ("embed_tokens.",)  # the target's own table, carried along in the official files
LLAVA_TEMPLATE = "USER: <image>\n{question} ASSISTANT:"


def official_config(config: dict, state: dict) -> DraftConfig:
    hidden = int(config["hidden_size"])
    heads = int(config["num_attention_heads"])
    return DraftConfig(hidden_size=hidden, num_attention_heads=heads,
                       num_key_value_heads=int(config.get("num_key_value_heads") or heads),
                       intermediate_size=int(state["layers.0.mlp.gate_proj.weight"].shape[0]),
                       rms_norm_eps=float(config.get("rms_norm_eps", 1e-6)), hidden_act=config.get("hidden_act", "silu"),
                       qkv_bias=bool(config.get("qkv_bias", False)), vision=True,
                       num_queries=int(state["imadpt.q"].shape[0]))


def official_draft(config: dict, state: dict) -> ViSpecDraft:
    """A `ViSpecDraft` holding an official head's weights (every name must match)."""
    state = {k: v for k, v in state.items() if not k.startswith(UNUSED_KEYS)}
    draft = ViSpecDraft(official_config(config, state))
    load_strict(draft, {k: v.float() for k, v in state.items()}, "official ViSpec head")
    return draft.eval().requires_grad_(False)


class LanguageView(nn.Module):
    """The text half of a LLaVA model in the layout the engine reads (``model.layers``,
    ``model.norm``, ``model.rotary_emb``, ``lm_head``, ``config``); it shares every weight."""

    def __init__(self, llava: nn.Module):
        super().__init__()
        self.model = llava.model.language_model
        self.lm_head = llava.lm_head
        self.config = llava.config.text_config

    def get_input_embeddings(self) -> nn.Module:
        return self.model.embed_tokens


@dataclass
class LlavaTarget:
    """LLaVA-1.5 (frozen) with its image processor and tokenizer: builds the engine's prompt."""

    llava: nn.Module
    tokenizer: object
    image_processor: object
    template: str = LLAVA_TEMPLATE

    def __post_init__(self):
        self.lm = LanguageView(self.llava)
        self.end_id = self.tokenizer.eos_token_id
        self.image_token = int(self.llava.config.image_token_index)

    def _ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    @torch.no_grad()
    def prompt(self, rgb, question: str):
        """(input embeddings T x H with the image features spliced in, image mask T, prompt length)."""
        config = self.llava.config
        pixels = self.image_processor(images=rgb, return_tensors="pt")["pixel_values"]
        dtype = self.lm.lm_head.weight.dtype
        features = self.llava.model.get_image_features(
            pixel_values=pixels.to(dtype), vision_feature_layer=config.vision_feature_layer,
            vision_feature_select_strategy=config.vision_feature_select_strategy)
        features = getattr(features, "pooler_output", features)
        features = (features[0] if isinstance(features, (list, tuple)) else features.reshape(-1, features.shape[-1]))
        # as LLaVA's processor does: the image placeholder repeated once per feature, the whole text
        # tokenized at once (with the tokenizer's own special tokens, e.g. LLaMA's bos)
        marker = self.tokenizer.convert_ids_to_tokens(self.image_token)
        text = self.template.format(question=question).replace("<image>", marker * features.shape[0])
        ids = list(self.tokenizer(text)["input_ids"])
        mask = torch.tensor([i == self.image_token for i in ids])
        if int(mask.sum()) != features.shape[0]:
            raise ValueError("the tokenizer split the image placeholder")
        embeds = self.lm.get_input_embeddings()(torch.tensor([0 if m else i for i, m in zip(ids, mask.tolist())]))
        embeds[mask] = features.to(embeds.dtype)
        return embeds, mask, len(ids)

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def frozen_params(self) -> int:
        return sum(p.numel() for p in self.llava.parameters())
