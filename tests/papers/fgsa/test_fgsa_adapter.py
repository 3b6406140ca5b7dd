"""FGSA adapter: FGSAttn against a slow reference, zero-gate identity, frozen weights, sites."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from adapters.fgsa.modeling import (
    VARIANTS,
    FGSAConfig,
    FGSANet,
    FGSAttn,
    TinyViT,
    TinyViTConfig,
    band_of_rings,
    frozen_tokens,
    ring_gains_from_bands,
    ring_labels,
    structure_loss,
)

torch.set_num_threads(1)


def slow_fgsattn(module: FGSAttn, x: torch.Tensor, user_gain: np.ndarray | None) -> np.ndarray:
    """FGSAttn written out with loops over samples, groups and pixels (numpy, float64)."""
    x = x.detach().double().numpy()
    b, c, h, w = x.shape
    k = c // module.groups
    cy, cx = h // 2, w // 2
    radius = min(cy, cx)
    label = np.zeros((h, w), int)
    for i in range(h):
        for j in range(w):
            r = min(math.floor(math.sqrt((i - cy) ** 2 + (j - cx) ** 2)), radius)
            label[i, j] = math.ceil(r / module.interval)
    n_rings = label.max() + 1
    weight = module.ring_weight.detach().double().numpy()
    bias = module.ring_bias.detach().double().numpy()
    gamma = module.gamma.detach().double().numpy()
    out = x.copy()
    for s in range(b):
        for g in range(module.groups):
            feats = x[s, g * k:(g + 1) * k]
            pooled = np.zeros((h, w))
            for kind in module.pool_types:
                pooled += feats.mean(0) if kind == "avg" else feats.max(0)
            spec = np.fft.fftshift(np.fft.fft2(pooled, norm="ortho"))
            amp, phase = np.abs(spec), np.angle(spec)
            means = np.array([amp[label == r].mean() for r in range(n_rings)])
            gain = weight[g] @ means + bias[g]
            gain = np.where(gain > 0, gain, 0.01 * gain)
            if user_gain is not None:
                gain = gain * (user_gain[g] if user_gain.ndim == 2 else user_gain)
            new_amp = amp.copy()
            for i in range(h):
                for j in range(w):
                    new_amp[i, j] = amp[i, j] * gain[label[i, j]]
            filtered = np.fft.ifft2(np.fft.ifftshift(new_amp * np.exp(1j * phase)), norm="ortho").real
            spread = max(pooled.std(ddof=1), 1e-6)
            if module.mode == "minmax":
                attn = (filtered - filtered.min()) / max(filtered.max() - filtered.min(), 1e-6)
            elif module.mode == "centred":
                attn = (filtered - filtered.mean()) / spread
            else:
                attn = filtered / spread
            for ch in range(k):
                if module.mode == "filter":  # the ring gains applied to this channel's own spectrum
                    spec_ch = np.fft.fftshift(np.fft.fft2(feats[ch], norm="ortho"))
                    for i in range(h):
                        for j in range(w):
                            spec_ch[i, j] *= gain[label[i, j]]
                    term = np.fft.ifft2(np.fft.ifftshift(spec_ch), norm="ortho").real / spread
                else:
                    term = feats[ch] * attn
                out[s, g * k + ch] = feats[ch] + gamma[g * k + ch] * term
    return out


@pytest.mark.parametrize("size,groups,pools", [(6, 1, ("avg",)), (8, 2, ("avg", "max")), (7, 1, ("avg", "max"))])
@pytest.mark.parametrize("with_user_gain", [False, True])
@pytest.mark.parametrize("mode", ["centred", "scaled", "minmax", "filter"])
def test_fgsattn_matches_slow_reference(size, groups, pools, with_user_gain, mode):
    torch.manual_seed(0)
    module = FGSAttn(4, size, groups=groups, pool_types=pools, mode=mode, ring_init="linear")  # random ring layer
    with torch.no_grad():
        module.gamma.uniform_(0.5, 1.5)  # a trained gate; at zero the output would be trivial
    x = torch.randn(2, 4, size, size, dtype=torch.float64)
    module.double()
    user = None
    if with_user_gain:
        user = torch.rand(groups, module.n_rings, dtype=torch.float64) * 2
        user[:, 1] = 0.0  # a suppressed ring
    fast = module(x, user).detach().numpy()
    slow = slow_fgsattn(module, x, None if user is None else user.numpy())
    np.testing.assert_allclose(fast, slow, rtol=1e-9, atol=1e-9)
    assert np.abs(fast - x.numpy()).max() > 1e-3  # the attention really changed the features


def test_ring_labels_and_bands():
    labels = ring_labels(16, 16)
    assert labels[8, 8] == 0 and labels.max() == 8 and labels[0, 0] == 8  # corners join the outer ring
    assert labels[8, 11] == 3 and labels[5, 8] == 3
    assert ring_labels(8, 8, interval=2).max() == 2
    bands = band_of_rings(9, 5)
    assert bands == [[0], [1, 2], [3, 4], [5, 6], [7, 8]]
    assert sorted(r for band in band_of_rings(5, 5) for r in band) == list(range(5))
    gains = ring_gains_from_bands([1, 0, 2, 1, 0.5], 9)
    assert gains.tolist() == [1, 0, 0, 2, 2, 1, 1, 0.5, 0.5]


def test_suppressing_a_ring_removes_its_frequency_from_the_attention():
    """A pooled map made of two pure tones: zeroing the ring of one tone leaves only the other."""
    size = 16
    module = FGSAttn(1, size, mode="minmax", ring_init="linear").double()
    with torch.no_grad():  # learned gains of exactly 1 on every ring
        module.ring_weight.zero_()
        module.ring_bias.fill_(1.0)
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64), indexing="ij")
    low, high = torch.cos(2 * math.pi * 2 * xx / size), torch.cos(2 * math.pi * 6 * yy / size)
    x = (0.5 + low + high).view(1, 1, size, size)  # with a mean level (the DC ring)
    user = torch.ones(module.n_rings, dtype=torch.float64)
    user[6] = 0.0
    attn = module.analyse(x, user)["attention"][0, 0]
    expected = (low - low.min()) / (low.max() - low.min())
    torch.testing.assert_close(attn, expected, atol=1e-9, rtol=0)
    # the centred attention (the bundled design) is not renormalised after an edit: the low tone
    # keeps exactly the share it had, the high tone's share is gone, the mean level never enters,
    # and closing every ring leaves no attention at all (FGSAttn becomes the identity)
    scaled = FGSAttn(1, size, mode="centred").double()
    scaled.load_state_dict(module.state_dict())
    spread = x.std()
    torch.testing.assert_close(scaled.analyse(x)["attention"][0, 0], (low + high) / spread, atol=1e-9, rtol=0)
    torch.testing.assert_close(scaled.analyse(x, user)["attention"][0, 0], low / spread, atol=1e-9, rtol=0)
    with torch.no_grad():
        scaled.gamma.fill_(1.0)
    closed = torch.zeros(scaled.n_rings, dtype=torch.float64)
    assert scaled.analyse(x, closed)["attention"].abs().max() == 0
    torch.testing.assert_close(scaled(x, closed), x, atol=0, rtol=0)


def tiny_model(variant: str, seed: int = 0) -> FGSANet:
    torch.manual_seed(seed)
    vit = TinyViT(TinyViTConfig(image_size=64, dim=32, depth=4, heads=2))
    vit.eval().requires_grad_(False)
    return FGSANet(vit, FGSAConfig(variant=variant))


def test_untrained_adapter_leaves_frozen_token_stream_unchanged():
    model = tiny_model("fgsa").eval()
    image = torch.rand(2, 3, 64, 64)
    probes: dict = {}
    with torch.no_grad():
        model(image, probes=probes)
        reference = frozen_tokens(model.backbone, model.normalise(image))
    # x1 / x2: the token stream after each group of frozen blocks, with the adapter in place
    torch.testing.assert_close(probes["x1"].permute(0, 2, 3, 1), reference[1], rtol=0, atol=0)
    torch.testing.assert_close(probes["x2"].permute(0, 2, 3, 1), reference[3], rtol=0, atol=0)
    # and each FGSAttn site is the identity while its gate is zero
    for name in model.site_names():
        feat = probes[name]
        torch.testing.assert_close(model.site(name)(feat), feat, rtol=0, atol=0)
    # opening one gate changes the stream: the identity above is not vacuous
    with torch.no_grad():
        model.first_injector.gamma.fill_(1.0)
        changed: dict = {}
        model(image, probes=changed)
    assert (changed["x1"] - probes["x1"]).abs().max() > 1e-3


@pytest.mark.parametrize("variant", VARIANTS)
def test_training_step_leaves_frozen_weights_unchanged(variant):
    model = tiny_model(variant)
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    adapter_before = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("backbone.")}
    optimiser = torch.optim.AdamW(model.trainable_parameters(), lr=1e-2)
    model.train()
    image, mask = torch.rand(2, 3, 64, 64), (torch.rand(2, 1, 64, 64) > 0.5).float()
    for _ in range(2):
        loss = structure_loss(model(image), mask)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    after = model.backbone.state_dict()
    changed_backbone = [k for k in before if not torch.equal(before[k], after[k])]
    if variant == "full":
        assert changed_backbone, "full fine-tuning must train the backbone"
    else:
        assert not changed_backbone, f"frozen weights changed: {changed_backbone[:3]}"
        assert all(p.grad is None for p in model.backbone.parameters())
    changed_adapter = [k for k, v in model.state_dict().items() if k in adapter_before and not torch.equal(v, adapter_before[k])]
    assert changed_adapter, "the step trained nothing"
    if variant == "fgsa":  # the zero-initialised gates are trainable and moved
        assert model.first_injector.gamma.abs().max() > 0
        assert model.site("c1").gamma.abs().max() > 0


def test_trainable_parameter_budget():
    """The adapter must stay under a quarter of what full fine-tuning trains (bundled sizes)."""
    vit = TinyViT(TinyViTConfig())
    full = FGSANet(vit, FGSAConfig(variant="full"))
    n_full = sum(p.numel() for p in full.trainable_parameters())
    vit = TinyViT(TinyViTConfig())
    fgsa = FGSANet(vit, FGSAConfig(variant="fgsa"))
    n_fgsa = sum(p.numel() for p in fgsa.trainable_parameters())
    assert n_fgsa < 0.25 * n_full, (n_fgsa, n_full)
