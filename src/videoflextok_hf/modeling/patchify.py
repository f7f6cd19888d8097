"""A parameter-free, exactly invertible stand-in for the VidTok VAE with the same causal (4, 8, 8) geometry.

It exists so that small VideoFlexTok models can be trained from scratch where no pretrained VAE is available (the
VidTok weights only ship inside the official checkpoints). Frame 0 forms the first latent step on its own (it is
repeated `factor` times, like VidTok's front padding) and every following group of `factor` frames forms one step;
each (frames x 8 x 8 x RGB) block becomes the channel vector of one latent position ("space-to-depth" in time and
space). `decode(encode(x)) == x` exactly for T = 1 + factor * k, and the latent grid has the shape VidTok would
produce, so chunking, token layout and the flow decoder are unchanged; only the latent width differs
(3 * 4 * 8 * 8 = 768 channels instead of 16), which is why this is a training tool for tiny models rather than a
replacement for a learned VAE.
"""

from __future__ import annotations

import torch
from torch import nn

from .vidtok import AutoencoderKLOutput, DecoderOutput, DiagonalGaussianDistribution


class PatchifyCompressor(nn.Module):
    """Causal space-to-depth "VAE": `[B, 3, T, H, W]` <-> `[B, 3 * tf * s * s, 1 + (T - 1) / tf, H / s, W / s]`."""

    def __init__(self, in_channels: int = 3, temporal_factor: int = 4, spatial_factor: int = 8):
        super().__init__()
        self.in_channels = in_channels
        self.temporal_compression_ratio = temporal_factor
        self.spatial_compression_ratio = spatial_factor
        self.latent_channels = in_channels * temporal_factor * spatial_factor**2

    def encode(self, videos: torch.Tensor, return_dict: bool = True) -> AutoencoderKLOutput | tuple:
        if not isinstance(videos, torch.Tensor) or videos.dim() != 5 or videos.shape[1] != self.in_channels:
            shape = tuple(videos.shape) if isinstance(videos, torch.Tensor) else type(videos).__name__
            raise ValueError(f"videos must have shape [B, {self.in_channels}, T, H, W], got {shape}.")
        batch, channels, frames, height, width = videos.shape
        tf, s = self.temporal_compression_ratio, self.spatial_compression_ratio
        if (frames - 1) % tf or height % s or width % s:
            raise ValueError(
                f"the patchify compressor needs T = 1 + {tf}k frames and H, W multiples of {s}, got {tuple(videos.shape)}."
            )
        x = torch.cat([videos[:, :, :1].expand(-1, -1, tf - 1, -1, -1), videos], dim=2)
        steps = x.shape[2] // tf
        x = x.reshape(batch, channels, steps, tf, height // s, s, width // s, s)
        x = x.permute(0, 1, 3, 5, 7, 2, 4, 6).reshape(batch, self.latent_channels, steps, height // s, width // s)
        # a distribution with zero variance: sample() == mode() == the patchified pixels
        posterior = DiagonalGaussianDistribution(torch.cat([x, torch.zeros_like(x)], dim=1), deterministic=True)
        return AutoencoderKLOutput(latent_dist=posterior) if return_dict else (posterior,)

    def decode(self, latents: torch.Tensor, return_dict: bool = True) -> DecoderOutput | tuple:
        if not isinstance(latents, torch.Tensor) or latents.dim() != 5 or latents.shape[1] != self.latent_channels:
            shape = tuple(latents.shape) if isinstance(latents, torch.Tensor) else type(latents).__name__
            raise ValueError(f"latents must have shape [B, {self.latent_channels}, t, h, w], got {shape}.")
        batch, _, steps, height, width = latents.shape
        tf, s, channels = self.temporal_compression_ratio, self.spatial_compression_ratio, self.in_channels
        x = latents.reshape(batch, channels, tf, s, s, steps, height, width)
        x = x.permute(0, 1, 5, 2, 6, 3, 7, 4).reshape(batch, channels, steps * tf, height * s, width * s)
        video = x[:, :, tf - 1 :]
        return DecoderOutput(sample=video) if return_dict else (video,)

    def forward(self, videos: torch.Tensor, sample_posterior: bool = False, generator=None) -> DecoderOutput:
        return self.decode(self.encode(videos).latent_dist.mode())
