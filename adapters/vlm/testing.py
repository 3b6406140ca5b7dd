"""A tiny real VLM for tests: random 4-layer Llama, random 2-layer DINOv2, a byte-level tokenizer
with SmolLM2's chat markers, a fresh projector. Same classes and code paths as the real one."""
from __future__ import annotations

import torch

from adapters.vlm.model import VisionLanguageModel
from adapters.vlm.modeling import Projector, ProjectorConfig

SPECIAL = ("<|im_start|>", "<|im_end|>")
VOCAB = 256 + len(SPECIAL)


class ByteChatTokenizer:
    """Bytes as ids 0..255, the chat markers as 256 and 257; the interface `ChatLayout` and
    decoding use."""

    pad_token_id = None
    eos_token_id = 257
    chat_template = None

    def convert_tokens_to_ids(self, token: str) -> int:
        return 256 + SPECIAL.index(token)

    def _encode(self, text: str) -> list[int]:
        ids, rest = [], text
        while rest:
            hits = [(rest.find(s), s) for s in SPECIAL if s in rest]
            if not hits:
                ids += list(rest.encode("utf-8"))
                break
            at, marker = min(hits)
            ids += list(rest[:at].encode("utf-8")) + [self.convert_tokens_to_ids(marker)]
            rest = rest[at + len(marker):]
        return ids

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict:
        return {"input_ids": self._encode(text)}

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")


class TinyPrep:
    """ImagePrep's interface at any size: [0, 1] scaling only."""

    size = 224

    def __call__(self, rgb, size=None):
        from adapters.zoo.imaging import to_tensor

        return to_tensor(rgb, size or self.size, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


def tiny_vlm(seed: int = 0, grid: int = 2) -> VisionLanguageModel:
    from transformers import Dinov2Config, Dinov2Model, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
    config._attn_implementation = "sdpa"
    lm = LlamaForCausalLM(config).eval().requires_grad_(False)
    dino = Dinov2Model(Dinov2Config(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                                    patch_size=14, image_size=224)).eval().requires_grad_(False)
    projector = Projector(ProjectorConfig(vision_dim=16, text_dim=32, hidden=32, grid=grid)).eval().requires_grad_(False)
    return VisionLanguageModel(lm, ByteChatTokenizer(), projector, dino, TinyPrep(), name="tiny random VLM")


def frozen_vlm_parameters(vlm: VisionLanguageModel) -> dict[str, torch.Tensor]:
    """Copies of every frozen weight of a VLM (language model, vision encoder, projector), for the
    contract's "a training step never changes them"."""
    out = {f"lm.{n}": p.detach().clone() for n, p in vlm.lm.named_parameters()}
    out |= {f"dino.{n}": p.detach().clone() for n, p in vlm.dino.named_parameters()}
    out |= {f"projector.{n}": p.detach().clone() for n, p in vlm.projector.named_parameters()}
    return out
