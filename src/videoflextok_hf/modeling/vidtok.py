"""VidTok v1 causal KL video VAE, as frozen inside VideoFlexTok.

Compression: 4x in time, 8x8 in space, 16 latent channels. A clip of 1 + 4k frames maps to 1 + k latent frames and
back. The model is causal in time: spatial operations act on each frame separately, temporal convolutions pad only
before the first frame, and attention stays within a frame.

This is VidTok **v1** (zero-padded causal convolutions, nearest temporal upsampling), which is what the VideoFlexTok
resampler was trained on. diffusers' `AutoencoderVidTok` follows v1.1 (replicate padding, trilinear temporal
upsampling): its parameter names are the same, but its latents differ. The parameter names here are VidTok's own,
so a VideoFlexTok checkpoint loads after stripping the prefix `video_tokenizer.vae.vidtok.`.

Layout of the network (L = len(channel_multipliers) resolution levels, width_i = base_channels * multiplier_i):
    encoder: conv_in -> per level: num_res_blocks x (spatial res block, temporal res block), then 2x spatial
             downsampling (and at two levels 2x temporal downsampling) -> mid (3-D res block, attention, 3-D res
             block) -> norm, SiLU, conv_out -> mean and log-variance.
    decoder: the mirror image with num_res_blocks + 1 blocks per level and upsampling instead of downsampling.
The only normalisation is LayerNorm over channels (eps 1e-6) at every position; the activation is SiLU.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from diffusers.models.autoencoders.vae import DecoderOutput, DiagonalGaussianDistribution
from diffusers.models.modeling_outputs import AutoencoderKLOutput
from torch import nn

from .transformer import linear

__all__ = [
    "AutoencoderKLOutput",
    "DecoderOutput",
    "DiagonalGaussianDistribution",
    "VidTokPosterior",
    "VidTokVAE",
]


#################################################################################
#                                  Posterior                                    #
#################################################################################


class VidTokPosterior(DiagonalGaussianDistribution):
    """diffusers' diagonal Gaussian whose `sample()` draws its noise the way the official VidTok code does.

    The noise is drawn in float32 on the generator's device (the global CPU RNG when no generator is given) and then
    moved to the latents' device, so a seed gives the same latents on every device. diffusers would draw on the
    latents' device instead, which only matches the official numbers on CPU.
    """

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        noise_device = generator.device if generator is not None else torch.device("cpu")
        noise = torch.randn(self.mean.shape, generator=generator, device=noise_device, dtype=torch.float32)
        return (self.mean + self.std * noise.to(self.mean.device)).to(self.mean.dtype)


#################################################################################
#                                  Primitives                                   #
#################################################################################


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    """Activations live channels-last (`[B, T, H, W, C]` in memory) inside the VAE: oneDNN's convolutions are
    fastest there, the channel LayerNorms read contiguous rows without transposing copies, and every elementwise op
    sees one layout (mixed layouts make a residual add several times slower)."""
    return x.contiguous(memory_format=torch.channels_last_3d)


def _frames(x: torch.Tensor) -> torch.Tensor:
    """`[B, C, T, H, W]` -> `[B * T, C, H, W]`; a view (channels-last) for a channels-last input."""
    batch, channels, steps, height, width = x.shape
    return x.transpose(1, 2).reshape(batch * steps, channels, height, width)


def _unframes(y: torch.Tensor, batch: int) -> torch.Tensor:
    """Inverse of `_frames`: `[B * T, C, H, W]` -> `[B, C, T, H, W]` (a view)."""
    return y.reshape(batch, -1, *y.shape[1:]).transpose(1, 2)


def _frame_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride, padding) -> torch.Tensor:
    """A 2-D convolution of every frame of `[B, C, T, H, W]`, run as one channels-last `conv2d` over the frames
    folded into the batch (a view, no copy). oneDNN's channels-last 2-D kernels are the fastest CPU convolutions
    here, and their output stays channels-last (a channels-last `conv3d` returns the default layout)."""
    weight = weight.contiguous(memory_format=torch.channels_last)
    return _unframes(F.conv2d(_frames(x), weight, bias, stride, padding), x.shape[0])


class _TemporalState:
    """Causal history of one module while a clip streams through the VAE in chunks of frames (`None` otherwise).

    Temporal operators only look back, so a chunk computed with the last frames of the previous chunk in front
    (instead of the clip's zero padding) gives exactly the frames of the one-pass result; memory then depends on
    the chunk, not on the clip length."""

    def __init__(self):
        self.tail: torch.Tensor | None = None


@contextmanager
def _streaming(network: nn.Module):
    """Give every temporal operator of `network` a fresh causal history for the duration of one streamed clip."""
    temporal = [m for m in network.modules() if isinstance(m, (CausalConv3d, CausalConv1d, TemporalDownsample,
                                                                 TemporalUpsample))]
    for module in temporal:
        module._temporal_state = _TemporalState()
    try:
        yield
    finally:
        for module in temporal:
            del module._temporal_state


def _with_history(module: nn.Module, x: torch.Tensor, frames: int) -> torch.Tensor:
    """`x` with `frames` frames in front: zeros at the start of a clip, else the end of the previous chunk."""
    state = getattr(module, "_temporal_state", None)
    if state is not None and state.tail is not None:
        padded = torch.cat([state.tail, x], dim=2)
    else:
        padded = F.pad(x, (0, 0, 0, 0, frames, 0))
    if state is not None:
        state.tail = padded[:, :, padded.shape[2] - frames :].clone()
    return padded


def _silu(x: torch.Tensor) -> torch.Tensor:
    """SiLU, in place when no gradient flows through `x` (the frozen VAE): `x` is always a fresh normalised
    activation here, so this only saves one full-size buffer per block."""
    return F.silu(x, inplace=not (x.requires_grad and torch.is_grad_enabled()))


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis (dim 1) at every position of a [B, C, ...] tensor."""

    def __init__(self, channels: int, eps: float):
        super().__init__()
        self.norm = nn.LayerNorm(channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.movedim(1, -1)).movedim(-1, 1)


class FrameConv2d(nn.Conv2d):
    """A 2-D convolution applied to every frame of a [B, C, T, H, W] video. Stored exactly like `nn.Conv2d`.

    It runs as one channels-last `conv2d` over the frames folded into the batch (see `_frame_conv`).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _frame_conv(x, self.weight, self.bias, self.stride, self.padding)


# Every parameter below is read only inside the forward of the module that owns it: accelerate's sequential CPU
# offload (diffusers' `enable_sequential_cpu_offload`) keeps weights on the meta device and loads each module's own
# weights in a hook around that module's forward, so a parent reading its child's `weight` would see a meta tensor.
# Hence the small `nn.Conv*` subclasses whose forward is the operation their parent needs (stored exactly like the
# plain `nn.Conv*`, so the state-dict keys and shapes are VidTok's).


class FrameTapsConv3d(nn.Conv3d):
    """`nn.Conv3d` (no time padding) whose forward takes an input that already carries its front time padding and
    runs one channels-last 2-D convolution per temporal tap, summed (see `_frame_conv`; the same products as the
    3-D convolution)."""

    def forward(self, padded: torch.Tensor) -> torch.Tensor:
        kernel, stride = self.weight.shape[2], self.stride[0]
        steps = (padded.shape[2] - kernel) // stride + 1
        out = None
        for tap in range(kernel):
            frames = padded[:, :, tap : tap + stride * (steps - 1) + 1 : stride]
            term = _frame_conv(frames, self.weight[:, :, tap], self.bias if tap == 0 else None, 1, self.padding[1:])
            out = term if out is None else out.add_(term)
        return out


class CausalConv3d(nn.Module):
    """3-D convolution that pads time with zero frames at the front only, and space symmetrically with zeros.

    With kernel k and time stride s the front padding is k - s frames, so stride 1 keeps the frame count and output
    frame j depends on input frames <= s * j only. `conv(padded)` is the convolution alone, on an input that already
    carries its front padding.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, time_stride: int = 1):
        super().__init__()
        self.time_padding = kernel_size - time_stride
        self.conv = FrameTapsConv3d(
            in_channels, out_channels, kernel_size, stride=(time_stride, 1, 1),
            padding=(0, kernel_size // 2, kernel_size // 2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(_with_history(self, x, self.time_padding))


class PixelwiseConv1d(nn.Conv1d):
    """`nn.Conv1d` over time applied at every pixel of a (front-padded) [B, C, T, H, W] video, run as a (k, 1) 2-D
    convolution over `[B, C, T, H * W]` (a view of the channels-last video): the same per-pixel 1-D convolution
    without moving the pixels into the batch dimension. Not as a (k, 1, 1) 3-D convolution: for one clip at a small
    width PyTorch does not hand that to oneDNN, and its fallback is 2-3x slower and returns the default layout
    (measured at 4 channels x 6 x 128 x 128, 2-core AMD EPYC: 0.45 vs 0.24 ms, plus a layout copy per use); at the
    real widths both run the same oneDNN kernel (bit-identical)."""

    def forward(self, padded: torch.Tensor) -> torch.Tensor:
        batch, channels, steps, height, width = padded.shape
        pixels = _channels_last(padded).view(batch, channels, steps, height * width)
        weight = self.weight[..., None].contiguous(memory_format=torch.channels_last)
        out = F.conv2d(pixels, weight, self.bias)
        return out.view(batch, out.shape[1], out.shape[2], height, width)


class CausalConv1d(nn.Module):
    """1-D convolution over time with zero frames at the front only, applied independently at every pixel.

    The weight is stored as VidTok's Conv1d; it runs as a (k, 1) 2-D convolution over the pixels in a row (see
    `PixelwiseConv1d`), the same per-pixel 1-D convolution without moving the pixels into the batch dimension.
    """

    def __init__(self, channels: int, kernel_size: int = 3):
        super().__init__()
        self.time_padding = kernel_size - 1
        self.conv = PixelwiseConv1d(channels, channels, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(_with_history(self, x, self.time_padding))


class TokenConv3d(nn.Conv3d):
    """`nn.Conv3d` with a 1x1x1 kernel, applied as a linear map to channels-last tokens `[..., C]`."""

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return linear(tokens, self.weight.flatten(1), self.bias)


class PointwiseConv3d(nn.Module):
    """A 1x1x1 convolution (VidTok's attention projections), applied as a linear map to channels-last tokens."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = TokenConv3d(channels, channels, 1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.conv(tokens)


#################################################################################
#                                Residual blocks                                #
#################################################################################


class SpatialResBlock(nn.Module):
    """Residual block acting on each frame separately: (LN, SiLU, 3x3 conv) twice; a 1x1 conv shortcut if C changes."""

    def __init__(self, in_channels: int, out_channels: int, eps: float):
        super().__init__()
        self.norm1 = ChannelLayerNorm(in_channels, eps)
        self.conv1 = FrameConv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = ChannelLayerNorm(out_channels, eps)
        self.conv2 = FrameConv2d(out_channels, out_channels, 3, padding=1)
        if in_channels != out_channels:
            self.nin_shortcut = FrameConv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(_silu(self.norm1(x)))
        h = self.conv2(_silu(self.norm2(h)))
        shortcut = self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x
        return shortcut + h


class TemporalResBlock(nn.Module):
    """Residual block over time at every pixel of [B, C, T, H, W]: (LN, SiLU, causal 1-D conv) twice."""

    def __init__(self, channels: int, eps: float):
        super().__init__()
        self.norm1 = ChannelLayerNorm(channels, eps)
        self.conv1 = CausalConv1d(channels)
        self.norm2 = ChannelLayerNorm(channels, eps)
        self.conv2 = CausalConv1d(channels)
        # VidTok starts every temporal block as the identity
        nn.init.zeros_(self.conv2.conv.weight)
        nn.init.zeros_(self.conv2.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(_silu(self.norm1(x)))
        return x + self.conv2(_silu(self.norm2(h)))


class CausalResBlock3d(nn.Module):
    """Residual block with causal 3x3x3 convolutions (the middle of the encoder and the decoder)."""

    def __init__(self, channels: int, eps: float):
        super().__init__()
        self.norm1 = ChannelLayerNorm(channels, eps)
        self.conv1 = CausalConv3d(channels, channels)
        self.norm2 = ChannelLayerNorm(channels, eps)
        self.conv2 = CausalConv3d(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(_silu(self.norm1(x)))
        return x + self.conv2(_silu(self.norm2(h)))


class FrameAttention(nn.Module):
    """Single-head self-attention among the pixels of each frame, with a residual connection.

    The head dimension is the full channel width and the scale is the default C^-1/2. Frames never attend to each
    other, which keeps the model causal.
    """

    def __init__(self, channels: int, eps: float):
        super().__init__()
        self.norm = ChannelLayerNorm(channels, eps)
        self.q = PointwiseConv3d(channels)
        self.k = PointwiseConv3d(channels)
        self.v = PointwiseConv3d(channels)
        self.proj_out = PointwiseConv3d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, frames, height, width = x.shape
        tokens = self.norm(x).movedim(1, -1).reshape(batch, frames, height * width, channels)
        attended = F.scaled_dot_product_attention(self.q(tokens), self.k(tokens), self.v(tokens))
        out = self.proj_out(attended).reshape(batch, frames, height, width, channels)
        return x + out.movedim(-1, 1)


class MidBlock(nn.Module):
    def __init__(self, channels: int, eps: float):
        super().__init__()
        self.block_1 = CausalResBlock3d(channels, eps)
        self.attn_1 = FrameAttention(channels, eps)
        self.block_2 = CausalResBlock3d(channels, eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


#################################################################################
#                                  Resampling                                   #
#################################################################################


class SpatialDownsample(nn.Module):
    """2x down per frame: one zero row/column at the bottom/right, then a 3x3 conv with stride 2."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = FrameConv2d(channels, channels, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


# Which of the 3 taps of a 3x3 kernel row fall on each of the 2 source rows an output row of a 2x nearest-upsampled
# image sees: an even output row 2i sees source rows (i - 1, i) with taps (0, 1 + 2); an odd one, 2i + 1, sees
# (i, i + 1) with taps (0 + 1, 2). Indexed [phase, source row, tap]; the same holds for columns.
_NEAREST_2X_TAPS = ((1.0, 0.0, 0.0), (0.0, 1.0, 1.0)), ((1.0, 1.0, 0.0), (0.0, 0.0, 1.0))


class NearestUpsampledConv2d(nn.Conv2d):
    """A 3x3 `nn.Conv2d` (padding 1; stored exactly like it) applied to every frame of `[B, C, T, H, W]` after a 2x
    nearest-neighbour upsampling, computed without making the upsampled frames.

    Each of the four output phases (even / odd row, even / odd column) of the upsampled convolution is a 2x2
    convolution of the original frame whose weights are sums of the 3x3 weights (`_NEAREST_2X_TAPS`), so one
    channels-last 2x2 convolution with 4x the output channels gives all four, and they are interleaved into the
    output: 16 instead of 36 multiply-adds per source pixel and output channel. Same numbers up to float rounding
    (the summed weights); on a 2-core AMD EPYC the decoder's 64 -> 128 upsampling convolution (2 x 256 x 64 x 64)
    takes 120 ms instead of 212 ms."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, height, width, out_channels = x.shape[0], x.shape[3], x.shape[4], self.out_channels
        taps = torch.tensor(_NEAREST_2X_TAPS, dtype=torch.float32, device=x.device)
        # [row phase, column phase, out, in, 2, 2], built in float32 (the sums) and cast to the input's dtype
        phases = torch.einsum("ary,oiyx,bsx->aboirs", taps, self.weight.float(), taps).to(x.dtype)
        weight = phases.reshape(4 * out_channels, self.in_channels, 2, 2)
        bias = None if self.bias is None else self.bias.repeat(4)
        # output (m, n) of the padded 2x2 convolution covers source rows m - 1, m and columns n - 1, n: phase (a, b)
        # of output pixel (2i + a, 2j + b) is at (i + a, j + b)
        frames = _frames(_frame_conv(x, weight, bias, 1, 1))
        frames = frames.permute(0, 2, 3, 1).unflatten(-1, (2, 2, out_channels))  # [N, H + 1, W + 1, 2, 2, C]
        out = frames.new_empty(frames.shape[0], height, 2, width, 2, out_channels)
        for a in (0, 1):
            for b in (0, 1):
                out[:, :, a, :, b] = frames[:, a : a + height, b : b + width, a, b]
        out = out.view(-1, 2 * height, 2 * width, out_channels).permute(0, 3, 1, 2)  # channels-last NCHW
        return _unframes(out, batch)


class SpatialUpsample(nn.Module):
    """2x up per frame: nearest-neighbour repeat, then a 3x3 conv (computed in one step, see
    `NearestUpsampledConv2d`)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = NearestUpsampledConv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class TemporalDownsample(nn.Module):
    """2x causal down in time: a learned blend of a 3-frame average and a strided causal conv.

    Both branches see one zero frame in front, so T frames become (T - 2) // 2 + 1 (20 -> 10 -> 5).
    """

    def __init__(self, channels: int):
        super().__init__()
        self.conv = CausalConv3d(channels, channels, kernel_size=3, time_stride=2)
        self.mix_factor = nn.Parameter(torch.full((1,), 2.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = torch.sigmoid(self.mix_factor)
        padded = _with_history(self, x, self.conv.time_padding)  # both branches see the same frame in front
        if x.dtype in (torch.float32, torch.float64):
            averaged = F.avg_pool3d(padded, kernel_size=(3, 1, 1), stride=(2, 1, 1))
            if x.is_contiguous(memory_format=torch.channels_last_3d):
                averaged = _channels_last(averaged)  # avg_pool3d returns the default layout
        else:  # the CPU has no bfloat16/float16 avg_pool3d: the same 3-frame mean with stride 2, written out
            last = padded.shape[2] - 2
            averaged = (padded[:, :, 0:last:2] + padded[:, :, 1 : last + 1 : 2] + padded[:, :, 2 : last + 2 : 2]) / 3
        return alpha * averaged + (1 - alpha) * self.conv.conv(padded)


class RepeatedFramesConv3d(nn.Conv3d):
    """`nn.Conv3d` (3 taps in time, no time padding) whose forward is VidTok's causal conv of the clip with every
    frame repeated twice, returned as the outputs at the even and at the odd repeated frames.

    The conv never sees the repeated clip: with u[2j] = u[2j+1] = x[j] its output is
    out[2j] = (W0 + W1) x[j-1] + W2 x[j] and out[2j+1] = W0 x[j-1] + (W1 + W2) x[j], so the three taps are applied
    once to the T input frames (`P_k = W_k x`) and combined, half the FLOPs of convolving the 2T repeated frames
    (the decoder's largest operation) and no repeated copy. Same products; sums in a different order. While
    streaming, `state` carries (P0, P0 + P1) of the previous chunk's last frame (x[-1] of the first frame here).
    """

    def forward(self, x: torch.Tensor, state: _TemporalState | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        p0, p1, p2 = (_frame_conv(x, self.weight[:, :, tap], None, 1, self.padding[1:]) for tap in range(3))
        earlier = state.tail if state is not None and state.tail is not None else None
        odd = p1 + p2
        odd[:, :, 1:] += p0[:, :, :-1]
        last_p0 = p0[:, :, -1:].clone() if state is not None else None
        summed = p0.add_(p1)  # P0 + P1
        even = p2
        even[:, :, 1:] += summed[:, :, :-1]
        if earlier is not None:
            odd[:, :, :1] += earlier[0]
            even[:, :, :1] += earlier[1]
        if state is not None:
            state.tail = (last_p0, summed[:, :, -1:].clone())
        bias = self.bias[:, None, None, None]
        return even.add_(bias), odd.add_(bias)


class RepeatedFramesCausalConv3d(nn.Module):
    """The causal 3x3x3 conv of `TemporalUpsample` (stored like `CausalConv3d`: `conv.weight`, `conv.bias`), applied
    to the clip with every frame repeated twice; see `RepeatedFramesConv3d`."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = RepeatedFramesConv3d(channels, channels, 3, padding=(0, 1, 1))

    def forward(self, x: torch.Tensor, state: _TemporalState | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.conv(x, state)


class TemporalUpsample(nn.Module):
    """2x up in time: every frame repeated twice, blended with a causal 3-tap conv of the repeated frames."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = RepeatedFramesCausalConv3d(channels)
        self.mix_factor = nn.Parameter(torch.full((1,), 2.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = torch.sigmoid(self.mix_factor)
        even, odd = self.conv(x, getattr(self, "_temporal_state", None))
        # interleave channels-last: [B, T, 2, H, W, C] -> frames 2j (even) and 2j + 1 (odd)
        batch, channels, steps, height, width = x.shape
        out = torch.stack([even.permute(0, 2, 3, 4, 1), odd.permute(0, 2, 3, 4, 1)], dim=2)
        del even, odd
        repeated = x.permute(0, 2, 3, 4, 1).unsqueeze(2)  # broadcast over the pair = the nearest repeat
        if torch.is_grad_enabled() and (x.requires_grad or self.mix_factor.requires_grad):
            out = alpha * repeated + (1 - alpha) * out
        else:
            # in place: (1 - alpha) * (conv + bias) + alpha * repeated, the same products and sum as the formula
            out = out.mul_(1 - alpha).add_(repeated * alpha)
        return out.reshape(batch, 2 * steps, height, width, -1).permute(0, 4, 1, 2, 3)


#################################################################################
#                               Encoder / Decoder                               #
#################################################################################


class Level(nn.Module):
    """The residual blocks of one resolution level and its optional resampler.

    The attribute names (`block`, `downsample`, `upsample`) are VidTok's, so parameter names match its checkpoints.
    """

    def __init__(self, blocks: Sequence[nn.Module], downsample: nn.Module | None = None,
                 upsample: nn.Module | None = None):
        super().__init__()
        self.block = nn.ModuleList(blocks)
        if downsample is not None:
            self.downsample = downsample
        if upsample is not None:
            self.upsample = upsample


class VidTokEncoder(nn.Module):
    """[B, in_channels, T, H, W] -> moments [B, 2 * latent_channels, t, H/8, W/8] (mean, then log-variance)."""

    def __init__(self, in_channels: int, widths: Sequence[int], num_res_blocks: int, latent_channels: int,
                 spatial_levels: Sequence[int], temporal_levels: Sequence[int], temporal_factor: int, eps: float):
        super().__init__()
        self.temporal_factor = temporal_factor
        self.conv_in = CausalConv3d(in_channels, widths[0])
        self.down = nn.ModuleList()
        self.down_temporal = nn.ModuleList()
        channels = widths[0]
        for level, width in enumerate(widths):
            spatial_blocks = [SpatialResBlock(channels if i == 0 else width, width, eps) for i in range(num_res_blocks)]
            temporal_blocks = [TemporalResBlock(width, eps) for _ in range(num_res_blocks)]
            self.down.append(
                Level(spatial_blocks, downsample=SpatialDownsample(width) if level in spatial_levels else None)
            )
            self.down_temporal.append(
                Level(temporal_blocks, downsample=TemporalDownsample(width) if level in temporal_levels else None)
            )
            channels = width
        self.mid = MidBlock(channels, eps)
        self.norm_out = ChannelLayerNorm(channels, eps)
        self.conv_out = CausalConv3d(channels, 2 * latent_channels)

    def forward(self, x: torch.Tensor, latent_frames_per_chunk: int | None = None) -> torch.Tensor:
        """With `latent_frames_per_chunk`, the clip streams through in chunks of that many latent frames (see
        `_TemporalState`): the same numbers, memory of one chunk. Clips whose padded length is not a multiple of
        the temporal factor (never the 1 + 4k chunks VideoFlexTok uses) run in one pass."""
        if x.shape[2] % self.temporal_factor != 0:
            # factor - 1 copies of frame 0 in front make frame 0 alone fill the first latent frame
            first = x[:, :, :1].expand(-1, -1, self.temporal_factor - 1, -1, -1)
            x = torch.cat([first, x], dim=2)
        chunk = None if latent_frames_per_chunk is None else latent_frames_per_chunk * self.temporal_factor
        if chunk is None or x.shape[2] <= chunk or x.shape[2] % self.temporal_factor:
            return self._forward_frames(x)
        with _streaming(self):
            return torch.cat([self._forward_frames(part) for part in x.split(chunk, dim=2)], dim=2)

    def _forward_frames(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(_channels_last(x))
        for spatial, temporal in zip(self.down, self.down_temporal):
            for spatial_block, temporal_block in zip(spatial.block, temporal.block):
                h = spatial_block(h)
                h = temporal_block(h)
            if hasattr(spatial, "downsample"):
                h = spatial.downsample(h)
            if hasattr(temporal, "downsample"):
                h = temporal.downsample(h)
        h = self.mid(h)
        return self.conv_out(_silu(self.norm_out(h))).contiguous()


class VidTokDecoder(nn.Module):
    """Latents [B, latent_channels, t, h, w] -> video [B, out_channels, factor * t - (factor - 1), 8h, 8w]."""

    def __init__(self, out_channels: int, widths: Sequence[int], num_res_blocks: int, latent_channels: int,
                 spatial_levels: Sequence[int], temporal_levels: Sequence[int], temporal_factor: int, eps: float):
        super().__init__()
        self.temporal_factor = temporal_factor
        channels = widths[-1]
        self.conv_in = CausalConv3d(latent_channels, channels)
        self.mid = MidBlock(channels, eps)
        # built coarsest first (the order the data flows), stored finest first: up[i] belongs to level i
        up, up_temporal = [], []
        for level in reversed(range(len(widths))):
            width = widths[level]
            spatial_blocks = [
                SpatialResBlock(channels if i == 0 else width, width, eps) for i in range(num_res_blocks + 1)
            ]
            temporal_blocks = [TemporalResBlock(width, eps) for _ in range(num_res_blocks + 1)]
            up.insert(0, Level(spatial_blocks, upsample=SpatialUpsample(width) if level in spatial_levels else None))
            up_temporal.insert(
                0, Level(temporal_blocks, upsample=TemporalUpsample(width) if level in temporal_levels else None)
            )
            channels = width
        self.up = nn.ModuleList(up)
        self.up_temporal = nn.ModuleList(up_temporal)
        self.norm_out = ChannelLayerNorm(channels, eps)
        self.conv_out = CausalConv3d(channels, out_channels)

    def forward(self, z: torch.Tensor, latent_frames_per_chunk: int | None = None) -> torch.Tensor:
        """With `latent_frames_per_chunk`, the latents stream through in chunks (as in the encoder)."""
        if latent_frames_per_chunk is None or z.shape[2] <= latent_frames_per_chunk:
            h = self._forward_frames(z)
        else:
            with _streaming(self):
                h = torch.cat([self._forward_frames(part) for part in z.split(latent_frames_per_chunk, dim=2)], dim=2)
        # the leading frames mirror the encoder's front padding of frame 0
        return h[:, :, self.temporal_factor - 1 :].contiguous()

    def _forward_frames(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(_channels_last(z)))
        for spatial, temporal in zip(reversed(self.up), reversed(self.up_temporal)):
            for spatial_block, temporal_block in zip(spatial.block, temporal.block):
                h = spatial_block(h)
                h = temporal_block(h)
            if hasattr(spatial, "upsample"):
                h = spatial.upsample(h)
            if hasattr(temporal, "upsample"):
                h = temporal.upsample(h)
        return self.conv_out(_silu(self.norm_out(h)))


#################################################################################
#                                      VAE                                      #
#################################################################################


def _check_levels(name: str, levels: Sequence[int], num_levels: int) -> list[int]:
    levels = list(levels)
    if any(not isinstance(level, int) or not 0 <= level < num_levels for level in levels):
        raise ValueError(f"{name} must hold level indices in [0, {num_levels - 1}], got {levels}.")
    if len(set(levels)) != len(levels):
        raise ValueError(f"{name} must not repeat a level, got {levels}.")
    return levels


class VidTokVAE(nn.Module):
    """VidTok v1 causal KL VAE.

    `encode(videos)` takes `[B, 3, T, H, W]` in [-1, 1] (H and W multiples of 8) and returns the posterior over
    `[B, 16, t, H/8, W/8]` latents, t = ceil(T / 4). `decode` maps `[B, 16, t, h, w]` to `[B, 3, 4t - 3, 8h, 8w]`,
    so only clips of T = 1 + 4k frames (the released chunks have 17) come back whole. Latents are used raw (no
    scaling factor) and decoded frames are not clamped. The module never disables gradients itself: callers wrap
    inference in `torch.no_grad()`.

    The resampling levels default to VidTok's layout for L = len(channel_multipliers): spatial down at levels
    0..L-2, temporal down at L-2 and L-3, spatial up at levels 1..L-1, temporal up at 1 and 2.

    Slicing (as diffusers' VAEs): with `enable_slicing()` a batch (of videos, or of the chunks of long videos) runs
    through the VAE one item at a time, so memory stays that of one chunk. The default (`use_slicing = None`) slices
    inputs on the CPU, where one item at a time is also as fast per item (measured in `benchmarks/`), and batches
    them on accelerators. Results are the same either way up to float rounding.

    Framewise (as diffusers' causal video VAEs): with `enable_framewise()` a clip streams through the encoder and the
    decoder one latent frame (4 video frames) at a time, every temporal operator carrying the last frames of the
    previous chunk as its causal history, so memory no longer grows with the clip length. The default (`None`)
    streams on the CPU and runs whole clips on accelerators.
    """

    use_slicing: bool | None = None
    use_framewise_encoding: bool | None = None
    use_framewise_decoding: bool | None = None
    num_latent_frames_batch_size: int = 1

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
        spatial_downsample_levels: Sequence[int] | None = None,
        temporal_downsample_levels: Sequence[int] | None = None,
        spatial_upsample_levels: Sequence[int] | None = None,
        temporal_upsample_levels: Sequence[int] | None = None,
    ):
        super().__init__()
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels),
                            ("base_channels", base_channels), ("num_res_blocks", num_res_blocks),
                            ("latent_channels", latent_channels),
                            ("temporal_downsample_factor", temporal_downsample_factor)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        multipliers = list(channel_multipliers)
        if not multipliers or any(isinstance(m, bool) or not isinstance(m, int) or m < 1 for m in multipliers):
            raise ValueError(f"channel_multipliers must be a non-empty list of positive integers, got {multipliers}.")
        if not norm_eps > 0:
            raise ValueError(f"norm_eps must be positive, got {norm_eps!r}.")

        num_levels = len(multipliers)
        defaults_need = "the default resampling levels need at least 3 entries in channel_multipliers"
        if num_levels < 3 and None in (temporal_downsample_levels, temporal_upsample_levels):
            raise ValueError(f"{defaults_need}, got {multipliers}.")
        spatial_down = _check_levels(
            "spatial_downsample_levels",
            range(num_levels - 1) if spatial_downsample_levels is None else spatial_downsample_levels, num_levels
        )
        temporal_down = _check_levels(
            "temporal_downsample_levels",
            [num_levels - 2, num_levels - 3] if temporal_downsample_levels is None else temporal_downsample_levels,
            num_levels,
        )
        spatial_up = _check_levels(
            "spatial_upsample_levels",
            range(1, num_levels) if spatial_upsample_levels is None else spatial_upsample_levels, num_levels
        )
        temporal_up = _check_levels(
            "temporal_upsample_levels", [1, 2] if temporal_upsample_levels is None else temporal_upsample_levels,
            num_levels,
        )
        # VidTok only resamples in time at levels that also resample in space
        for name, temporal, spatial in (("temporal_downsample_levels", temporal_down, spatial_down),
                                        ("temporal_upsample_levels", temporal_up, spatial_up)):
            if not set(temporal) <= set(spatial):
                raise ValueError(f"{name} {temporal} must be a subset of the spatial levels {spatial}.")
        if len(spatial_down) != len(spatial_up):
            raise ValueError(
                f"the encoder downsamples space {len(spatial_down)} times but the decoder upsamples it "
                f"{len(spatial_up)} times (levels {spatial_down} vs {spatial_up})."
            )
        for name, levels in (("temporal_downsample_levels", temporal_down), ("temporal_upsample_levels", temporal_up)):
            if 2 ** len(levels) != temporal_downsample_factor:
                raise ValueError(
                    f"temporal_downsample_factor must be 2 ** len({name}) = {2 ** len(levels)}, "
                    f"got {temporal_downsample_factor}."
                )

        self.in_channels = in_channels
        self.out_channels = out_channels
        self._latent_channels = latent_channels
        self._spatial_factor = 2 ** len(spatial_down)
        self._temporal_factor = temporal_downsample_factor
        widths = [base_channels * m for m in multipliers]
        shared = dict(widths=widths, num_res_blocks=num_res_blocks, latent_channels=latent_channels,
                      temporal_factor=temporal_downsample_factor, eps=norm_eps)
        self.encoder = VidTokEncoder(in_channels, spatial_levels=spatial_down, temporal_levels=temporal_down, **shared)
        self.decoder = VidTokDecoder(out_channels, spatial_levels=spatial_up, temporal_levels=temporal_up, **shared)

    @property
    def dtype(self) -> torch.dtype:
        return self.encoder.conv_in.conv.weight.dtype

    def enable_slicing(self) -> None:
        """Run batches through the VAE one item at a time (memory of one chunk)."""
        self.use_slicing = True

    def disable_slicing(self) -> None:
        """Run a whole batch through the VAE at once."""
        self.use_slicing = False

    def enable_framewise(self, num_latent_frames_batch_size: int = 1) -> None:
        """Stream clips through the encoder and the decoder `num_latent_frames_batch_size` latent frames at a time
        (causal history carried between chunks): memory flat in the clip length, the same numbers."""
        if isinstance(num_latent_frames_batch_size, bool) or not isinstance(num_latent_frames_batch_size, int) or (
            num_latent_frames_batch_size < 1
        ):
            raise ValueError(f"num_latent_frames_batch_size must be a positive integer, got {num_latent_frames_batch_size!r}.")
        self.use_framewise_encoding = self.use_framewise_decoding = True
        self.num_latent_frames_batch_size = num_latent_frames_batch_size

    def disable_framewise(self) -> None:
        """Run every clip through the encoder and the decoder in one pass."""
        self.use_framewise_encoding = self.use_framewise_decoding = False

    def _chunk(self, setting: bool | None, inputs: torch.Tensor) -> int | None:
        framewise = inputs.device.type == "cpu" if setting is None else setting
        return self.num_latent_frames_batch_size if framewise else None

    def _sliced(self, function, inputs: torch.Tensor) -> torch.Tensor:
        slicing = inputs.device.type == "cpu" if self.use_slicing is None else self.use_slicing
        if not slicing or inputs.shape[0] == 1:
            return function(inputs)
        return torch.cat([function(item) for item in inputs.split(1)])

    @property
    def spatial_compression_ratio(self) -> int:
        return self._spatial_factor

    @property
    def temporal_compression_ratio(self) -> int:
        return self._temporal_factor

    @property
    def latent_channels(self) -> int:
        return self._latent_channels

    # -----------------------------------------------------------------------------------------------------------
    # inference

    @staticmethod
    def _check_input(x: torch.Tensor, name: str, channels: int, layout: str) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor {layout}, got {type(x).__name__}.")
        if x.dim() != 5:
            raise ValueError(f"{name} must be a 5-D tensor {layout}, got shape {tuple(x.shape)}.")
        if x.shape[1] != channels:
            raise ValueError(f"{name} must have {channels} channels in dim 1 {layout}, got shape {tuple(x.shape)}.")
        if not x.dtype.is_floating_point:
            raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}.")
        if x.numel() == 0:
            raise ValueError(f"{name} must not be empty, got shape {tuple(x.shape)}.")

    def encode(self, videos: torch.Tensor, return_dict: bool = True) -> AutoencoderKLOutput | tuple:
        """`videos [B, 3, T, H, W]` in [-1, 1] -> `AutoencoderKLOutput(latent_dist)` over `[B, 16, t, H/8, W/8]`.

        `latent_dist.sample(generator)` reproduces the official (stochastic) encoding; `latent_dist.mode()` is the
        deterministic mean.
        """
        self._check_input(videos, "videos", self.in_channels, f"[B, {self.in_channels}, T, H, W]")
        factor = self.spatial_compression_ratio
        height, width = videos.shape[-2:]
        if height % factor or width % factor:
            raise ValueError(f"videos height and width must be multiples of {factor}, got {height}x{width}.")
        chunk = self._chunk(self.use_framewise_encoding, videos)
        posterior = VidTokPosterior(self._sliced(lambda item: self.encoder(item, chunk), videos))
        return AutoencoderKLOutput(latent_dist=posterior) if return_dict else (posterior,)

    def decode(self, latents: torch.Tensor, return_dict: bool = True) -> DecoderOutput | tuple:
        """`latents [B, 16, t, h, w]` -> `DecoderOutput(sample=[B, 3, 4t - 3, 8h, 8w])`."""
        channels = self.latent_channels
        self._check_input(latents, "latents", channels, f"[B, {channels}, t, h, w]")
        chunk = self._chunk(self.use_framewise_decoding, latents)
        video = self._sliced(lambda item: self.decoder(item, chunk), latents)
        return DecoderOutput(sample=video) if return_dict else (video,)

    def forward(self, videos: torch.Tensor, sample_posterior: bool = False,
                generator: torch.Generator | None = None) -> DecoderOutput:
        """Round trip: encode, take the posterior mean (or a sample), decode."""
        posterior = self.encode(videos).latent_dist
        latents = posterior.sample(generator=generator) if sample_posterior else posterior.mode()
        return self.decode(latents)

    # -----------------------------------------------------------------------------------------------------------
    # checkpoints

    @classmethod
    def config_from_state_dict(cls, state_dict: Mapping[str, torch.Tensor], prefix: str = "") -> dict:
        """Constructor arguments for the VAE a VidTok v1 state dict was made for, read from key names and shapes.

        Keys are expected as `{prefix}encoder.*` / `{prefix}decoder.*` (for a VideoFlexTok checkpoint the prefix is
        `video_tokenizer.vae.vidtok.`). Resampling levels are returned only where they differ from the defaults.
        """
        keys = {key[len(prefix):] for key in state_dict if key.startswith(prefix)}

        def weight(name: str) -> torch.Tensor:
            if name not in keys:
                raise ValueError(
                    f"state dict does not look like a VidTok v1 VAE: key {prefix + name!r} is missing "
                    f"({len(keys)} keys start with prefix {prefix!r})."
                )
            return state_dict[prefix + name]

        def indices(head: str, position: int, tail: str = "") -> list[int]:
            """Sorted distinct integers at dot-separated `position` of the keys that start with `head`."""
            found = set()
            for key in keys:
                parts = key.split(".")
                if key.startswith(head) and len(parts) > position and parts[position].isdigit():
                    if key.endswith(tail):
                        found.add(int(parts[position]))
            return sorted(found)

        conv_in = weight("encoder.conv_in.conv.weight")
        moments = weight("encoder.conv_out.conv.weight")
        decoder_in = weight("decoder.conv_in.conv.weight")
        decoder_out = weight("decoder.conv_out.conv.weight")
        if conv_in.dim() != 5 or moments.shape[0] % 2:
            raise ValueError(
                f"state dict does not look like a VidTok v1 VAE: encoder.conv_in weight {tuple(conv_in.shape)}, "
                f"encoder.conv_out weight {tuple(moments.shape)} (expected a 3-D conv and an even output width)."
            )
        base_channels, in_channels = conv_in.shape[:2]
        latent_channels = moments.shape[0] // 2
        if decoder_in.shape[1] != latent_channels:
            raise ValueError(
                f"VidTok encoder has {latent_channels} latent channels but decoder.conv_in takes {decoder_in.shape[1]}."
            )

        levels = indices("encoder.down.", 2)
        if levels != list(range(len(levels))) or not levels:
            raise ValueError(f"VidTok encoder levels must be numbered 0..L-1, found {levels}.")
        multipliers = []
        for level in levels:
            width = weight(f"encoder.down.{level}.block.0.conv1.weight").shape[0]
            if width % base_channels:
                raise ValueError(f"VidTok level {level} width {width} is not a multiple of base width {base_channels}.")
            multipliers.append(width // base_channels)
        num_res_blocks = len(indices("encoder.down.0.block.", 4))
        decoder_blocks = len(indices("decoder.up.0.block.", 4))
        if decoder_blocks != num_res_blocks + 1:
            raise ValueError(
                f"VidTok decoder levels must have num_res_blocks + 1 = {num_res_blocks + 1} blocks, "
                f"found {decoder_blocks}."
            )

        config = {
            "in_channels": int(in_channels),
            "out_channels": int(decoder_out.shape[0]),
            "base_channels": int(base_channels),
            "channel_multipliers": multipliers,
            "num_res_blocks": num_res_blocks,
            "latent_channels": int(latent_channels),
        }
        resampling = {
            "spatial_downsample_levels": indices("encoder.down.", 2, ".downsample.conv.weight"),
            "temporal_downsample_levels": indices("encoder.down_temporal.", 2, ".downsample.mix_factor"),
            "spatial_upsample_levels": indices("decoder.up.", 2, ".upsample.conv.weight"),
            "temporal_upsample_levels": indices("decoder.up_temporal.", 2, ".upsample.mix_factor"),
        }
        num_levels = len(levels)
        defaults = {
            "spatial_downsample_levels": list(range(num_levels - 1)),
            "temporal_downsample_levels": sorted([num_levels - 2, num_levels - 3]),
            "spatial_upsample_levels": list(range(1, num_levels)),
            "temporal_upsample_levels": [1, 2],
        }
        config["temporal_downsample_factor"] = 2 ** len(resampling["temporal_downsample_levels"])
        for name, found in resampling.items():
            if found != defaults[name]:
                config[name] = found
        return config
