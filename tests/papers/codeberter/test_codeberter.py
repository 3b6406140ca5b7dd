"""CodeBERTER: exact token types from tokenize/ast, subword alignment, exact injected bugs, the
stacked adapters (the NER adapter stays frozen under the task adapter), the hooks leave the shared
frozen model untouched, the bundled model's held-out accuracy, and the tab's rendering."""
from __future__ import annotations

import random

import pytest
import torch

from adapters.codeberter import data
from adapters.codeberter.config import make_request
from adapters.codeberter.labels import TYPE_INDEX, python_tokens
from adapters.common.errors import BadInput

SNIPPET = '''import os.path as osp
from json import loads

class Box(Base):
    def open(self, name, *, mode="r"):
        """Open it."""
        size = len(name) + 2  # chars
        return osp.join(self.root, loads(name), open(mode))
'''


def kinds(source: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for tok in python_tokens(source):
        out.setdefault(tok.text, set()).add(tok.kind)
    return out


def test_token_types_come_from_tokenize_and_the_syntax_tree():
    k = kinds(SNIPPET)
    assert k["import"] == {"keyword"} and k["class"] == {"keyword"} and k["return"] == {"keyword"}
    assert k["osp"] == {"imported"} and k["loads"] == {"imported"} and k["os"] == {"imported"}
    assert k["Box"] == {"class"} and k["Base"] == {"variable"}
    assert k["self"] == {"parameter"} and k["name"] == {"parameter"} and k["mode"] == {"parameter"}
    assert k["size"] == {"variable"} and k["len"] == {"builtin"}
    assert k["root"] == {"attribute"} and k["join"] == {"attribute"} and k["path"] == {"attribute"}
    # the file defines a function `open`, so the name is that function wherever it is read, not the builtin
    assert k["open"] == {"function"}
    assert k['"""Open it."""'] == {"string"} and k['"r"'] == {"string"} and k["2"] == {"number"}
    assert k["# chars"] == {"comment"} and k["+"] == {"operator"} and k["("] == {"delimiter"}


def test_labels_sit_on_the_first_subword_of_each_token():
    from adapters.zoo import load_minilm

    tokenizer = load_minilm()[1]
    code = "def get_value(self):\n    return self.cache_size\n"
    tokens = python_tokens(code)
    encoded = data.encode(tokenizer, code, tokens, 64)
    labelled = [i for i, label in enumerate(encoded.labels) if label != data.IGNORE]
    assert len(labelled) == len(tokens) == sum(k >= 0 for k in encoded.owned)
    for tok, k in zip(tokens, encoded.owned):
        start, end = encoded.offsets[k]
        assert start == tok.start and encoded.labels[k] == TYPE_INDEX[tok.kind]
    # `get_value` is several subwords: only its first is labelled
    first = encoded.owned[1]
    assert encoded.labels[first] == TYPE_INDEX["function"] and encoded.labels[first + 1] == data.IGNORE


@pytest.mark.parametrize("kind", ["variable misuse", "operator swap"])
def test_an_injected_bug_has_exact_ground_truth(kind):
    code = "def area(width, height):\n    if width > 0 and height > 0:\n        return width * height\n    return width + height\n"
    for seed in range(20):
        bug = data.inject(code, random.Random(seed), kind)
        assert bug is not None and bug.kind == kind and bug.wrong != bug.right
        assert bug.code[bug.start:bug.end] == bug.wrong
        assert bug.code[:bug.start] + bug.right + bug.code[bug.end:] == code
        if kind == "operator swap":
            assert bug.right in data.SWAPS and bug.wrong in data.SWAPS[bug.right]
        else:
            # a read of a variable, after the header, never an assignment target
            assert bug.start > code.index(":") and bug.right in ("width", "height")


def test_no_misuse_without_two_names():
    assert data.inject("def one(x):\n    return x\n", random.Random(0), "variable misuse") is None


def test_requests_are_checked_before_any_work():
    with pytest.raises(BadInput, match="cannot parse"):
        make_request("def f(:\n", 1.0)
    with pytest.raises(BadInput, match="between 0 and"):
        make_request("x = 1\n", -0.5)
    assert make_request("x = 1\n", 0).scale == 0.0


def test_adapters_leave_the_shared_model_unhooked_and_stack_in_order():
    from adapters.codeberter import testing

    bundle = testing.tiny_bundle(seed=0)
    testing.perturb_adapter(bundle, seed=3)
    ids, mask, _ = testing._batch(bundle)
    with torch.no_grad():
        enc = bundle.encoder
        enc.hidden(ids, mask, [(bundle.ner, 1.0)])
        plain = enc.model(input_ids=ids, attention_mask=mask).last_hidden_state
        assert torch.equal(plain, enc.hidden(ids, mask))  # no hook left behind
        half = enc.hidden(ids, mask, [(bundle.ner, 0.5)])
        full = enc.hidden(ids, mask, [(bundle.ner, 1.0)])
        assert (half - plain).abs().max() > 1e-4 and (full - half).abs().max() > 1e-4


def test_a_bug_training_step_moves_the_task_adapter_and_never_the_ner_adapter():
    from adapters.codeberter import testing
    from adapters.codeberter.modeling import bug_batch, bug_loss

    bundle = testing.tiny_bundle(seed=0)
    testing.perturb_adapter(bundle, seed=1)
    bundle.ner.requires_grad_(False)
    task, head = bundle.bug[True]
    ner_before = {n: p.clone() for n, p in bundle.ner.state_dict().items()}
    task_before = {n: p.clone() for n, p in task.state_dict().items()}
    bug = data.inject(testing.CODE, random.Random(0), "variable misuse")
    example = data.encode_bug(bundle.tokenizer, bug, 96)
    ids, mask, valid, location, pointer_mask, operator = bug_batch([example], 0, bundle.special_ids)
    optimizer = torch.optim.AdamW(list(task.parameters()) + list(head.parameters()), lr=1e-2)
    hidden = bundle.encoder.hidden(ids, mask, [(bundle.ner, 1.0), (task, 1.0)])
    loss, loc, repair = bug_loss(head, hidden, valid, location, pointer_mask, operator)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss) and loc > 0 and repair > 0
    assert all(torch.equal(bundle.ner.state_dict()[n], t) for n, t in ner_before.items())
    assert any(not torch.equal(task.state_dict()[n], t) for n, t in task_before.items())


