"""The hub source offline: a tiny random LLaVA in transformers' layout (saved and read back by
`from_pretrained`, with its processor) and a head in the official ViSpec checkpoint layout (key names
and shapes written out here from the official code, not from this package's modules) load through
`loading.load_hub`, decode through the same engine, and stay identical to greedy decoding, which
matches transformers' own `generate` on the processor's prompt."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from adapters.common.weights import WeightMismatch
from adapters.vispec.config import Request
from adapters.vispec.inference import run
from adapters.vispec.loading import OfficialBundle, load_hub

pytestmark = pytest.mark.usefixtures("one_torch_thread")

WORDS = ["<unk>", "<s>", "</s>", "<image>", "USER:", "ASSISTANT:", "describe", "the", "picture", "a", "red",
         "circle", "on", "grass", "."] + [f"w{i}" for i in range(45)]
HIDDEN, HEADS, KV_HEADS, MLP, QUERIES = 32, 4, 2, 24, 2


def official_head_state(generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Every tensor of an official ViSpec head (cnets_ours.Model with one layer), by its own name."""
    d = HIDDEN // HEADS
    shapes = {
        "embed_tokens.weight": (len(WORDS), HIDDEN),
        "layers.0.self_attn.q_proj.weight": (HEADS * d, HIDDEN),
        "layers.0.self_attn.k_proj.weight": (KV_HEADS * d, HIDDEN),
        "layers.0.self_attn.v_proj.weight": (KV_HEADS * d, HIDDEN),
        "layers.0.self_attn.o_proj.weight": (HIDDEN, HEADS * d),
        "layers.0.mlp.gate_proj.weight": (MLP, HIDDEN),
        "layers.0.mlp.up_proj.weight": (MLP, HIDDEN),
        "layers.0.mlp.down_proj.weight": (HIDDEN, MLP),
        "layers.0.post_attention_layernorm.weight": (HIDDEN,),
        "fc.weight": (HIDDEN, 2 * HIDDEN), "fc.bias": (HIDDEN,),
        "imadpt.q": (QUERIES, HEADS, d),
        "imadpt.k_proj.weight": (HEADS * d, HIDDEN), "imadpt.v_proj.weight": (HEADS * d, HIDDEN),
        "imadpt.o_proj.weight": (HIDDEN, HEADS * d),
        "img_fc.weight": (HIDDEN, 2 * HIDDEN), "img_fc.bias": (HIDDEN,),
    }
    return {k: 0.2 * torch.randn(s, generator=generator) for k, s in shapes.items()}


@pytest.fixture(scope="module")
def hub_dirs(tmp_path_factory):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        PreTrainedTokenizerFast,
    )

    root = tmp_path_factory.mktemp("hub")
    torch.manual_seed(0)
    text = LlamaConfig(vocab_size=len(WORDS), hidden_size=HIDDEN, intermediate_size=64, num_hidden_layers=3,
                       num_attention_heads=HEADS, num_key_value_heads=KV_HEADS, max_position_embeddings=256,
                       bos_token_id=1, eos_token_id=2)
    vision = CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                              image_size=28, patch_size=14, projection_dim=16)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_index=3, image_seq_length=4,
                         vision_feature_layer=-2, vision_feature_select_strategy="default")
    llava = LlavaForConditionalGeneration(config).eval()
    with torch.no_grad():
        llava.model.language_model.norm.weight.mul_(6.0)  # confident choices, as a trained model's are
    llava.save_pretrained(root / "llava")
    vocab = {w: i for i, w in enumerate(WORDS)}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                        extra_special_tokens={"image_token": "<image>"})
    images = CLIPImageProcessor(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28})
    LlavaProcessor(image_processor=images, tokenizer=tokenizer, patch_size=14, num_additional_image_tokens=1,
                   vision_feature_select_strategy="default").save_pretrained(root / "llava")
    head = root / "head"
    head.mkdir()
    (head / "config.json").write_text(json.dumps(text.to_dict() | {"num_hidden_layers": 1}))
    torch.save(official_head_state(torch.Generator().manual_seed(1)), head / "pytorch_model.bin")
    return {"frozen": str(root / "llava"), "adapter": str(head)}


def test_official_head_loads_and_decodes_identically_to_greedy(hub_dirs):
    bundle = load_hub(hub_dirs)
    assert isinstance(bundle, OfficialBundle) and set(bundle.drafts) == {"vision"}
    assert bundle.drafts["vision"].config.num_queries == QUERIES
    picture = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    for gamma in (1, 3, 6):
        out = run(bundle, Request(picture, "describe the picture", 20, gamma, "vision"), device=torch.device("cpu"))
        assert out.image_tokens == 4 and list(out.drafted) == ["vision"]
        assert out.drafted["vision"].tokens == out.greedy.tokens


def test_greedy_on_the_built_prompt_matches_transformers_generate(hub_dirs):
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    bundle = load_hub(hub_dirs)
    picture = np.random.default_rng(1).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    out = run(bundle, Request(picture, "describe the picture", 12, 3, "vision", use_draft=False), device=torch.device("cpu"))
    processor = AutoProcessor.from_pretrained(hub_dirs["frozen"])
    llava = LlavaForConditionalGeneration.from_pretrained(hub_dirs["frozen"]).eval()
    inputs = processor(text="USER: <image>\ndescribe the picture ASSISTANT:", images=picture, return_tensors="pt")
    with torch.no_grad():
        generated = llava.generate(**inputs, max_new_tokens=12, do_sample=False, eos_token_id=2, pad_token_id=2)
    theirs = generated[0, inputs["input_ids"].shape[1]:].tolist()
    assert out.greedy.tokens == theirs[: len(out.greedy.tokens)] and len(out.greedy.tokens) >= min(len(theirs), 1)


def test_a_head_with_a_foreign_name_is_refused(hub_dirs, tmp_path):
    state = official_head_state(torch.Generator().manual_seed(2))
    state["img_fc.extra"] = state.pop("img_fc.bias")
    (tmp_path / "config.json").write_text((Path(hub_dirs["adapter"]) / "config.json").read_text())
    torch.save(state, tmp_path / "pytorch_model.bin")
    with pytest.raises(WeightMismatch):
        load_hub({"frozen": hub_dirs["frozen"], "adapter": str(tmp_path)})
