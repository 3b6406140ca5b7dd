"""What only DAS needs: a replaced layer is x + adapter(norm(x)) and a fresh adapter equals removal,
skipping really removes the layers' work (fewer calls, fewer multiply-adds), decoding with a KV
cache matches a full recomputation when layers are skipped, the search's reward rule moves the
scores of good skip sets up, and bad skip sets are refused in plain words."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from adapters.common.errors import BadInput
from adapters.das import testing
from adapters.das.config import DASConfig, make_request, parse_layers
from adapters.das.metrics import macs_per_token
from adapters.das.modeling import DAS, reinforce_update, sample_skip_set, skipping


def _logits(bundle, layers, mode):
    x, mask = testing._embeds(bundle, bundle.lm)
    with torch.no_grad(), skipping(bundle.state, layers, mode):
        return testing._last_logits(bundle.lm, x, mask)


def test_a_fresh_replacing_adapter_is_plain_removal_and_a_trained_one_is_not():
    bundle = testing.tiny_bundle(seed=0)
    removed = _logits(bundle, (1, 2), "removed")
    assert np.allclose(_logits(bundle, (1, 2), "adapters"), removed, atol=1e-6)
    assert np.abs(_logits(bundle, (1, 2), "full") - removed).max() > 1e-3
    testing.perturb_adapter(bundle, seed=1)
    assert np.abs(_logits(bundle, (1, 2), "adapters") - removed).max() > 1e-3


def test_a_replaced_layer_computes_x_plus_adapter_of_its_own_norm():
    bundle = testing.tiny_bundle(seed=0)
    testing.perturb_adapter(bundle, seed=1)
    wrapped = bundle.lm.model.layers[2]
    x = torch.randn(1, 5, 32)
    with torch.no_grad(), skipping(bundle.state, (2,), "adapters"):
        got = wrapped(x)
    adapter = bundle.das.adapters["2"]
    h = wrapped.layer.input_layernorm(x)
    expected = x + adapter.up[0](adapter.down(h))
    assert torch.allclose(got, expected, atol=1e-6)


def test_skipped_layers_do_no_work_and_cost_fewer_multiply_adds():
    bundle = testing.tiny_bundle(seed=0)
    calls = []
    hooks = [layer.layer.self_attn.register_forward_hook(lambda m, a, o, i=i: calls.append(i))
             for i, layer in enumerate(bundle.lm.model.layers)]
    _logits(bundle, (1, 3), "adapters")
    for h in hooks:
        h.remove()
    assert sorted(set(calls)) == [0, 2]
    full = macs_per_token(bundle.lm, bundle.das, (1, 3), "full")
    removed = macs_per_token(bundle.lm, bundle.das, (1, 3), "removed")
    adapters = macs_per_token(bundle.lm, bundle.das, (1, 3), "adapters")
    assert removed < adapters < full
    per_layer = full - bundle.lm.lm_head.weight.numel()
    assert full - removed == pytest.approx(per_layer / 2)  # two of four identical layers


def test_cached_greedy_decoding_with_skipped_layers_matches_recomputing_the_whole_prefix():
    bundle = testing.tiny_bundle(seed=0)
    testing.perturb_adapter(bundle, seed=1)
    vlm = bundle.vlm
    x = vlm.prompt_embeds("Name a shape.", None, bundle.lm)[None]
    with torch.no_grad(), skipping(bundle.state, (1, 3), "adapters"):
        cached = vlm.answer(["Name a shape."], [None], lm=bundle.lm, max_new=6)[0]
        ids = []
        embed = bundle.lm.get_input_embeddings()
        for _ in range(len(cached)):
            seq = torch.cat([x, embed(torch.tensor([ids], dtype=torch.long))], 1) if ids else x
            ids.append(int(bundle.lm(inputs_embeds=seq).logits[0, -1].argmax()))
    assert cached == ids[:len(cached)] and len(cached) > 0


def test_the_reward_rule_raises_the_scores_of_low_loss_skip_sets():
    das = DAS(DASConfig(dim=8, rank=2, num_layers=6, candidates=(1, 2, 3, 4, 5)))
    for _ in range(20):
        reinforce_update(das, [(1, 2), (3, 4), (2, 5)], [0.5, 2.0, 1.0], lr=1.0)
    p = das.probabilities()
    assert p[1] > p[2] > 0.5 > p[3] and p[1] > p[5] and p[4] < 0.5
    assert p[0] == 0  # never a candidate
    assert das.top_k(2) == (1, 2)


def test_skip_sets_are_drawn_without_repeats_and_follow_the_probabilities():
    g = torch.Generator().manual_seed(0)
    p = torch.tensor([0.9, 0.9, 0.9, 0.01, 0.01, 0.01])
    draws = [sample_skip_set(p, 3, g) for _ in range(200)]
    assert all(len(set(d)) == 3 for d in draws)
    assert sum(d == (0, 1, 2) for d in draws) > 150


def test_bad_skip_sets_are_refused_in_plain_words():
    picture = np.zeros((300, 200, 3), np.uint8)
    assert parse_layers(["3", 1, "3"]) == (1, 3) and parse_layers("4, 2") == (2, 4)
    with pytest.raises(BadInput, match="Layer 0 cannot be skipped"):
        parse_layers(["0"])
    with pytest.raises(BadInput, match="Layer 30 cannot be skipped"):
        parse_layers([30])
    with pytest.raises(BadInput, match="not a layer number"):
        parse_layers(["two"])
    with pytest.raises(BadInput, match="at most 20"):
        parse_layers(list(range(1, 25)))
    with pytest.raises(BadInput, match="from 1 to 20"):
        make_request("What colour?", picture, k=0)
    request = make_request("What colour?", picture, k=6, manual=["5"])
    assert request.image.shape == (224, 224, 3) and request.original_size == (200, 300) and request.manual == (5,)
