"""Parameter-free stand-ins for the VidTok VAE with the same causal (4, 8, 8) geometry, for training small
VideoFlexTok models where no pretrained VAE is available (VidTok's weights only ship inside the official
checkpoints).

Both split a video into causal blocks: frame 0 forms the first latent step on its own (repeated 4 times, like
VidTok's front padding) and every following group of 4 frames forms one step; every 4 x 8 x 8 x RGB block becomes
the channel vector of one latent position. The latent grid has exactly VidTok's shape, so chunking, token layout
and the flow decoder are unchanged.

* `PatchifyCompressor` keeps the raw block (3 * 4 * 8 * 8 = 768 channels): exactly invertible, but too wide for a
  small decoder: a velocity-predicting transformer of width D can only output a D-dimensional function of each
  token, so most of the 768-dim noise it must predict is lost (measured: the training loss stays at ~1.0).
* `DCTCompressor` keeps the `coefficients_per_color` lowest frequencies of each block's orthonormal 3-D DCT
  (like JPEG), each divided by its typical magnitude so that latents have about unit scale: e.g. 16 per colour ->
  48 channels, ~25.7 dB PSNR on held-out real 64x64 clips; decoding fills the dropped frequencies with zeros.
  With all 256 coefficients it is an exact transform.
"""

from __future__ import annotations

