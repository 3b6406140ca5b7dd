"""I2V-Adapter processor, Frame Similarity Prior, motion-strength mapping and sampler on tiny random
diffusers models (no trained weights, no network)."""
from __future__ import annotations

import math

import pytest
import torch

from adapters.common.errors import BadInput
from adapters.i2v import modeling as i2v
from adapters.i2v.loading import build_pipeline
from adapters.i2v.testing import tiny_random_components

torch.set_num_threads(1)
FRAMES = 4


@pytest.fixture(scope="module")
def pipe():
    return build_pipeline(tiny_random_components(seed=0))


def unet_inputs(pipe, clips=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    latents = torch.randn(clips, 4, FRAMES, 8, 8, generator=g)
    text = torch.randn(clips * FRAMES, 12, 8, generator=g)
    return latents, torch.tensor(500), text


def fresh_processors(pipe):
    from diffusers.models.attention_processor import AttnProcessor2_0

    i2v.remove_i2v_adapter(pipe.unet)
    pipe.unet.set_attn_processor(AttnProcessor2_0())


def test_processors_go_on_spatial_self_attention_only(pipe):
    fresh_processors(pipe)
    adapter = i2v.install_i2v_adapter(pipe.unet, seed=0)
    procs = pipe.unet.attn_processors
    installed = sorted(n for n, p in procs.items() if isinstance(p, i2v.I2VAttnProcessor))
    expected = sorted(n for n in procs if n.endswith("attn1.processor") and "motion_modules" not in n)
    assert installed == expected and len(installed) == 7  # 2 down + 1 mid + 2x2 up spatial blocks
    assert not any(isinstance(p, i2v.I2VAttnProcessor) for n, p in procs.items() if "motion_modules" in n or "attn2" in n)
    # new trainable parts: a query projection copied from the frozen one and a zero output projection
    proc = adapter.layers[i2v._module_key(installed[0])]
    attn = pipe.unet.get_submodule(installed[0][: -len(".processor")])
    assert torch.equal(proc.to_q_adapter.weight, attn.to_q.weight)
    assert proc.to_q_adapter.weight.data_ptr() != attn.to_q.weight.data_ptr()
    assert torch.count_nonzero(proc.to_out_adapter.weight) == 0 and torch.count_nonzero(proc.to_out_adapter.bias) == 0


def test_zero_init_reproduces_frozen_model_exactly(pipe):
    fresh_processors(pipe)
    sample, t, text = unet_inputs(pipe)
    frozen = pipe.unet(sample, t, text).sample
    adapter = i2v.install_i2v_adapter(pipe.unet, seed=0)
    with i2v.i2v_context(FRAMES, scale=1.0):
        adapted = pipe.unet(sample, t, text).sample
    assert torch.equal(frozen, adapted)
    # a non-zero output projection does change the output (the branch is live, not bypassed)
    with torch.no_grad():
        for proc in adapter.layers.values():
            proc.to_out_adapter.weight.normal_(0, 0.5)
    with i2v.i2v_context(FRAMES, scale=1.0):
        moved = pipe.unet(sample, t, text).sample
    with i2v.i2v_context(FRAMES, scale=0.0):
        off = pipe.unet(sample, t, text).sample
    assert (moved - frozen).abs().max() > 1e-3
    assert torch.equal(off, frozen)


def test_branch_attends_to_frame_zero_of_its_own_clip(pipe):
    """The processor against a hand-written reference: softmax(q' k0^T / sqrt(d)) v0, per clip."""
    fresh_processors(pipe)
    adapter = i2v.install_i2v_adapter(pipe.unet, seed=0)
    name = adapter.processor_names[0]
    attn = pipe.unet.get_submodule(name[: -len(".processor")])
    proc = adapter.layers[i2v._module_key(name)]
    torch.manual_seed(3)
    with torch.no_grad():
        proc.to_out_adapter.weight.normal_()
        proc.to_q_adapter.weight.add_(torch.randn_like(proc.to_q_adapter.weight))
    clips, tokens, channels = 2, 16, attn.to_q.in_features
    x = torch.randn(clips * FRAMES, tokens, channels)
    with torch.no_grad(), i2v.i2v_context(FRAMES, scale=0.7):
        got = proc(attn, x)
    from diffusers.models.attention_processor import AttnProcessor2_0

    with torch.no_grad():
        frozen = AttnProcessor2_0()(attn, x)
        heads = attn.heads
        expected = torch.empty_like(frozen)
        for b in range(clips):
            x0 = x[b * FRAMES]
            k, v = attn.to_k(x0), attn.to_v(x0)
            for f in range(FRAMES):
                q = proc.to_q_adapter(x[b * FRAMES + f])
                d = q.shape[-1] // heads
                outs = []
                for h in range(heads):
                    s = slice(h * d, (h + 1) * d)
                    w = torch.softmax(q[:, s] @ k[:, s].T / math.sqrt(d), dim=-1)
                    outs.append(w @ v[:, s])
                expected[b * FRAMES + f] = frozen[b * FRAMES + f] + 0.7 * proc.to_out_adapter(torch.cat(outs, -1))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_processor_refuses_to_run_without_frame_count(pipe):
    fresh_processors(pipe)
    i2v.install_i2v_adapter(pipe.unet, seed=0)
    sample, t, text = unet_inputs(pipe)
    with pytest.raises(RuntimeError, match="i2v_context"):
        pipe.unet(sample, t, text)


def test_training_step_moves_adapter_only(pipe):
    fresh_processors(pipe)
    adapter = i2v.install_i2v_adapter(pipe.unet, seed=0)
    adapter.requires_grad_(True)
    frozen_before = {k: v.clone() for k, v in pipe.unet.state_dict().items() if "_adapter" not in k}
    adapter_before = {k: v.clone() for k, v in adapter.public_state_dict().items()}
    optimizer = torch.optim.AdamW(adapter.parameters(), lr=1e-2)
    sample, t, text = unet_inputs(pipe)
    with i2v.i2v_context(FRAMES, 1.0):
        loss = pipe.unet(sample, t, text).sample[:, :, 1:].pow(2).mean()
    loss.backward()
    assert all(p.grad is None for n, p in pipe.unet.named_parameters() if "_adapter" not in n)
    optimizer.step()
    after = pipe.unet.state_dict()
    assert all(torch.equal(after[k], v) for k, v in frozen_before.items())
    changed = [k for k, v in adapter.public_state_dict().items() if not torch.equal(v, adapter_before[k])]
    assert any("to_out_adapter" in k for k in changed)
    adapter.requires_grad_(False)


def test_motion_settings_are_monotone_and_validated():
    values = [i2v.motion_settings(m) for m in (0.0, 0.25, 0.5, 0.75, 1.0)]
    for a, b in zip(values, values[1:]):
        assert a.start_fraction < b.start_fraction
        assert a.blur_sigma < b.blur_sigma and a.blur_mix < b.blur_mix
        assert a.adapter_scale > b.adapter_scale
    assert values[-1].start_fraction == pytest.approx(1.0) and values[0].adapter_scale == pytest.approx(1.0)
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(BadInput, match="between 0 and 1"):
            i2v.motion_settings(bad)


def test_gaussian_blur_keeps_constants_and_smooths():
    flat = torch.full((1, 4, 8, 8), 0.3)
    torch.testing.assert_close(i2v.gaussian_blur(flat, 1.5), flat)
    spike = torch.zeros(1, 1, 9, 9)
    spike[..., 4, 4] = 1
    blurred = i2v.gaussian_blur(spike, 1.0)
    assert blurred[..., 4, 4] < 0.25 and blurred.sum() == pytest.approx(1.0, abs=1e-5)
    assert torch.equal(i2v.gaussian_blur(spike, 0.0), spike)


def test_frame_similarity_prior(pipe):
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    first = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    low, high = i2v.motion_settings(0.0), i2v.motion_settings(1.0)
    prior = i2v.frame_similarity_prior(first, 6, scheduler, 999, high, torch.Generator().manual_seed(1))
    assert prior.shape == (1, 4, 6, 8, 8)
    assert torch.equal(prior[:, :, 0], first)  # frame 0 stays clean
    # at a small timestep the prior is (almost) the repeated, degraded latent; degradation grows with m
    near_low = i2v.frame_similarity_prior(first, 6, scheduler, 1, low, torch.Generator().manual_seed(1))
    near_high = i2v.frame_similarity_prior(first, 6, scheduler, 1, high, torch.Generator().manual_seed(1))
    err_low = (near_low[:, :, 1:] - first[:, :, None]).pow(2).mean()
    err_high = (near_high[:, :, 1:] - first[:, :, None]).pow(2).mean()
    assert err_low < err_high
    # at the last training timestep it is mostly noise: weakly correlated with the latent
    corr = torch.corrcoef(torch.stack([prior[:, :, 1:].flatten(), first[:, :, None].expand(-1, -1, 5, -1, -1).flatten()]))[0, 1]
    assert abs(float(corr)) < 0.3


def test_animate_keeps_frame_zero_clean(pipe):
    fresh_processors(pipe)
    adapter = i2v.install_i2v_adapter(pipe.unet, seed=0)
    with torch.no_grad():
        for proc in adapter.layers.values():
            proc.to_out_adapter.weight.normal_(0, 0.1)
    image = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    steps = []
    result = i2v.animate(pipe, image, "red circle moving left", motion=i2v.motion_settings(0.6), num_frames=FRAMES,
                         steps=4, guidance=2.0, seed=0, progress=lambda fraction, text: steps.append(fraction))
    first = i2v.encode_first_frame(pipe, image)
    assert result.video.shape == (FRAMES, 3, 16, 16)
    assert torch.equal(result.latents[:, :, 0], first)
    expected_frame0 = ((pipe.vae.decode(first / pipe.vae.config.scaling_factor).sample[0] + 1) / 2).clamp(0, 1)
    torch.testing.assert_close(result.video[0], expected_frame0, atol=1e-5, rtol=1e-5)
    assert steps[-1] == 1.0 and len(steps) == len(result.timesteps) == 3  # 0.45+0.33 of 4
    # same seed, adapter off: same sampler, different frames 1.. (the branch matters), same frame 0
    off = i2v.animate(pipe, image, "red circle moving left", motion=i2v.motion_settings(0.6), num_frames=FRAMES,
                      steps=4, guidance=2.0, seed=0, adapter_on=False)
    assert torch.equal(off.latents[:, :, 0], first)
    assert (off.latents[:, :, 1:] - result.latents[:, :, 1:]).abs().max() > 1e-4
    again = i2v.animate(pipe, image, "red circle moving left", motion=i2v.motion_settings(0.6), num_frames=FRAMES,
                        steps=4, guidance=2.0, seed=0)
    assert torch.equal(again.latents, result.latents)  # seeded


def test_text_to_video_baseline_is_the_frozen_pipeline(pipe):
    """The "frozen model alone" baseline never runs the branch: a trained-looking (non-zero) adapter
    and no adapter at all give the very same video, seeded, in [0, 1]."""
    from diffusers.models.attention_processor import AttnProcessor2_0

    fresh_processors(pipe)
    adapter = i2v.install_i2v_adapter(pipe.unet, seed=0)
    with torch.no_grad():
        for proc in adapter.layers.values():
            proc.to_out_adapter.weight.normal_(0, 0.1)
    with_branch = i2v.text_to_video(pipe, "red circle moving left", num_frames=FRAMES, steps=3, guidance=2.0, seed=1)
    i2v.remove_i2v_adapter(pipe.unet)
    pipe.unet.set_attn_processor(AttnProcessor2_0())
    plain = i2v.text_to_video(pipe, "red circle moving left", num_frames=FRAMES, steps=3, guidance=2.0, seed=1)
    other_seed = i2v.text_to_video(pipe, "red circle moving left", num_frames=FRAMES, steps=3, guidance=2.0, seed=2)
    assert plain.shape == (FRAMES, 3, 16, 16) and 0.0 <= float(plain.min()) and float(plain.max()) <= 1.0
    torch.testing.assert_close(with_branch, plain, atol=1e-6, rtol=0)
    assert (other_seed - plain).abs().max() > 1e-3
