"""The bundled model's VAE: a patch autoencoder with the AutoencoderKL interface.

A diffusers `AutoencoderKL` of the bundled size (blocks (16, 32, 32)) reached only about 17 dB on
held-out 64 px photographs after 300 steps here, and a 16-channel one no better: a deep conv net
learns fine detail slowly. A linear code of 4x4 patches (their principal components) already gives
26 dB with 4 numbers per patch and 32 dB with 8. So the encoder is `pixel_unshuffle(4)` and a 1x1
linear map to the latent channels, the decoder the linear map back and `pixel_shuffle(4)`; both
linear maps start at the training patches' whitened principal components (`init_from_patches`),
and a small convolutional residual on each side (last layer zero-initialised) learns what is left.

To the pipelines it is an AutoencoderKL: `encode(x).latent_dist` (a diagonal Gaussian whose log
variance is one learned constant per channel, started near zero spread), `decode(z).sample`,
`config.scaling_factor`, and `config.block_out_channels`, whose length diffusers reads as the
downsampling factor 2 ** (len - 1). No gradio import.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKLOutput
from diffusers.models.autoencoders.vae import DecoderOutput, DiagonalGaussianDistribution
from diffusers.models.modeling_utils import ModelMixin
from torch import nn


def _residual(channels_in: int, hidden: int, channels_out: int) -> nn.Sequential:
    net = nn.Sequential(nn.Conv2d(channels_in, hidden, 3, padding=1), nn.SiLU(),
                        nn.Conv2d(hidden, hidden, 3, padding=1), nn.SiLU(),
                        nn.Conv2d(hidden, channels_out, 3, padding=1))
    nn.init.zeros_(net[-1].weight)
    nn.init.zeros_(net[-1].bias)
    return net


class PatchAutoencoder(ModelMixin, ConfigMixin):
    """4x4 patches <-> `latent_channels` numbers: a linear code plus a learned conv residual."""

    @register_to_config
    def __init__(self, in_channels: int = 3, out_channels: int = 3, patch: int = 4, latent_channels: int = 8,
                 hidden: int = 64, scaling_factor: float = 1.0, block_out_channels: tuple[int, ...] = (48, 48, 48),
                 initial_log_variance: float = -12.0):
        super().__init__()
        if 2 ** (len(block_out_channels) - 1) != patch:
            raise ValueError("block_out_channels must have log2(patch) + 1 entries: diffusers reads the factor from it")
        flat = in_channels * patch * patch
        self.encoder_linear = nn.Conv2d(flat, latent_channels, 1)
        self.encoder_residual = _residual(flat, hidden, latent_channels)
        self.log_variance = nn.Parameter(torch.full((latent_channels,), float(initial_log_variance)))
        self.decoder_linear = nn.Conv2d(latent_channels, patch * patch * out_channels, 1)
        self.decoder_residual = _residual(latent_channels, hidden, patch * patch * out_channels)

    def encode(self, x: torch.Tensor, return_dict: bool = True):
        patches = F.pixel_unshuffle(x, self.config.patch)
        mean = self.encoder_linear(patches) + self.encoder_residual(patches)
        log_variance = self.log_variance.view(1, -1, 1, 1).expand_as(mean)
        posterior = DiagonalGaussianDistribution(torch.cat([mean, log_variance], dim=1))
        return AutoencoderKLOutput(latent_dist=posterior) if return_dict else (posterior,)

    def decode(self, z: torch.Tensor, return_dict: bool = True, generator=None):
        patches = self.decoder_linear(z) + self.decoder_residual(z)
        sample = F.pixel_shuffle(patches, self.config.patch)
        return DecoderOutput(sample=sample) if return_dict else (sample,)

    @torch.no_grad()
    def init_from_patches(self, pixels: torch.Tensor) -> None:
        """Start both linear maps at the whitened principal components of `pixels`' patches
        ((N, 3, H, W) in [-1, 1]): unit-variance latent channels, the best linear reconstruction."""
        patches = F.pixel_unshuffle(pixels, self.config.patch)
        flat = patches.permute(0, 2, 3, 1).reshape(-1, patches.shape[1]).double()
        mean = flat.mean(0)
        _, singular, vectors = torch.linalg.svd(flat - mean, full_matrices=False)
        k = self.config.latent_channels
        components = vectors[:k]  # (k, flat)
        spread = singular[:k] / (flat.shape[0] - 1) ** 0.5  # each component's standard deviation
        encode = components / spread[:, None]
        self.encoder_linear.weight.copy_(encode.float()[:, :, None, None])
        self.encoder_linear.bias.copy_((-encode @ mean).float())
        decode = components.T * spread[None, :]
        self.decoder_linear.weight.copy_(decode.float()[:, :, None, None])
        self.decoder_linear.bias.copy_(mean.float())