import math

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
        self.block_size = temporal_factor * spatial_factor**2
        self.latent_channels = in_channels * self.block_size

    def _check(self, x: torch.Tensor, name: str, channels: int, layout: str) -> None:
        if not isinstance(x, torch.Tensor) or x.dim() != 5 or x.shape[1] != channels:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{name} must have shape {layout}, got {shape}.")

    def blocks(self, videos: torch.Tensor) -> torch.Tensor:
        """`[B, 3, T, H, W]` -> `[B, 3, tf * s * s, t, h, w]` causal blocks."""
        self._check(videos, "videos", self.in_channels, f"[B, {self.in_channels}, T, H, W]")
        batch, channels, frames, height, width = videos.shape
        tf, s = self.temporal_compression_ratio, self.spatial_compression_ratio
        if (frames - 1) % tf or height % s or width % s:
            raise ValueError(
                f"the {type(self).__name__} needs T = 1 + {tf}k frames and H, W multiples of {s}, "
                f"got {tuple(videos.shape)}."
            )
        x = torch.cat([videos[:, :, :1].expand(-1, -1, tf - 1, -1, -1), videos], dim=2)
        steps = x.shape[2] // tf
        x = x.reshape(batch, channels, steps, tf, height // s, s, width // s, s)
        return x.permute(0, 1, 3, 5, 7, 2, 4, 6).reshape(batch, channels, self.block_size, steps, height // s, width // s)

    def unblocks(self, blocks: torch.Tensor) -> torch.Tensor:
        """Inverse of `blocks` (frame 0 is taken from the last copy of the first block)."""
        batch, channels, _, steps, height, width = blocks.shape
        tf, s = self.temporal_compression_ratio, self.spatial_compression_ratio
        x = blocks.reshape(batch, channels, tf, s, s, steps, height, width)
        x = x.permute(0, 1, 5, 2, 6, 3, 7, 4).reshape(batch, channels, steps * tf, height * s, width * s)
        return x[:, :, tf - 1 :]

    def to_latents(self, blocks: torch.Tensor) -> torch.Tensor:
        return blocks.flatten(1, 2)

    def from_latents(self, latents: torch.Tensor) -> torch.Tensor:
        batch, _, steps, height, width = latents.shape
        return latents.reshape(batch, self.in_channels, -1, steps, height, width)

    def encode(self, videos: torch.Tensor, return_dict: bool = True) -> AutoencoderKLOutput | tuple:
        latents = self.to_latents(self.blocks(videos))
        # a distribution with zero variance: sample() == mode() == the transformed blocks
        posterior = DiagonalGaussianDistribution(torch.cat([latents, torch.zeros_like(latents)], dim=1),
                                                 deterministic=True)
        return AutoencoderKLOutput(latent_dist=posterior) if return_dict else (posterior,)

    def decode(self, latents: torch.Tensor, return_dict: bool = True) -> DecoderOutput | tuple:
        self._check(latents, "latents", self.latent_channels, f"[B, {self.latent_channels}, t, h, w]")
        video = self.unblocks(self.from_latents(latents))
        return DecoderOutput(sample=video) if return_dict else (video,)

    def forward(self, videos: torch.Tensor, sample_posterior: bool = False, generator=None) -> DecoderOutput:
        return self.decode(self.encode(videos).latent_dist.mode())


def _dct_matrix(size: int) -> torch.Tensor:
    """Orthonormal DCT-II matrix (rows are frequencies)."""
    # explicit CPU tensors: models are built under a meta-device context by `from_pretrained`
    k = torch.arange(size, dtype=torch.float64, device="cpu")[:, None]
    i = torch.arange(size, dtype=torch.float64, device="cpu")[None, :]
    matrix = torch.cos(math.pi * (i + 0.5) * k / size) * math.sqrt(2.0 / size)
    matrix[0] /= math.sqrt(2.0)
    return matrix


def dct_basis(temporal_factor: int, spatial_factor: int, coefficients: int,
              normalization: str = "per_band") -> tuple[torch.Tensor, torch.Tensor]:
    """The `coefficients` lowest-frequency rows of the orthonormal 3-D DCT of a (t, y, x) block, ordered by
    s = 2 * f_t + f_y + f_x (time frequencies count double: motion detail is costlier than spatial detail), and
    each row's typical magnitude on natural video in [-1, 1], 6 / (1 + s)^2 (a fixed prior that matches the
    measured spread of real 64x64 clips within ~2x), used to bring every latent channel to about unit scale
    (`normalization="per_band"`); with "uniform" every row is divided by the DC magnitude (6) instead."""
    t, s = _dct_matrix(temporal_factor), _dct_matrix(spatial_factor)
    full = torch.kron(torch.kron(t, s), s)
    freqs = [(ft, fy, fx) for ft in range(temporal_factor) for fy in range(spatial_factor) for fx in range(spatial_factor)]
    band = [2 * ft + fy + fx for ft, fy, fx in freqs]
    order = sorted(range(len(freqs)), key=lambda i: (band[i], freqs[i]))[:coefficients]
    if normalization not in ("per_band", "uniform"):
        raise ValueError(f"normalization must be 'per_band' or 'uniform', got {normalization!r}.")
    exponent = 2 if normalization == "per_band" else 0
    scale = torch.tensor([6.0 / (1 + band[i]) ** exponent for i in order], dtype=torch.float64, device="cpu")
    return full[order].float(), scale.float()


class DCTCompressor(PatchifyCompressor):
    """Causal blocks projected on their lowest DCT frequencies: `latent_channels = 3 * coefficients_per_color`."""

    def __init__(self, in_channels: int = 3, temporal_factor: int = 4, spatial_factor: int = 8,
                 coefficients_per_color: int = 16, normalization: str = "per_band"):
        super().__init__(in_channels, temporal_factor, spatial_factor)
        if not 1 <= coefficients_per_color <= self.block_size:
            raise ValueError(f"coefficients_per_color must be in 1..{self.block_size}, got {coefficients_per_color}.")
        self.coefficients_per_color = coefficients_per_color
        self.latent_channels = in_channels * coefficients_per_color
        basis, scale = dct_basis(temporal_factor, spatial_factor, coefficients_per_color, normalization)
        # plain attributes rather than buffers: fixed maths, nothing to save or to re-create after loading
        self._analysis = basis / scale[:, None]
        self._synthesis = basis * scale[:, None]

    def to_latents(self, blocks: torch.Tensor) -> torch.Tensor:
        analysis = self._analysis.to(device=blocks.device, dtype=blocks.dtype)
        return torch.einsum("fk,bcktyx->bcftyx", analysis, blocks).flatten(1, 2)

    def from_latents(self, latents: torch.Tensor) -> torch.Tensor:
        batch, _, steps, height, width = latents.shape
        coefficients = latents.reshape(batch, self.in_channels, self.coefficients_per_color, steps, height, width)
        synthesis = self._synthesis.to(device=latents.device, dtype=latents.dtype)
        return torch.einsum("fk,bcftyx->bcktyx", synthesis, coefficients)
