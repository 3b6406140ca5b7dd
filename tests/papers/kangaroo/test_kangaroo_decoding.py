"""Kangaroo self-speculative decoding on a tiny random Llama (fast, no bundled weights needed).

Losslessness is checked in float64, where the different summation orders of "one token at a time"
and "several tokens in one verification pass" differ by ~1e-16 and cannot flip an argmax; the
reference is the full model's plain greedy decoding (ours, and transformers' `generate`).
"""
from __future__ import annotations

import itertools

import pytest
import torch

from adapters.common.errors import BadInput
from adapters.kangaroo.modeling import (
    KangarooAdapter,
    adapter_logits,
    adapter_training_step,
    kangaroo_decode,
    load_adapters,
    save_adapters,
    shallow_hidden_states,
    top1_agreement,
)
from adapters.speculative.engine import LayerRunner, greedy_decode

VOCAB = 61


def tiny_llama(seed: int = 0, layers: int = 6):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    config._attn_implementation = "sdpa"
    model = LlamaForCausalLM(config).double().eval()
    with torch.no_grad():
        # A random model is nearly uniform over its vocabulary; a larger final gain makes its
        # choices confident (as a trained model's are), so the threshold actually gates drafting.
        model.model.norm.weight.mul_(6.0)
    return model.requires_grad_(False)


def random_batch(generator: torch.Generator, batch: int = 8, length: int = 24) -> torch.Tensor:
    return torch.randint(1, VOCAB, (batch, length), generator=generator)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model():
    return tiny_llama()


@pytest.fixture(scope="module")
def trained(model):
    """Adapters for exits 1..3, distilled from the model on random token sequences."""
    torch.manual_seed(1)
    adapters = {k: KangarooAdapter(model, k).train() for k in (1, 2, 3)}
    optimizer = torch.optim.AdamW([p for a in adapters.values() for p in a.parameters()], lr=1e-2)
    generator = torch.Generator().manual_seed(2)
    for _ in range(80):
        adapter_training_step(model, adapters, optimizer, random_batch(generator))
    return {k: a.eval().requires_grad_(False) for k, a in adapters.items()}


def prompts(n: int, seed: int = 3) -> list[list[int]]:
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 12, (n,), generator=generator).tolist()
    return [torch.randint(1, VOCAB, (n_,), generator=generator).tolist() for n_ in lengths]


def test_untrained_adapter_is_the_bare_early_exit(model):
    adapter = KangarooAdapter(model, 2)
    ids = random_batch(torch.Generator().manual_seed(0), 2, 16)
    hidden, final = shallow_hidden_states(model, ids)
    # Index k is the output of the first k layers, as the decoding loop computes it.
    runner = LayerRunner(model, 16)
    torch.testing.assert_close(hidden[2], runner.run(runner.embed(ids), 0, 0, 2, None))
    torch.testing.assert_close(model.lm_head(final), model(ids).logits)
    torch.testing.assert_close(adapter_logits(model, adapter, hidden[2]), adapter_logits(model, None, hidden[2]), rtol=0, atol=0)
    assert sum(p.numel() for p in adapter.parameters()) < 0.2 * sum(p.numel() for p in model.parameters())


def test_fused_layers_and_adapter_compute_what_the_modules_compute(model, trained):
    """The runner's few-call layer and adapter forwards (used by greedy and Kangaroo alike) against
    the transformers modules themselves, over a cached prefix, a multi-token step and a single one."""
    from adapters.kangaroo.modeling import FusedAdapter
    from adapters.speculative.engine import KVCache as KangarooCache

    ids = random_batch(torch.Generator().manual_seed(5), 1, 12)
    fused, plain = LayerRunner(model, 16), LayerRunner(model, 16)
    plain.fused = [None] * plain.num_layers
    assert all(f is not None for f in fused.fused)
    assert fused.head_linear is not None
    adapter = trained[2]
    fused_adapter = FusedAdapter(adapter, fused.num_layers)
    caches = KangarooCache(fused.num_layers + 1, 16), KangarooCache(plain.num_layers + 1, 16)
    for start, stop in ((0, 8), (8, 11), (11, 12)):
        x = fused.embed(ids[:, start:stop])
        n = stop - start
        a = fused.run(x, start, 0, fused.num_layers, caches[0])
        b = plain.run(x, start, 0, plain.num_layers, caches[1])
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(fused.logits(a), model.lm_head(model.model.norm(b)), rtol=1e-12, atol=1e-12)
        mask = fused.causal_mask(start, n)
        torch.testing.assert_close(
            fused_adapter(a, fused.cos_heads[:, start:stop], fused.sin_heads[:, start:stop], mask, caches[0]),
            adapter(b, plain.position_embeddings(start, n), mask, caches[1]), rtol=1e-12, atol=1e-12)


def test_greedy_baseline_matches_transformers_generate(model):
    for prompt in prompts(4, seed=11):
        ours = greedy_decode(model, prompt, 20).tokens
        theirs = model.generate(torch.tensor([prompt]), max_new_tokens=20, do_sample=False, min_new_tokens=20)[0, len(prompt):].tolist()
        assert ours == theirs


