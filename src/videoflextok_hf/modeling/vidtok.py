"""VidTok v1 causal KL video VAE (4x temporal, 8x8 spatial compression, 16 latent channels), as frozen inside
VideoFlexTok.

This follows the ORIGINAL VidTok semantics (17 frames -> 5 latent frames -> 17 frames), which the VideoFlexTok
decoder was trained on. diffusers' `AutoencoderVidTok` implements v1.1 (replicate padding, trilinear temporal
upsampling) and produces different latents, so it is not used. Parameter names equal VidTok's own, so official
weights load without renaming.

Building blocks, all causal in time (padding only at the front, per-frame spatial ops):
  * spatial 2-D residual blocks applied to every frame, each followed by a temporal 1-D residual block applied to
    every pixel (a "spatial-temporal unit");
  * 3-D causal residual blocks and per-frame single-head attention in the middle;
  * resampling: strided 2-D convs / nearest 2x upsampling in space, and in time a learned sigmoid mix of an average
    pool (resp. nearest repeat) with a causal strided (resp. plain) 3-D conv.
Normalisation is LayerNorm over channels (eps 1e-6) at every position.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers.utils import ModelOutput


class DiagonalGaussianDistribution:
    """Posterior of a KL VAE (the interface of diffusers' class of the same name, without the dependency, so that
    this folder runs as Hub remote code with torch + transformers only).

    `parameters` `[B, 2C, ...]` holds the mean then the log-variance (clamped to [-30, 20]) along dim 1.
    """

    def __init__(self, parameters: torch.Tensor, deterministic: bool = False):
        self.parameters = parameters
        self.mean, logvar = torch.chunk(parameters, 2, dim=1)
        self.logvar = torch.clamp(logvar, -30.0, 20.0)
        self.deterministic = deterministic
        self.std = torch.exp(0.5 * self.logvar)
        self.var = torch.exp(self.logvar)
        if deterministic:
            self.std = self.var = torch.zeros_like(self.mean)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """`mean + std * eps`. eps is drawn on the generator's device (CPU without one: the global CPU RNG, as
        the official code does) and then moved to the latents' device."""
        device = generator.device if generator is not None else torch.device("cpu")
        eps = torch.randn(self.mean.shape, generator=generator, device=device, dtype=self.mean.dtype)
        return self.mean + self.std * eps.to(self.mean.device)

    def mode(self) -> torch.Tensor:
        return self.mean

    def kl(self) -> torch.Tensor:
        """KL divergence to the standard normal, summed over all but the batch dimension."""
        if self.deterministic:
            return torch.zeros(self.mean.shape[0], device=self.mean.device)
        dims = list(range(1, self.mean.dim()))
        return 0.5 * torch.sum(self.mean.pow(2) + self.var - 1.0 - self.logvar, dim=dims)


@dataclass
class AutoencoderKLOutput(ModelOutput):
    """`latent_dist`: the posterior over latents."""

    latent_dist: DiagonalGaussianDistribution | None = None


@dataclass
class DecoderOutput(ModelOutput):
    """`sample`: the decoded video `[B, 3, T, H, W]`."""

    sample: torch.Tensor | None = None


def _per_frame(x: torch.Tensor, fn) -> torch.Tensor:
    """Apply a 2-D op to every frame: [B, C, T, H, W] -> [(B T), C, H, W] -> fn -> [B, C', T, H', W'].

    In the channels-last layout (memory order B, T, H, W, C) both reshapes are free views.
    """
    batch, channels, steps, height, width = x.shape
    frames = x.transpose(1, 2).reshape(batch * steps, channels, height, width)
    out = fn(frames)
    return out.reshape(batch, steps, *out.shape[1:]).transpose(1, 2)


