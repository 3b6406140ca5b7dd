"""The bundled model's patch VAE: its linear code starts as the principal components of the
training patches (the best linear reconstruction, whitened latents), its learned residual starts
at zero, and the AutoencoderKL interface the pipelines use holds."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from adapters.i2v.data import psnr
from adapters.i2v.modeling import to_pixels
from adapters.i2v.photos import clip_batch, held_out_clips
from adapters.i2v.vae import PatchAutoencoder

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def started():
    vae = PatchAutoencoder(latent_channels=8)
    frames, _ = clip_batch(np.random.default_rng(0), 64, frames=1)
    vae.init_from_patches(to_pixels(frames))
    return vae, to_pixels(frames)


def _reconstruct(vae, pixels):
    with torch.no_grad():
        return vae.decode(vae.encode(pixels).latent_dist.mean).sample


def test_the_start_is_the_whitened_principal_component_code(started):
    vae, pixels = started
    with torch.no_grad():
        latents = vae.encode(pixels).latent_dist.mean
    assert latents.shape == (64, 8, 16, 16)
    spread = latents.std(dim=(0, 2, 3))
    assert torch.allclose(spread, torch.ones(8), atol=0.02)  # whitened on the data it was fitted to
    # the same as projecting each 4x4 patch on the top 8 principal components by hand
    flat = F.pixel_unshuffle(pixels, 4).permute(0, 2, 3, 1).reshape(-1, 48).double()
    mean = flat.mean(0)
    _, _, vectors = torch.linalg.svd(flat - mean, full_matrices=False)
    projected = (flat - mean) @ vectors[:8].T @ vectors[:8] + mean
    expected = F.pixel_shuffle(projected.reshape(64, 16, 16, 48).permute(0, 3, 1, 2).float(), 4)
    torch.testing.assert_close(_reconstruct(vae, pixels), expected, atol=1e-4, rtol=0)


def test_held_out_photographs_come_back_above_26_db_before_any_training(started):
    vae, _ = started
    frames = np.stack([c.frames[0] for c in held_out_clips()])
    back = ((_reconstruct(vae, to_pixels(frames[:, None])).permute(0, 2, 3, 1).numpy() + 1) / 2).clip(0, 1)
    scores = [psnr(a, b) for a, b in zip(back, frames)]
    assert np.mean(scores) > 28.0 and min(scores) > 24.0, scores


def test_residuals_start_at_zero_and_train(started):
    vae, pixels = started
    x = pixels[:8]
    with torch.no_grad():
        patches = F.pixel_unshuffle(x, 4)
        assert float(vae.encoder_residual(patches).abs().max()) == 0.0
        assert float(vae.decoder_residual(vae.encoder_linear(patches)).abs().max()) == 0.0
    trained = PatchAutoencoder(latent_channels=8)
    trained.load_state_dict(vae.state_dict())
    optimizer = torch.optim.AdamW(trained.parameters(), lr=1e-3)
    loss = F.mse_loss(trained.decode(trained.encode(x).latent_dist.mean).sample, x)
    loss.backward()
    optimizer.step()
    assert int(torch.count_nonzero(trained.decoder_residual[-1].weight.detach())) > 0


def test_the_interface_the_pipelines_read():
    vae = PatchAutoencoder(latent_channels=4, patch=4)
    assert 2 ** (len(vae.config.block_out_channels) - 1) == 4  # diffusers' vae_scale_factor
    with torch.no_grad():
        out = vae.encode(torch.zeros(2, 3, 32, 32))
    sample = out.latent_dist.sample(torch.Generator().manual_seed(0))
    assert sample.shape == (2, 4, 8, 8)
    assert float(out.latent_dist.std.max()) < 0.01  # starts (nearly) deterministic
    assert vae.decode(sample).sample.shape == (2, 3, 32, 32)
    vae.register_to_config(scaling_factor=0.5)
    assert vae.config.scaling_factor == 0.5
    with pytest.raises(ValueError, match="block_out_channels"):
        PatchAutoencoder(patch=4, block_out_channels=(48, 48))
