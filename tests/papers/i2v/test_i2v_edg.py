"""EDG (extrapolate and decouple) on tiny random diffusers models: the merge arithmetic against its
closed form, DARE's drop-and-rescale, the temporal text adapter (identity at start, reads the
caption), and the three-way render where settings that reduce EDG to the fine-tune must give the
fine-tune's video bit for bit."""
from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest
import torch

from adapters.common.errors import BadInput
from adapters.common.weights import WeightMismatch
from adapters.i2v import edg, inference
from adapters.i2v import modeling as i2v
from adapters.i2v.config import EDGRequest, EDGSettings
from adapters.i2v.testing import example_request, tiny_bundle

torch.set_num_threads(1)


def _state(seed, keys=("a.weight", "b.weight", "c.bias"), shape=(40, 50)):
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(shape if k.endswith("weight") else shape[:1], generator=g) for k in keys}


def test_keep_one_merges_match_the_closed_form():
    pre, sft = _state(0), _state(1)
    sft["x.text_q.weight"] = torch.ones(4, 4)  # a key only the fine-tune has
    s = EDGSettings(alpha=0.4, beta_dyn=0.7, alpha_con=0.9, beta_con=0.3, keep=1.0)
    dynamic, controllable = edg.decouple(pre, sft, s)
    for k in pre:
        torch.testing.assert_close(dynamic[k], pre[k] + 0.7 * 0.4 * (pre[k] - sft[k]))
        torch.testing.assert_close(controllable[k], 0.9 * sft[k] + 0.3 * (sft[k] - pre[k]))
    assert torch.equal(dynamic["x.text_q.weight"], sft["x.text_q.weight"])
    assert torch.equal(controllable["x.text_q.weight"], sft["x.text_q.weight"])


def test_dare_drops_at_the_keep_rate_rescales_and_leaves_vectors_whole():
    delta = {"m.weight": torch.ones(200, 200), "m.bias": torch.ones(200)}
    out = edg.dare(delta, 0.3, torch.Generator().manual_seed(0))
    kept = (out["m.weight"] != 0).float().mean().item()
    assert abs(kept - 0.3) < 0.01
    assert torch.allclose(out["m.weight"][out["m.weight"] != 0], torch.tensor(1 / 0.3))
    assert abs(out["m.weight"].mean().item() - 1.0) < 0.05  # unbiased in expectation
    assert torch.equal(out["m.bias"], delta["m.bias"])
    again = edg.dare(delta, 0.3, torch.Generator().manual_seed(0))
    assert torch.equal(again["m.weight"], out["m.weight"])


def test_settings_are_checked_and_the_fine_tune_must_cover_the_model():
    with pytest.raises(BadInput, match="alpha must be a number between 0.0 and 2.0"):
        edg.check_settings(EDGSettings(alpha=float("nan")))
    with pytest.raises(BadInput, match="keep"):
        edg.check_settings(EDGSettings(keep=0.0))
    with pytest.raises(WeightMismatch, match="EDG fine-tune weights do not match"):
        edg.decouple(_state(0), _state(1, keys=("a.weight",)), EDGSettings())


def test_the_switch_step_picks_the_dynamic_model_for_noisy_steps():
    pair = edg.DecoupledUNets("dyn", "con", 500)
    assert [pair.for_timestep(t) for t in (999, 501, 500, 20)] == ["dyn", "dyn", "con", "con"]


@pytest.fixture(scope="module")
def bundle():
    return tiny_bundle()