def test_adapter_training_step_leaves_frozen_model_unchanged(model):
    before = {n: p.clone() for n, p in model.state_dict().items()}
    adapter = KangarooAdapter(model, 2).train()
    adapter_before = {n: p.clone() for n, p in adapter.state_dict().items()}
    optimizer = torch.optim.AdamW(adapter.parameters(), lr=1e-2)
    losses = adapter_training_step(model, {2: adapter}, optimizer, random_batch(torch.Generator().manual_seed(5)))
    assert losses[2] > 0
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, before[name]), name
    assert all(not p.requires_grad for p in model.parameters())
    changed = [n for n, t in adapter.state_dict().items() if not torch.equal(t, adapter_before[n])]
    assert "self_attn.o_proj.weight" in changed and len(changed) >= 4


def test_adapter_raises_top1_agreement_over_bare_exit(model, trained):
    held_out = random_batch(torch.Generator().manual_seed(99), 16, 24)
    for k, adapter in trained.items():
        bare = top1_agreement(model, None, k, held_out)
        with_adapter = top1_agreement(model, adapter, k, held_out)
        assert with_adapter > bare + 0.05, (k, bare, with_adapter)


def test_lossless_on_many_prompts_across_settings(model, trained):
    settings = list(itertools.product((1, 2, 3), (0.0, 0.4, 0.8), (1, 3, 8)))
    cases = prompts(24)
    totals = {"drafted": 0, "accepted": 0, "draft_alone_differs": 0}
    for i, prompt in enumerate(cases):
        reference = greedy_decode(model, prompt, 24).tokens
        # Each prompt under several settings, every setting on several prompts.
        for k, threshold, gamma in settings[i % 9:: 9] + [settings[(5 * i) % len(settings)]]:
            for adapter in (trained[k], None):
                out = kangaroo_decode(model, adapter, prompt, 24, threshold=threshold, gamma=gamma, exit_layer=k)
                assert out.tokens == reference, (prompt, k, threshold, gamma, adapter is None)
                assert len(out.sources) == len(out.tokens) and out.sources.count("draft") == out.accepted
                totals["drafted"] += out.drafted
                totals["accepted"] += out.accepted
        # The comparison can fail: the draft model alone (what a verifier that accepts everything
        # would emit) does not reproduce greedy on many prompts.
        if i < 8:
            alone = kangaroo_draft_only(model, trained[2], prompt, 24)
            totals["draft_alone_differs"] += alone != reference
    print(totals)
    assert 0 < totals["accepted"] < totals["drafted"], totals  # both acceptance and rejection happened
    assert totals["draft_alone_differs"] >= 4, totals


def kangaroo_draft_only(model, adapter, prompt, n):
    """Greedy decoding by the draft path alone (layers 1..k + adapter + head), full recompute."""
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(n):
            hidden, _ = shallow_hidden_states(model, torch.tensor([ids]))
            ids.append(int(adapter_logits(model, adapter, hidden[adapter.exit_layer])[0, -1].argmax()))
    return ids[len(prompt):]


def test_accepted_tokens_never_rerun_through_shallow_layers(model, trained):
    """Count positions each layer processes: every generated position passes layers 1..k exactly
    once, plus only the rejected drafts; verification runs the deep layers over the same states."""
    counts = {i: 0 for i in range(len(model.model.layers))}
    hooks = [layer.register_forward_hook(lambda mod, args, out, i=i: counts.__setitem__(i, counts[i] + args[0].shape[1]))
             for i, layer in enumerate(model.model.layers)]
    try:
        prompt = prompts(1, seed=8)[0]
        out = kangaroo_decode(model, trained[2], prompt, 30, threshold=0.0, gamma=5)
    finally:
        for hook in hooks:
            hook.remove()
    assert out.accepted > 0
    rejected = out.drafted - out.accepted
    expected = (len(prompt) - 1) + len(out.tokens) + rejected
    assert counts[0] == counts[1] == expected
    assert all(counts[i] == expected for i in range(2, len(model.model.layers)))
    assert out.layer_evals_per_token == pytest.approx((len(out.tokens) + rejected) * 6 / len(out.tokens))
    assert out.tokens_per_pass > 1.0


def test_end_of_text_stops_both_decoders(model, trained):
    prompt = prompts(1, seed=4)[0]
    reference = greedy_decode(model, prompt, 24).tokens
    eos = reference[5]
    cut = reference[: reference.index(eos) + 1]
    assert greedy_decode(model, prompt, 24, eos_id=eos).tokens == cut
    assert kangaroo_decode(model, trained[2], prompt, 24, threshold=0.0, gamma=4, eos_id=eos).tokens == cut