def _causal_conv3d(x: torch.Tensor, conv: nn.Conv3d, time_pad: int, space_pad: int) -> torch.Tensor:
    """`conv` with `time_pad` zero frames in front only (and symmetric spatial padding).

    Padding both ends inside the convolution and dropping the extra trailing outputs gives the same values as
    front-only padding, without materialising a padded copy (which would also lose the channels-last layout).
    """
    kernel, stride = conv.kernel_size[0], conv.stride[0]
    out = F.conv3d(x, conv.weight, conv.bias, conv.stride, (time_pad, space_pad, space_pad))
    steps = (x.shape[2] + time_pad - kernel) // stride + 1
    return out[:, :, :steps]


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis (dim 1) at every position of a [B, C, ...] tensor."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.norm = nn.LayerNorm(channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # channels-last tensors make both moves free views
        return self.norm(x.movedim(1, -1)).movedim(-1, 1)


class CausalConv3d(nn.Module):
    """3-D conv with zero padding only before the first frame in time (symmetric in space)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, time_stride: int = 1):
        super().__init__()
        self.time_pad = kernel_size - time_stride
        self.space_pad = (kernel_size - 1) // 2
        self.conv = nn.Conv3d(in_channels, out_channels, kernel_size, stride=(time_stride, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _causal_conv3d(x, self.conv, self.time_pad, self.space_pad)


class CausalConv1d(nn.Module):
    """1-D conv over time with zero padding only before the first frame. Stored as VidTok's Conv1d, applied to
    every pixel of a [B, C, T, H, W] tensor at once as a (k, 1, 1) 3-D convolution."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3):
        super().__init__()
        self.time_pad = kernel_size - 1
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.conv.weight[..., None, None]
        out = F.conv3d(x, weight, self.conv.bias, padding=(self.time_pad, 0, 0))
        return out[:, :, : x.shape[2]]


class SpatialResBlock(nn.Module):
    """Per-frame residual block: LN -> SiLU -> conv3x3 -> LN -> SiLU -> conv3x3, 1x1 shortcut if C changes."""

    def __init__(self, in_channels: int, out_channels: int, eps: float):
        super().__init__()
        self.norm1 = ChannelLayerNorm(in_channels, eps)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = ChannelLayerNorm(out_channels, eps)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        shortcut = x if self.nin_shortcut is None else self.nin_shortcut(x)
        return shortcut + h


