"""Kangaroo: hub path (offline, tiny random Llama in hub layout), the bundled SmolLM2 stack, tab handler, API."""
from __future__ import annotations

import html as html_lib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from adapters.kangaroo import SPEC
from adapters.kangaroo.loading import ADAPTER_FILE, load_bundled, load_hub
from adapters.kangaroo.modeling import KangarooAdapter, kangaroo_decode, save_adapters
from adapters.speculative.engine import greedy_decode
from studio.loader import ASSETS, hub_parts

BUNDLED = ASSETS / "kangaroo"
REPO = Path(__file__).resolve().parents[3]
CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_tokenizer():
    """A byte-level BPE trained in memory on a few lines, with SmolLM2's chat markers and a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(["def main():\n    return 0\n", "The capital of France is Paris.", "import os\n"] * 20,
                            trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                        pad_token="<|im_end|>")
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def save_tiny_hub_model(directory: Path) -> None:
    """A tiny random Llama saved exactly as a hub repo holds it (weights, config, tokenizer)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = tiny_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        model.model.norm.weight.mul_(8.0)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)


def save_tiny_adapter(model_dir: Path, out_dir: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    adapters = {k: KangarooAdapter(model, k) for k in (1, 2)}
    with torch.no_grad():
        for adapter in adapters.values():
            adapter.self_attn.o_proj.weight.normal_(0, 0.05)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_adapters(out_dir / ADAPTER_FILE, adapters, {"base": "tiny"}, draft_vocab=torch.arange(0, 300))


@pytest.fixture(scope="module")
def hub_dir(tmp_path_factory) -> Path:
    """A tiny random Llama in hub layout with its own adapter file beside it."""
    directory = tmp_path_factory.mktemp("tiny-llama-hub")
    save_tiny_hub_model(directory)
    save_tiny_adapter(directory, directory)
    return directory


def test_hub_layout_loads_through_load_hub_and_decodes_losslessly(hub_dir):
    bundle = load_hub({"frozen": str(hub_dir), "adapter": str(hub_dir)})
    assert sorted(bundle.adapters) == [1, 2] and bundle.num_layers == 4
    assert bundle.draft_vocab is not None and len(bundle.draft_vocab) == 300
    assert all(not p.requires_grad for p in bundle.model.parameters())
    assert bundle.adapters[2].self_attn.o_proj.weight.abs().sum() > 0  # trained weights, not the zero init
    ids = bundle.codec.encode_chat("def main():")
    assert ids[0] == bundle.codec.encode("<|im_start|>")[0] and bundle.codec.bos_id is None
    reference = greedy_decode(bundle.model, ids, 16).tokens
    for vocab in (bundle.draft_vocab, None):
        out = kangaroo_decode(bundle.model, bundle.adapters[2], ids, 16, threshold=0.0, gamma=4, draft_vocab=vocab)
        assert out.tokens == reference and out.drafted > 0


def test_the_hub_ids_load_offline_from_a_hub_layout_cache(tmp_path):
    """The SPEC's frozen part by its hub id (a tiny random Llama stands in for it in an offline hub
    cache) and an adapter by hub id: the `from_pretrained` / `hf_hub_download` path of a Space."""
    from tests.hub_layout import install_in_hub_cache

    parts = hub_parts(SPEC)
    assert parts["frozen"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    model_dir, adapter_dir, cache = tmp_path / "model", tmp_path / "adapter", tmp_path / "cache"
    save_tiny_hub_model(model_dir)
    save_tiny_adapter(model_dir, adapter_dir)
    install_in_hub_cache(cache, parts["frozen"], model_dir)
    install_in_hub_cache(cache, "studio-test/tiny-kangaroo-adapter", adapter_dir)
    code = ("import json; from adapters.kangaroo import SPEC; from adapters.kangaroo.loading import load_hub; "
            "from studio.loader import hub_parts; b = load_hub(hub_parts(SPEC)); "
            "print(json.dumps([b.name, sorted(b.adapters), b.num_layers, len(b.draft_vocab), *b.param_counts()]))")
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(cache), HF_HOME=str(tmp_path / "home"),
               STUDIO_HUB_KANGAROO_ADAPTER="studio-test/tiny-kangaroo-adapter", PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    name, exits, layers, vocab, adapter_params, frozen_params = json.loads(out.stdout.strip().splitlines()[-1])
    assert name == parts["frozen"] and exits == [1, 2] and layers == 4 and vocab == 300
    assert 0 < adapter_params < frozen_params


def test_the_adapter_part_is_this_repositorys_bundled_file():
    part = hub_parts(SPEC)["adapter"]
    assert SPEC.part("adapter").bundled and Path(part).resolve() == BUNDLED.resolve()
    assert (BUNDLED / ADAPTER_FILE).is_file()


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


# --- the bundled stack: SmolLM2-135M-Instruct + the adapter trained here -----------------------

@pytest.fixture(scope="module")
def bundle():
    if not (BUNDLED / ADAPTER_FILE).is_file():
        pytest.fail("the bundled Kangaroo adapter is missing: python -m training.kangaroo.train all --seed 0")
    return load_bundled(BUNDLED)


def test_bundled_stack_is_smollm2_with_a_small_adapter_file(bundle):
    config = bundle.model.config
    assert (bundle.num_layers, config.hidden_size, config.vocab_size) == (30, 576, 49152)
    assert 130e6 < bundle.frozen_params() < 140e6
    assert (BUNDLED / ADAPTER_FILE).stat().st_size < 8_000_000
    assert not (BUNDLED / "model.safetensors").exists()  # the frozen model is never stored in git
    assert bundle.draft_vocab is not None and 4096 <= len(bundle.draft_vocab) <= 8192
    assert bundle.codec.eos_id in bundle.draft_vocab.tolist()
    card = (BUNDLED / "MODEL_CARD.md").read_text()
    figures = json.loads((BUNDLED / "figures.json").read_text())
    assert figures["data"]["main"]["identical"] == figures["data"]["main"]["prompts"]
    assert "python -m training.kangaroo.train" in card and "SmolLM2" in card


def test_bundled_adapter_beats_the_bare_exit_on_heldout_answers(bundle):
    log = json.loads((BUNDLED / "training_log.json").read_text())
    row = log["agreement"][str(log["exit"])]
    assert row["adapter"]["trimmed_head_top1"] > row["bare_exit"]["full_head_top1"] + 0.2


def test_bundled_kangaroo_matches_greedy_and_accepts_drafts(bundle):
    from adapters.kangaroo.data import instruction_prompts

    accepted = drafted = 0
    for _, message in instruction_prompts("heldout", 2, seed=3):
        ids = bundle.codec.encode_chat(message)
        reference = greedy_decode(bundle.model, ids, 24, eos_id=bundle.codec.eos_id)
        out = kangaroo_decode(bundle.model, bundle.adapter(bundle.default_exit), ids, 24, threshold=0.2, gamma=4,
                              eos_id=bundle.codec.eos_id, draft_vocab=bundle.draft_vocab)
        assert out.tokens == reference.tokens
        accepted += out.accepted
        drafted += out.drafted
    assert drafted > 0 and accepted / drafted > 0.3


# --- tab handler -------------------------------------------------------------------------------

def test_tab_handler_outputs_and_bad_inputs(bundle):
    import gradio as gr

    from tabs import kangaroo as tab

    seen = []
    adapter_html, bare_html, stats, status, path = tab.run(tab.EXAMPLES[0][0], 24, tab.DEFAULT_EXIT, 0.2, 4, True,
                                                           progress=lambda *a, **k: seen.append(a))
    assert "Done in" in status and "identical to greedy: yes" in status
    assert stats.count("|") > 20 and "acceptance rate" in stats
    assert len(seen) >= 24  # progress per token
    result = json.loads(Path(path).read_text())
    assert result["identical_to_greedy"] and result["settings"]["chat_template"] is True
    assert len(result["tokens"]) <= 24 and result["sources"].count("draft") > 0
    assert adapter_html.count('class="kg-draft"') == result["sources"].count("draft")
    assert adapter_html.count('class="kg-full"') == result["sources"].count("full")
    text = html_lib.unescape(re.sub(r"<[^>]+>", "", adapter_html))
    assert text == tab.prompt_view(tab.EXAMPLES[0][0], True) + result["text"]
    for row, words in tab.BAD_INPUTS:  # the shared contract's rows too (2.5 is refused, not rounded)
        with pytest.raises(gr.Error, match=re.escape(words)):
            tab.run(*row, progress=lambda *a, **k: None)


@pytest.mark.e2e
def test_api_returns_identical_text_with_accepted_drafts(studio_client):
    from tabs.kangaroo import EXAMPLES

    adapter_html, bare_html, stats, status, path = studio_client.predict(*EXAMPLES[0], api_name="/kangaroo_generate")
    assert "Done in" in status and "identical to greedy: yes" in status
    result = json.loads(Path(path).read_text())
    assert result["identical_to_greedy"] is True and len(result["tokens"]) <= EXAMPLES[0][1]
    assert result["acceptance_rate"]["adapter"] > result["acceptance_rate"]["bare_exit"]
    assert "kg-draft" in adapter_html and "identical to greedy" in stats