def test_adapter_file_round_trip(model, trained, tmp_path):
    save_adapters(tmp_path / "a.safetensors", trained, {"base": "tiny"})
    loaded = load_adapters(tmp_path / "a.safetensors", model)
    assert sorted(loaded) == [1, 2, 3]
    for k in loaded:
        for (name, a), (_, b) in zip(trained[k].state_dict().items(), loaded[k].state_dict().items()):
            assert torch.equal(a, b), name
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(Exception):  # noqa: B017  (whatever safetensors raises for a non-file)
        load_adapters(tmp_path / "bad.safetensors", model)


@pytest.mark.parametrize("kwargs, message", [
    (dict(prompt=[]), "prompt is empty"),
    (dict(max_new_tokens=0), "at least one new token"),
    (dict(prompt=list(range(1, 60)) * 2, max_new_tokens=20), "exceeds the model's 128-token context"),
    (dict(threshold=1.5), "threshold must lie between 0 and 1"),
    (dict(gamma=0), "gamma"),
    (dict(exit_layer=6, adapter=None), "exit layer must be between 1 and 5"),
])
def test_bad_settings_give_plain_messages(model, trained, kwargs, message):
    call = dict(adapter=trained[2], prompt=[3, 4, 5], max_new_tokens=8, threshold=0.5, gamma=4, exit_layer=None)
    call.update(kwargs)
    with pytest.raises(BadInput, match=message):
        kangaroo_decode(model, call.pop("adapter"), call.pop("prompt"), call.pop("max_new_tokens"), **call)


def test_adapter_for_a_layer_the_model_lacks_is_refused(model):
    with pytest.raises(BadInput, match="between 1 and 5"):
        KangarooAdapter(model, 6)


def test_the_engine_takes_other_drafters_and_stays_lossless(model):
    """The shared engine with a drafter that shares no layer (k=0: it sees only the embeddings, as a
    separate draft model would) still gives plain greedy's tokens; verification runs every layer."""
    from adapters.speculative.engine import Drafter, speculative_decode

    class EmbeddingDrafter(Drafter):
        shared_layers = 0

        def extend(self, shallow, position):
            return self.runner.norm(shallow)

    for prompt in prompts(4, seed=21):
        reference = greedy_decode(model, prompt, 16).tokens
        out = speculative_decode(model, EmbeddingDrafter(), prompt, 16, threshold=0.0, gamma=3)
        assert out.tokens == reference and out.drafted > 0
        rejected = out.drafted - out.accepted
        assert out.layer_evals_per_token == pytest.approx((len(out.tokens) + rejected) * 6 / len(out.tokens))


def test_a_trimmed_draft_head_stays_lossless_and_drafts_only_its_tokens(model, trained):
    """The draft head over part of the vocabulary (the LM head's rows for those ids): every accepted
    draft token is one of them, and the output is still plain greedy's."""
    vocab = torch.arange(0, VOCAB, 2)
    drafted = 0
    for prompt in prompts(6, seed=31):
        reference = greedy_decode(model, prompt, 20).tokens
        for adapter in (trained[2], None):
            out = kangaroo_decode(model, adapter, prompt, 20, threshold=0.0, gamma=4, exit_layer=2, draft_vocab=vocab)
            assert out.tokens == reference
            assert all(t % 2 == 0 for t, s in zip(out.tokens, out.sources) if s == "draft")
            drafted += out.drafted
    assert drafted > 0


def test_fast_linear_layouts_compute_the_linear_map_in_float32():
    """On a CPU a float32 weight runs as an input-major matmul for one row and through a pre-packed
    oneDNN weight for several; both must be the same map as `F.linear` (to float32 rounding), with
    and without a bias, for 2-D and 3-D inputs, and follow the weight when it changes."""
    import torch.nn.functional as F

    from adapters.speculative.engine import FastLinear, _onednn_linear_available

    generator = torch.Generator().manual_seed(3)
    for bias in (False, True):
        linear = torch.nn.Linear(96, 160, bias=bias).requires_grad_(False)
        fast = FastLinear(linear, "w", lambda: (linear.weight, linear.bias))
        assert fast.weight_t is not None
        assert (fast.packed is not None) == _onednn_linear_available()
        for shape in ((1, 96), (1, 1, 96), (4, 96), (1, 5, 96), (2, 7, 96)):
            x = torch.randn(*shape, generator=generator)
            got = fast(x)
            assert got.shape == (*shape[:-1], 160)
            torch.testing.assert_close(got, F.linear(x, linear.weight, linear.bias), rtol=1e-5, atol=1e-5)
        with torch.no_grad():
            linear.weight.mul_(-2.0)
        refreshed = FastLinear(linear, "w", lambda: (linear.weight, linear.bias))
        x = torch.randn(1, 3, 96, generator=generator)
        torch.testing.assert_close(refreshed(x), F.linear(x, linear.weight, linear.bias), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(refreshed(x[:, :1]), F.linear(x[:, :1], linear.weight, linear.bias), rtol=1e-5, atol=1e-5)
    half = torch.nn.Linear(8, 8).half()
    assert FastLinear(half, "w", lambda: (half.weight, half.bias)).weight_t is None  # float32 on a CPU only
