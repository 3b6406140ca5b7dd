"""Kangaroo: hub path (offline, tiny random checkpoint in hub layout), bundled weights, tab handler, API."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from adapters.kangaroo.loading import ADAPTER_FILE, load_bundled, load_hub
from adapters.kangaroo.modeling import KangarooAdapter, kangaroo_decode, save_adapters
from adapters.speculative.engine import greedy_decode
from studio.loader import ASSETS

BUNDLED = ASSETS / "kangaroo"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def hub_dir(tmp_path_factory) -> Path:
    """A tiny random Llama saved exactly as a hub repo would hold it, with a tokenizer and an adapter file."""
    from tokenizers import Tokenizer
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    directory = tmp_path_factory.mktemp("tiny-llama-hub")
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_file(str(BUNDLED / "tokenizer.json")),
                                        bos_token="<|endoftext|>", eos_token="<|endoftext|>")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        model.model.norm.weight.mul_(8.0)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    adapters = {k: KangarooAdapter(model, k) for k in (1, 2)}
    with torch.no_grad():
        for adapter in adapters.values():
            adapter.self_attn.o_proj.weight.normal_(0, 0.05)
    save_adapters(directory / ADAPTER_FILE, adapters, {"base": "tiny"})
    return directory


def test_hub_layout_loads_through_load_hub_and_decodes_losslessly(hub_dir):
    bundle = load_hub({"frozen": str(hub_dir), "adapter": str(hub_dir)})
    assert sorted(bundle.adapters) == [1, 2] and bundle.num_layers == 4
    assert all(not p.requires_grad for p in bundle.model.parameters())
    assert bundle.adapters[2].self_attn.o_proj.weight.abs().sum() > 0  # trained weights, not the zero init
    ids = bundle.codec.encode("def main():\n    ")
    assert ids[0] == bundle.codec.bos_id
    reference = greedy_decode(bundle.model, ids, 16).tokens
    out = kangaroo_decode(bundle.model, bundle.adapters[2], ids, 16, threshold=0.0, gamma=4)
    assert out.tokens == reference and out.drafted > 0


def test_hub_adapter_training_script_writes_a_loadable_file(hub_dir, tmp_path):
    import shutil

    from training.kangaroo.train import train_hub_adapters

    target = tmp_path / "model"
    shutil.copytree(hub_dir, target)
    (target / ADAPTER_FILE).unlink()
    frozen_before = {n: p.clone() for n, p in load_hub_model(target).state_dict().items()}
    stats = train_hub_adapters(str(target), target, exits=(1, 3), seed=0, steps=2, batch=2, length=32, lr=1e-3)
    assert stats["adapter_steps"] == 2
    bundle = load_hub({"frozen": str(target), "adapter": str(target)})
    assert sorted(bundle.adapters) == [1, 3]
    for name, tensor in bundle.model.state_dict().items():
        assert torch.equal(tensor, frozen_before[name]), name


def load_hub_model(directory):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(directory)


def test_missing_adapter_file_is_reported(hub_dir, tmp_path):
    import shutil

    target = tmp_path / "no-adapter"
    shutil.copytree(hub_dir, target)
    (target / ADAPTER_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=ADAPTER_FILE):
        load_hub({"frozen": str(target), "adapter": str(target)})


# --- bundled weights ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bundle():
    if not (BUNDLED / "model.safetensors").is_file():
        pytest.fail("bundled Kangaroo weights are missing: python -m training.kangaroo.train all --seed 0")
    return load_bundled(BUNDLED)


def test_bundled_files_are_small_and_described(bundle):
    for name in ("model.safetensors", ADAPTER_FILE, "tokenizer.json"):
        assert (BUNDLED / name).stat().st_size < 8_000_000, name
    card = (BUNDLED / "MODEL_CARD.md").read_text()
    figures = json.loads((BUNDLED / "figures.json").read_text())
    for k, row in figures["data"]["agreement"].items():
        assert f"{row['adapter_top1']:.1%}" in card, k
    assert "python -m training.kangaroo.train" in card


def test_bundled_adapter_beats_bare_exit_on_heldout_code(bundle):
    from adapters.kangaroo.data import heldout_prompts
    from adapters.kangaroo.modeling import top1_agreement

    text = "".join(heldout_prompts(12, seed=5))
    ids = torch.tensor([bundle.codec.encode(text)[:256]])
    for k in (1, 2):
        bare = top1_agreement(bundle.model, None, k, ids)
        with_adapter = top1_agreement(bundle.model, bundle.adapter(k), k, ids)
        assert with_adapter > bare + 0.03, (k, bare, with_adapter)


def test_bundled_kangaroo_matches_greedy_and_accepts_drafts(bundle):
    """float32 here: a mismatch is only tolerated where the greedy choice was a genuine near-tie."""
    from adapters.kangaroo.data import heldout_prompts

    accepted = drafted = 0
    for prompt in heldout_prompts(4, seed=7):
        ids = bundle.codec.encode(prompt)
        reference = greedy_decode(bundle.model, ids, 32)
        out = kangaroo_decode(bundle.model, bundle.adapter(2), ids, 32, threshold=0.2, gamma=4)
        if out.tokens != reference.tokens:
            first = next(i for i, (a, b) in enumerate(zip(out.tokens, reference.tokens)) if a != b)
            margin = top2_margin(bundle.model, ids + reference.tokens[:first])
            assert margin < 1e-4, (prompt, first, margin)
        accepted += out.accepted
        drafted += out.drafted
    assert drafted > 0 and accepted / drafted > 0.3


@torch.no_grad()
def top2_margin(model, ids) -> float:
    top = model(torch.tensor([ids])).logits[0, -1].topk(2).values
    return float(top[0] - top[1])


# --- tab handler -------------------------------------------------------------------------------

def test_tab_handler_outputs_and_bad_inputs(bundle):
    import gradio as gr

    from tabs import kangaroo as tab

    adapter_html, bare_html, stats, status, path = tab.run(tab.EXAMPLES[0][0], 24, 2, 0.2, 4, progress=lambda *a, **k: None)
    assert "Done in" in status and "identical to greedy" in status
    assert stats.count("|") > 20 and "acceptance rate" in stats
    result = json.loads(Path(path).read_text())
    assert len(result["tokens"]) == 24 and result["sources"].count("draft") > 0
    assert adapter_html.count('class="kg-draft"') == result["sources"].count("draft")
    assert adapter_html.count('class="kg-full"') == result["sources"].count("full")
    text = re.sub(r"<[^>]+>", "", adapter_html)
    import html as html_lib

    assert html_lib.unescape(text) == tab.EXAMPLES[0][0] + result["text"]
    for args, message in [
        (("   ", 8, 2, 0.5, 6), "prompt is empty"),
        (("x = 1\n" * 200, 8, 2, 0.5, 6), "at most 160"),
        (("def f():", 8, 9, 0.5, 6), "No adapter was trained for exit layer 9"),
        (("def f():", 8, 2, 1.5, 6), "threshold must lie between 0 and 1"),
        (("def f():", 500, 2, 0.5, 6), "from 1 to 128"),
        (("def f():", 8, 2, 0.5, 0), "gamma"),
    ]:
        with pytest.raises(gr.Error, match=message):
            tab.run(*args, progress=lambda *a, **k: None)
    for row, words in tab.BAD_INPUTS:  # the shared contract's rows too (2.5 is refused, not rounded)
        with pytest.raises(gr.Error, match=re.escape(words)):
            tab.run(*row, progress=lambda *a, **k: None)


@pytest.mark.e2e
def test_api_returns_identical_text_with_accepted_drafts(studio_client):
    from tabs.kangaroo import EXAMPLES

    adapter_html, bare_html, stats, status, path = studio_client.predict(*EXAMPLES[0], api_name="/kangaroo_generate")
    assert "Done in" in status and "identical to greedy: yes" in status
    result = json.loads(Path(path).read_text())
    assert result["identical_to_greedy"] is True and len(result["tokens"]) == EXAMPLES[0][1]
    assert result["acceptance_rate"]["adapter"] > result["acceptance_rate"]["bare_exit"]
    assert "kg-draft" in adapter_html and "identical to greedy" in stats
