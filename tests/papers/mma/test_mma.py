"""What only MMA and its VLM substrate need: held-out compositions stay held out, answers match the
drawn scene, the chat layout is SmolLM2's own template, and the router really routes."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from adapters.common.errors import BadInput
from adapters.mma import testing
from adapters.mma.config import make_request
from adapters.mma.modeling import IMAGE, TEXT, adapted, route_weights
from adapters.vlm import scenes


def test_held_out_compositions_never_appear_in_training_scenes_and_always_in_held_out_ones():
    for i in range(80):
        objs = scenes.make_scene(i, "train").objects
        assert not {(o.colour, o.shape) for o in objs} & scenes.HELDOUT_PAIRS
        assert not {(s, sum(o.shape == s for o in objs)) for s in scenes.SHAPES} & scenes.HELDOUT_COUNTS
    for i in range(30):
        scene = scenes.make_scene(i, "heldout")
        assert scenes.allowed("heldout", scene.objects) and scene.qa


def test_answers_match_the_drawn_objects():
    scene = next(s for s in (scenes.make_scene(i, "train") for i in range(50))
                 if any(q.kind == "colour" for q in scene_qa(s)))
    for qa in scene.qa:
        if qa.kind == "colour":
            shape = qa.question.split()[-1].rstrip("?")
            (obj,) = [o for o in scene.objects if o.shape == shape]
            assert qa.answer == obj.colour
            # the pixel at the object's centre has the named colour
            centre = scene.image[obj.y, obj.x]
            assert np.abs(centre.astype(int) - np.array(scenes.COLOURS[obj.colour])).max() <= 1
        if qa.kind == "count":
            shape = qa.question.split()[2][:-1]
            assert int(qa.answer) == sum(o.shape == shape for o in scene.objects)


def scene_qa(scene):
    return scene.qa


@pytest.mark.slow  # loads the real tokenizer (transformers import)
def test_text_only_layout_is_smollm2s_chat_template():
    pytest.importorskip("transformers")
    from transformers import AutoTokenizer

    from adapters.vlm.modeling import ChatLayout
    from adapters.zoo import smollm2

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(smollm2.cached_dir()))
    except Exception as exc:  # the model package is not installed here
        pytest.skip(f"SmolLM2 unavailable: {type(exc).__name__}")
    ids, slot, labels = ChatLayout(tokenizer).encode([("What is the capital of France?", None)], 0)
    expected = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                             add_generation_prompt=True, tokenize=True, return_dict=False)
    assert ids == list(expected) and slot is None and set(labels) == {-100}


def test_router_sends_text_and_image_prompts_down_different_paths():
    bundle = testing.tiny_bundle(seed=0)
    testing.perturb_adapter(bundle, seed=3)
    weights = route_weights(bundle.lm, bundle.mma, bundle.state, torch.tensor([TEXT, IMAGE]), 5.0)
    bundle.state.enabled = False
    for w in weights.values():
        assert torch.allclose(w.sum(-1), torch.ones(2))
        assert not torch.allclose(w[0], w[1])
    # a sharper temperature makes the choice more one-sided
    sharp = route_weights(bundle.lm, bundle.mma, bundle.state, torch.tensor([TEXT]), 0.5)
    soft = route_weights(bundle.lm, bundle.mma, bundle.state, torch.tensor([TEXT]), 20.0)
    bundle.state.enabled = False
    layer = next(iter(sharp))
    assert sharp[layer].max() > soft[layer].max()


def test_forcing_the_route_changes_the_answer_distribution():
    bundle = testing.tiny_bundle(seed=0)
    testing.perturb_adapter(bundle, seed=3)
    x = bundle.vlm.prompt_embeds("Name a fruit.", None, bundle.lm)[None]
    outs = {}
    for route in ("auto", "text", "image"):
        with torch.no_grad(), adapted(bundle.lm, bundle.mma, bundle.state, torch.tensor([TEXT]), route=route):
            outs[route] = bundle.lm(inputs_embeds=x).logits[0, -1]
    assert torch.allclose(outs["auto"], outs["text"])
    assert (outs["auto"] - outs["image"]).abs().max() > 1e-4


def test_bad_requests_are_refused_in_plain_words():
    picture = np.zeros((300, 200, 3), np.uint8)
    with pytest.raises(BadInput, match="question is empty"):
        make_request("  ", picture)
    with pytest.raises(BadInput, match="NaN"):
        make_request("What colour?", np.full((32, 32, 3), np.nan, np.float32))
    with pytest.raises(BadInput, match="temperature"):
        make_request("What colour?", picture, temperature=0.0)
    request = make_request("What colour?", picture)
    assert request.image.shape == (224, 224, 3) and request.original_size == (200, 300)


def test_after_a_prefix_token_a_fresh_adapter_is_exact_and_the_router_still_reads_the_modality():
    bundle = testing.tiny_bundle(seed=0, modality_prefix=1)
    assert np.allclose(testing.output(bundle, adapter_on=True), testing.frozen_output(bundle), atol=1e-5)
    testing.perturb_adapter(bundle, seed=3)
    weights = route_weights(bundle.lm, bundle.mma, bundle.state, torch.tensor([TEXT, IMAGE]), 5.0)
    bundle.state.enabled = False
    assert all(not torch.allclose(w[0], w[1]) for w in weights.values())
    # the prefix is part of the stream: the same token without it routes differently
    bundle.mma.config = dataclasses.replace(bundle.mma.config, modality_prefix=None)
    alone = route_weights(bundle.lm, bundle.mma, bundle.state, torch.tensor([TEXT, IMAGE]), 5.0)
    bundle.state.enabled = False
    assert any(not torch.allclose(weights[k], alone[k]) for k in weights)


def test_text_distillation_is_zero_for_a_fresh_adapter_and_positive_once_it_moves():
    from adapters.mma.modeling import distill_loss

    bundle = testing.tiny_bundle(seed=0)
    rows = [bundle.vlm.layout.encode([("Name a fruit.", "An apple.")], 0)]
    with torch.no_grad():
        assert float(distill_loss(bundle.lm, bundle.mma, bundle.state, rows, TEXT, 0)) < 1e-6
        testing.perturb_adapter(bundle, seed=3)
        assert float(distill_loss(bundle.lm, bundle.mma, bundle.state, rows, TEXT, 0)) > 1e-4


def test_phase_two_split_keeps_the_model_when_the_two_paths_were_equal():
    from training.mma.train import split_paths

    bundle = testing.tiny_bundle(seed=0)
    testing.perturb_adapter(bundle, seed=3)
    with torch.no_grad():
        for a in bundle.mma.adapters.values():  # phase 1 left the two up-projections equal
            a.up[1].load_state_dict(a.up[0].state_dict())
    before = testing.output(bundle, adapter_on=True)
    split_paths(bundle.mma)
    assert np.allclose(testing.output(bundle, adapter_on=True), before, atol=1e-5)
    weights = route_weights(bundle.lm, bundle.mma, bundle.state, torch.tensor([TEXT, IMAGE]), 5.0)
    bundle.state.enabled = False
    assert all(torch.allclose(w, torch.full((2, 2), 0.5)) for w in weights.values())
    assert all(not a.up[1].weight.detach().any() for a in bundle.mma.adapters.values())