class TemporalResBlock(nn.Module):
    """Per-pixel residual block over time with causal 1-D convs (input [B, C, T, H, W])."""

    def __init__(self, channels: int, eps: float):
        super().__init__()
        self.norm1 = ChannelLayerNorm(channels, eps)
        self.conv1 = CausalConv1d(channels, channels)
        self.norm2 = ChannelLayerNorm(channels, eps)
        self.conv2 = CausalConv1d(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        return x + self.conv2(F.silu(self.norm2(h)))


class CausalResBlock3D(nn.Module):
    """Residual block with causal 3-D convs (used in the middle of encoder and decoder)."""

    def __init__(self, channels: int, eps: float):
        super().__init__()
        self.norm1 = ChannelLayerNorm(channels, eps)
        self.conv1 = CausalConv3d(channels, channels)
        self.norm2 = ChannelLayerNorm(channels, eps)
        self.conv2 = CausalConv3d(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        return x + self.conv2(F.silu(self.norm2(h)))


class FrameAttention(nn.Module):
    """Single-head self-attention among the pixels of each frame (no attention across time)."""

    def __init__(self, channels: int, eps: float):
        super().__init__()
        self.norm = ChannelLayerNorm(channels, eps)
        self.q = CausalConv3d(channels, channels, kernel_size=1)
        self.k = CausalConv3d(channels, channels, kernel_size=1)
        self.v = CausalConv3d(channels, channels, kernel_size=1)
        self.proj_out = CausalConv3d(channels, channels, kernel_size=1)

    @staticmethod
    def _pointwise(x: torch.Tensor, conv: CausalConv3d) -> torch.Tensor:
        # a 1x1x1 conv is a linear map of the channels
        return F.linear(x, conv.conv.weight.flatten(1), conv.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, steps, height, width = x.shape
        h = self.norm(x).movedim(1, -1).reshape(batch, steps, height * width, channels)
        out = F.scaled_dot_product_attention(self._pointwise(h, self.q), self._pointwise(h, self.k),
                                             self._pointwise(h, self.v))
        out = self._pointwise(out, self.proj_out).reshape(batch, steps, height, width, channels)
        return x + out.movedim(-1, 1)


class SpatialDownsample(nn.Module):
    """Stride-2 3x3 conv per frame after padding one row/column at the bottom/right."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class SpatialUpsample(nn.Module):
    """Nearest 2x upsampling per frame (in float32) followed by a 3x3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x.float(), scale_factor=2.0, mode="nearest").to(x.dtype))


class TemporalDownsample(nn.Module):
    """Causal 2x time downsampling: sigmoid(mix) * avgpool3 + (1 - sigmoid(mix)) * strided causal conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = CausalConv3d(channels, channels, kernel_size=3, time_stride=2)
        self.mix_factor = nn.Parameter(torch.tensor([2.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = torch.sigmoid(self.mix_factor)
        pooled = F.avg_pool3d(F.pad(x, (0, 0, 0, 0, 1, 0)), kernel_size=(3, 1, 1), stride=(2, 1, 1))
        conv = self.conv(x)
        return alpha * pooled.contiguous(memory_format=_memory_format(conv)) + (1 - alpha) * conv


class TemporalUpsample(nn.Module):
    """2x time upsampling: nearest repeat (float32), mixed with a causal conv of it by sigmoid(mix)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = CausalConv3d(channels, channels, kernel_size=3)
        self.mix_factor = nn.Parameter(torch.tensor([2.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = torch.sigmoid(self.mix_factor)
        x = F.interpolate(x.float(), scale_factor=(2.0, 1.0, 1.0), mode="nearest").to(x.dtype)
        return alpha * x + (1 - alpha) * self.conv(x)


class _Level(nn.Module):
    """A container whose attribute names (`block`, `downsample`, `upsample`) give VidTok's parameter names."""

    def __init__(self, blocks: Sequence[nn.Module]):
        super().__init__()
        self.block = nn.ModuleList(blocks)


class _Middle(nn.Module):
    def __init__(self, channels: int, eps: float):
        super().__init__()
        self.block_1 = CausalResBlock3D(channels, eps)
        self.attn_1 = FrameAttention(channels, eps)
        self.block_2 = CausalResBlock3D(channels, eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


def _spatial_temporal(x: torch.Tensor, spatial: nn.Module, temporal: nn.Module) -> torch.Tensor:
    return temporal(_per_frame(x, spatial))


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    return torch.channels_last_3d if x.is_contiguous(memory_format=torch.channels_last_3d) else torch.contiguous_format


class VidTokEncoder(nn.Module):
    def __init__(self, in_channels, base_channels, channel_multipliers, num_res_blocks, latent_channels,
                 spatial_levels, temporal_levels, time_padding, eps):
        super().__init__()
        self.spatial_levels, self.temporal_levels = list(spatial_levels), list(temporal_levels)
        self.time_padding = time_padding
        self.conv_in = CausalConv3d(in_channels, base_channels)
        widths = [base_channels * m for m in channel_multipliers]
        self.down, self.down_temporal = nn.ModuleList(), nn.ModuleList()
        channels = base_channels
        for level, width in enumerate(widths):
            spatial = _Level([SpatialResBlock(channels if i == 0 else width, width, eps) for i in range(num_res_blocks)])
            temporal = _Level([TemporalResBlock(width, eps) for _ in range(num_res_blocks)])
            if level in self.spatial_levels:
                spatial.downsample = SpatialDownsample(width)
                if level in self.temporal_levels:
                    temporal.downsample = TemporalDownsample(width)
            self.down.append(spatial)
            self.down_temporal.append(temporal)
            channels = width
        self.mid = _Middle(channels, eps)
        self.norm_out = ChannelLayerNorm(channels, eps)
        self.conv_out = CausalConv3d(channels, 2 * latent_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[2] % (self.time_padding + 1):
            # the first frame is replicated so that it alone forms the first latent step
            x = torch.cat([x[:, :, :1].expand(-1, -1, self.time_padding, -1, -1), x], dim=2)
        h = self.conv_in(x)
        for level, (spatial, temporal) in enumerate(zip(self.down, self.down_temporal)):
            for spatial_block, temporal_block in zip(spatial.block, temporal.block):
                h = _spatial_temporal(h, spatial_block, temporal_block)
            if level in self.spatial_levels:
                h = _per_frame(h, spatial.downsample)
                if level in self.temporal_levels:
                    h = temporal.downsample(h)
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class VidTokDecoder(nn.Module):
    def __init__(self, out_channels, base_channels, channel_multipliers, num_res_blocks, latent_channels,
                 spatial_levels, temporal_levels, time_padding, eps):
        super().__init__()
        self.spatial_levels, self.temporal_levels = list(spatial_levels), list(temporal_levels)
        self.time_padding = time_padding
        widths = [base_channels * m for m in channel_multipliers]
        channels = widths[-1]
        self.conv_in = CausalConv3d(latent_channels, channels)
        self.mid = _Middle(channels, eps)
        up, up_temporal = [], []
        for level in reversed(range(len(widths))):
            width = widths[level]
            spatial = _Level([SpatialResBlock(channels if i == 0 else width, width, eps) for i in range(num_res_blocks + 1)])
            temporal = _Level([TemporalResBlock(width, eps) for _ in range(num_res_blocks + 1)])
            if level in self.spatial_levels:
                spatial.upsample = SpatialUpsample(width)
            if level in self.temporal_levels:
                temporal.upsample = TemporalUpsample(width)
            up.insert(0, spatial)
            up_temporal.insert(0, temporal)
            channels = width
        self.up, self.up_temporal = nn.ModuleList(up), nn.ModuleList(up_temporal)
        self.norm_out = ChannelLayerNorm(channels, eps)
        self.conv_out = CausalConv3d(channels, out_channels)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))
        for level in reversed(range(len(self.up))):
            spatial, temporal = self.up[level], self.up_temporal[level]
            for spatial_block, temporal_block in zip(spatial.block, temporal.block):
                h = _spatial_temporal(h, spatial_block, temporal_block)
            if level in self.spatial_levels:
                h = _per_frame(h, spatial.upsample)
                if level in self.temporal_levels:
                    h = temporal.upsample(h)
        h = self.conv_out(F.silu(self.norm_out(h)))
        # the first `time_padding` frames only exist to make the first latent step cover one frame
        return h[:, :, self.time_padding :]


class VidTokVAE(nn.Module):
    """VidTok v1 causal KL VAE. `encode(x).latent_dist` -> posterior over `[B, latent_channels, t, h, w]`;
    `decode(z).sample` -> `[B, 3, 4t - 3, H, W]` (for the default 4x temporal factor). Pixels are in [-1, 1];
    latents are used raw (no scaling factor) and decoded frames are not clamped.
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        base_channels: int = 128,
        channel_multipliers: Sequence[int] = (1, 2, 4, 4),
        num_res_blocks: int = 2,
        latent_channels: int = 16,
        temporal_downsample_factor: int = 4,
        norm_eps: float = 1e-6,
    ):
        super().__init__()
        num_levels = len(channel_multipliers)
        if num_levels < 3:
            raise ValueError(f"channel_multipliers needs at least 3 levels, got {list(channel_multipliers)}.")
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels),
                            ("base_channels", base_channels), ("num_res_blocks", num_res_blocks),
                            ("latent_channels", latent_channels)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"VidTokVAE {name} must be a positive integer, got {value!r}.")
        # VidTok's defaults: spatial 2x at every level but the last; time 2x at the two levels before it
        spatial_down = list(range(num_levels - 1))
        temporal_down = [num_levels - 2, num_levels - 3]
        spatial_up = list(range(1, num_levels))
        temporal_up = [1, 2]
        if temporal_downsample_factor != 2 ** len(temporal_down):
            raise ValueError(
                f"temporal_downsample_factor must be {2 ** len(temporal_down)} for VidTok's level layout, "
                f"got {temporal_downsample_factor}."
            )
        self.in_channels, self.latent_channels = in_channels, latent_channels
        # run convolutions and LayerNorms in the channels-last layout (B, T, H, W, C): much faster on CPU; the
        # straightforward channels-first layout is kept for comparison (benchmarks) by setting this to False
        self.channels_last = True
        self.spatial_compression_ratio = 2 ** len(spatial_down)
        self.temporal_compression_ratio = temporal_downsample_factor
        time_padding = temporal_downsample_factor - 1
        common = dict(base_channels=base_channels, channel_multipliers=list(channel_multipliers),
                      num_res_blocks=num_res_blocks, latent_channels=latent_channels, time_padding=time_padding,
                      eps=norm_eps)
        self.encoder = VidTokEncoder(in_channels, spatial_levels=spatial_down, temporal_levels=temporal_down, **common)
        self.decoder = VidTokDecoder(out_channels, spatial_levels=spatial_up, temporal_levels=temporal_up, **common)

    def _check(self, x: torch.Tensor, name: str, channels: int) -> None:
        if not isinstance(x, torch.Tensor) or x.dim() != 5:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{name} must be a 5-D tensor [B, {channels}, T, H, W], got {shape}.")
        if x.shape[1] != channels:
            raise ValueError(f"{name} must have {channels} channels in dim 1, got shape {tuple(x.shape)}.")
        if not x.dtype.is_floating_point:
            raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}.")
        if 0 in x.shape:
            raise ValueError(f"{name} is empty: shape {tuple(x.shape)}.")

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last_3d if self.channels_last else torch.contiguous_format)

    def encode(self, videos: torch.Tensor, return_dict: bool = True) -> AutoencoderKLOutput | tuple:
        """`videos [B, 3, T, H, W]` in [-1, 1] (H, W multiples of 8) -> posterior over latents."""
        self._check(videos, "videos", self.in_channels)
        factor = self.spatial_compression_ratio
        if videos.shape[-1] % factor or videos.shape[-2] % factor:
            raise ValueError(
                f"videos height and width must be multiples of {factor}, got {tuple(videos.shape[-2:])}."
            )
        moments = self.encoder(self._layout(videos)).contiguous()
        posterior = DiagonalGaussianDistribution(moments)
        if not return_dict:
            return (posterior,)
        return AutoencoderKLOutput(latent_dist=posterior)

    def decode(self, latents: torch.Tensor, return_dict: bool = True) -> DecoderOutput | tuple:
        """`latents [B, C, t, h, w]` -> `DecoderOutput(sample=[B, 3, 4t - 3, 8h, 8w])` (not clamped)."""
        self._check(latents, "latents", self.latent_channels)
        video = self.decoder(self._layout(latents)).contiguous()
        if not return_dict:
            return (video,)
        return DecoderOutput(sample=video)

    def forward(self, videos: torch.Tensor, sample_posterior: bool = False,
                generator: torch.Generator | None = None) -> DecoderOutput:
        posterior = self.encode(videos).latent_dist
        latents = posterior.sample(generator=generator) if sample_posterior else posterior.mode()
        return self.decode(latents)

    @staticmethod
    def config_from_state_dict(state_dict: dict[str, torch.Tensor], prefix: str = "") -> dict:
        """Constructor arguments of the VAE a VidTok state dict was made for (widths from weight shapes)."""
        try:
            conv_in = state_dict[f"{prefix}encoder.conv_in.conv.weight"]
            conv_out = state_dict[f"{prefix}encoder.conv_out.conv.weight"]
            decoder_out = state_dict[f"{prefix}decoder.conv_out.conv.weight"]
        except KeyError as missing:
            raise ValueError(f"not a VidTok v1 VAE state dict: {missing} is missing.") from None
        base = conv_in.shape[0]
        levels = sorted({int(k[len(prefix):].split(".")[2]) for k in state_dict
                         if k.startswith(f"{prefix}encoder.down.")})
        multipliers = []
        for level in levels:
            weight = state_dict[f"{prefix}encoder.down.{level}.block.0.conv1.weight"]
            if weight.shape[0] % base:
                raise ValueError(f"VidTok level {level} width {weight.shape[0]} is not a multiple of {base}.")
            multipliers.append(weight.shape[0] // base)
        blocks = {k[len(prefix):].split(".")[4] for k in state_dict if k.startswith(f"{prefix}encoder.down.0.block.")}
        return {
            "in_channels": conv_in.shape[1],
            "out_channels": decoder_out.shape[0],
            "base_channels": base,
            "channel_multipliers": multipliers,
            "num_res_blocks": len(blocks),
            "latent_channels": conv_out.shape[0] // 2,
        }