def _unet_out(unet, text_clips, frames=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    latents = torch.randn(text_clips.shape[0], 4, frames, 16, 16, generator=g)
    with torch.no_grad(), i2v.i2v_context(frames, 1.0), edg.temporal_text_context(text_clips):
        return unet(latents, torch.tensor(700), text_clips.repeat_interleave(frames, 0)).sample


def test_a_fresh_temporal_text_adapter_is_the_pretrained_model_and_a_trained_one_reads_the_caption(bundle):
    unet = bundle.pipe.unet
    g = torch.Generator().manual_seed(3)
    text = torch.randn(2, 12, 8, generator=g)
    before = _unet_out(unet, text)
    import copy

    adapted = copy.deepcopy(unet)
    adapter = edg.install_temporal_text_adapter(adapted, text_dim=8, seed=0)
    temporal = [n for n in unet.attn_processors if "motion_modules" in n and n.endswith("attn1.processor")]
    assert len(temporal) > 1 and sorted(adapter.public_state_dict()) == sorted(
        f"{n[: -len('.processor')]}.{w}" for n in temporal for w in
        ("text_q.weight", "text_k.weight", "text_v.weight", "text_out.weight", "text_out.bias"))
    spatial = [n for n, p in adapted.attn_processors.items() if isinstance(p, i2v.I2VAttnProcessor)]
    assert len(spatial) == len(bundle.adapter.layers), "the I2V processors stay in place"
    assert torch.equal(_unet_out(adapted, text), before)
    with torch.no_grad():
        for proc in adapter.layers.values():
            proc.text_out.weight.normal_(0, 0.5, generator=g)
    changed = _unet_out(adapted, text)
    assert (changed - before).abs().max() > 1e-3
    other_caption = _unet_out(adapted, torch.randn(2, 12, 8, generator=g))
    assert (other_caption - changed).abs().max() > 1e-3  # the temporal path depends on the text
    assert "text_q" not in " ".join(edg.motion_state(adapted)), "adapter weights are not model weights"


def _fake_fine_tune(unet, seed=0):
    """A stand-in theta_sft: the pretrained motion weights moved a little, plus a non-zero adapter."""
    import copy

    g = torch.Generator().manual_seed(seed)
    state = {k: v + 0.05 * torch.randn(v.shape, generator=g) for k, v in edg.motion_state(unet).items()}
    holder = copy.deepcopy(unet)
    adapter = edg.install_temporal_text_adapter(holder, text_dim=8, seed=seed)
    with torch.no_grad():
        for proc in adapter.layers.values():
            proc.text_out.weight.normal_(0, 0.3, generator=g)
    return {**state, **adapter.public_state_dict()}


def test_edg_render_reduces_to_the_fine_tune_and_leaves_the_shared_model_alone(bundle):
    bundle.edg_sft, bundle.edg_text_dim = _fake_fine_tune(bundle.pipe.unet), 8
    before = {k: v.clone() for k, v in bundle.pipe.unet.state_dict().items()}
    # controllable = theta_sft exactly (alpha_con 1, beta_con 0) on every step (t <= 1000 always)
    only_con = EDGSettings(alpha_con=1.0, beta_con=0.0, switch_t=1000, keep=1.0)
    request = EDGRequest(example_request(), only_con)
    pickle.loads(pickle.dumps(request))
    result = inference.edg(bundle, request, device="cpu")
    pretrained, fine_tuned, merged = result.videos
    np.testing.assert_array_equal(merged, fine_tuned)
    assert np.abs(fine_tuned - pretrained).max() > 1e-4
    default = inference.edg(bundle, EDGRequest(example_request(), EDGSettings()), device="cpu")
    assert np.abs(default.videos[2] - fine_tuned).max() > 1e-4
    np.testing.assert_array_equal(default.videos[0], pretrained)  # same seed, same pretrained path
    assert result.adapter_params > 0 and len(result.flows[0]) == example_request().frames - 1
    after = bundle.pipe.unet.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "merging changed the shared model"
    pickle.loads(pickle.dumps(default))


def test_a_source_without_a_fine_tune_says_so(bundle):
    plain = dataclasses.replace(bundle, edg_sft=None)
    with pytest.raises(BadInput, match="no fine-tuned motion module"):
        inference.edg(plain, EDGRequest(example_request(), EDGSettings()), device="cpu")


def test_a_fine_tune_that_does_not_fit_is_refused_in_words(bundle):
    good = _fake_fine_tune(bundle.pipe.unet)
    edg.check_fine_tune(bundle.pipe.unet, good)
    key = next(k for k in good if not edg.adapter_prefix(k))
    for bad in ({k: v for k, v in good.items() if k != key},
                {**good, key: torch.zeros(3)},
                {k: v for k, v in good.items() if not edg.adapter_prefix(k)}):
        with pytest.raises(WeightMismatch, match="EDG fine-tune weights do not match the model"):
            edg.check_fine_tune(bundle.pipe.unet, bad)