@pytest.mark.slow
def test_bundled_ner_adapter_beats_the_linear_probe_on_held_out_files():
    from adapters.codeberter.config import MAX_CHARS, MAX_LEN
    from adapters.codeberter.loading import load_bundled
    from adapters.codeberter.metrics import type_accuracy
    from studio.loader import ASSETS

    torch.set_num_threads(1)
    bundle = load_bundled(ASSETS / "codeberter")
    _, heldout = data.split_files()
    windows = data.type_examples(bundle.tokenizer, heldout[:6], MAX_LEN, MAX_CHARS, limit=40, seed=0)
    adapter = type_accuracy(bundle.encoder, bundle.type_head, [(bundle.ner, 1.0)], windows)["token"]
    probe = type_accuracy(bundle.encoder, bundle.probe_head, [], windows)["token"]
    off = type_accuracy(bundle.encoder, bundle.type_head, [], windows)["token"]
    # measured in the bench on 240 windows: adapter 96.0%, probe 91.8%, adapter head on frozen features 75.5%
    assert adapter > 0.9 and adapter > probe + 0.02 and adapter > off + 0.05


def test_tab_overlay_escapes_code_and_marks_wrong_types():
    from tabs.codeberter import bug_markdown, overlay_html

    code = "x = '<b>'\n"
    spans = tuple((t.start, t.end, t.text, t.kind) for t in python_tokens(code))
    page = overlay_html(code, spans, ["variable", "operator", "number"])
    assert "<b>" not in page and "&lt;b&gt;" in page
    assert page.count("line-through") == 1 and "predicted number, truth string" in page

    class Guess:
        start, end, token, fix, confidence = 0, 1, "x", "y", 0.5

    known = "line 1, column 1: `x` should be `y` (variable misuse)"
    assert "place and fix" in bug_markdown(code, {"a": Guess()}, known)
    assert "(no known bug)" in bug_markdown(code, {"a": Guess()}, "")


def test_a_causal_lm_cut_to_its_first_blocks_is_a_view_and_a_fresh_adapter_is_identity():
    from transformers import LlamaConfig, LlamaForCausalLM

    from adapters.codeberter.modeling import AdapterSet, FrozenEncoder

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2)
    model = LlamaForCausalLM(config).eval().requires_grad_(False)
    encoder = FrozenEncoder(model, "llama", num_layers=2)
    ids = torch.randint(0, 64, (2, 9))
    mask = torch.ones_like(ids)
    with torch.no_grad():
        reference = model.model.norm(model(ids, output_hidden_states=True).hidden_states[2])
        assert torch.allclose(encoder.hidden(ids, mask), reference, atol=1e-5)
        assert torch.allclose(encoder.hidden(ids, mask, [(AdapterSet(32, 2, 8), 1.0)]), reference, atol=1e-5)
    assert len(model.model.layers) == 4 and model.config.num_hidden_layers == 4
    assert sum(p.numel() for p in encoder.used_parameters()) < sum(p.numel() for p in model.parameters())
