"""VidTok v1 VAE: parity with the official golden tensors, checkpoint layout, frame bookkeeping, input checks."""

import copy

import pytest
import torch
from diffusers.models.autoencoders.vae import DecoderOutput, DiagonalGaussianDistribution
from diffusers.models.modeling_outputs import AutoencoderKLOutput

from videoflextok_hf.modeling.vidtok import NearestUpsampledConv2d, VidTokVAE, _channels_last

VAE_PREFIX = "video_tokenizer.vae.vidtok."
ATOL = 1e-5  # float32 single-forward parity with the official code


@pytest.fixture(scope="module", autouse=True)
def _single_thread():
    """These tensors are tiny: extra threads cost more than they save, and on a busy machine every parallel region
    waits for a free core (seconds per test instead of milliseconds)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (tuple(a.shape), tuple(b.shape))
    return (a.double() - b.double()).abs().max().item()


@pytest.fixture(scope="module")
def official_vae_weights(official_state_dict):
    return {key[len(VAE_PREFIX):]: value for key, value in official_state_dict.items() if key.startswith(VAE_PREFIX)}


@pytest.fixture(scope="module")
def official_vae(official_vae_weights):
    vae = VidTokVAE(**VidTokVAE.config_from_state_dict(official_vae_weights)).eval()
    vae.load_state_dict(official_vae_weights, strict=True)
    return vae.requires_grad_(False)


@pytest.fixture(scope="module")
def random_tiny_vae():
    """A narrow VAE with every parameter random (VidTok zero-initialises its temporal blocks, which would hide
    temporal bugs)."""
    vae = VidTokVAE(base_channels=4).eval()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in vae.parameters():
            fan_in = param[0].numel() if param.dim() > 1 else 1
            scale = 0.5 / fan_in**0.5 if param.dim() > 1 else 0.05
            param.copy_(torch.randn(param.shape, generator=generator) * scale)
    return vae.requires_grad_(False)


# ---------------------------------------------------------------------------------------------------------------
# checkpoint layout


def test_config_from_state_dict_reads_the_fixture_geometry(official_state_dict, official_vae_weights):
    config = VidTokVAE.config_from_state_dict(official_vae_weights)
    assert config == {
        "in_channels": 3,
        "out_channels": 3,
        "base_channels": 4,
        "channel_multipliers": [1, 2, 4, 4],
        "num_res_blocks": 2,
        "latent_channels": 16,
        "temporal_downsample_factor": 4,
    }
    assert VidTokVAE.config_from_state_dict(official_state_dict, prefix=VAE_PREFIX) == config


def test_official_weights_load_strictly_with_identical_keys(official_vae_weights):
    vae = VidTokVAE(**VidTokVAE.config_from_state_dict(official_vae_weights))
    state = vae.state_dict()
    assert set(state) == set(official_vae_weights)
    assert all(state[key].shape == value.shape for key, value in official_vae_weights.items())
    assert len(list(vae.buffers())) == 0
    vae.load_state_dict(official_vae_weights, strict=True)
    for key in (
        "encoder.conv_in.conv.weight",
        "encoder.down.1.block.0.nin_shortcut.weight",
        "encoder.down_temporal.1.downsample.mix_factor",
        "encoder.mid.attn_1.q.conv.weight",
        "decoder.up_temporal.2.upsample.conv.conv.weight",
        "decoder.up.0.block.0.nin_shortcut.weight",
    ):
        assert key in state


def test_default_size_matches_the_released_vae():
    with torch.device("meta"):
        vae = VidTokVAE()
    state = vae.state_dict()
    assert len(state) == 416
    assert sum(p.numel() for p in vae.parameters()) == 157_949_351
    assert sum(p.numel() for p in vae.encoder.parameters()) == 69_589_922
    assert sum(p.numel() for p in vae.decoder.parameters()) == 88_359_429
    assert state["encoder.conv_in.conv.weight"].shape == (128, 3, 3, 3, 3)
    assert state["decoder.up.1.block.0.nin_shortcut.weight"].shape == (256, 512, 1, 1)
    assert state["encoder.down_temporal.2.block.0.conv1.conv.weight"].shape == (512, 512, 3)
    assert (vae.spatial_compression_ratio, vae.temporal_compression_ratio, vae.latent_channels) == (8, 4, 16)


# ---------------------------------------------------------------------------------------------------------------
# parity with the official code


def test_encode_matches_official(official_vae, reference_io):
    output = official_vae.encode(reference_io["video"])
    assert isinstance(output, AutoencoderKLOutput)
    posterior = output.latent_dist
    assert isinstance(posterior, DiagonalGaussianDistribution)
    assert max_abs(posterior.mean, reference_io["vae_mean"]) <= ATOL
    assert max_abs(posterior.logvar, reference_io["vae_logvar"]) <= ATOL


def test_decode_matches_official(official_vae, reference_io):
    output = official_vae.decode(reference_io["vae_mean"])
    assert isinstance(output, DecoderOutput)
    assert max_abs(output.sample, reference_io["vae_decoded"]) <= ATOL


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("size", [(6, 10), (5, 7)])
def test_upsampling_conv_equals_repeat_then_conv(bias, size):
    # the decoder's upsampling convolution computes conv3x3(nearest_2x(x)) without the repeated frames (four 2x2
    # phase convolutions); checked against the plain repeat + 3x3 convolution, odd sizes included, and its gradient
    torch.manual_seed(0)
    conv = NearestUpsampledConv2d(8, 12, 3, padding=1, bias=bias)
    x = _channels_last(torch.randn(2, 8, 3, *size)).requires_grad_(True)
    repeated = torch.nn.functional.interpolate(x, scale_factor=(1, 2, 2), mode="nearest")
    expected = torch.nn.functional.conv3d(repeated, conv.weight[:, :, None], conv.bias, padding=(0, 1, 1))
    out = conv(x)
    assert out.shape == expected.shape == (2, 12, 3, 2 * size[0], 2 * size[1])
    assert out.is_contiguous(memory_format=torch.channels_last_3d)
    assert (out - expected).abs().max() <= 1e-5
    grad = torch.randn_like(out)
    (direct,) = torch.autograd.grad(expected, x, grad)
    (ours,) = torch.autograd.grad(out, x, grad)
    assert (ours - direct).abs().max() <= 1e-5


def test_single_frame_matches_official(official_vae, reference_io):
    posterior = official_vae.encode(reference_io["video"][:, :, 16:17]).latent_dist
    assert max_abs(posterior.mean, reference_io["vae_mean_1frame"]) <= ATOL
    decoded = official_vae.decode(reference_io["vae_mean_1frame"]).sample
    assert max_abs(decoded, reference_io["vae_decoded_1frame"]) <= ATOL


def test_posterior_sample_matches_official_noise(official_vae, reference_io):
    std = torch.exp(0.5 * reference_io["vae_logvar"])
    expected = reference_io["vae_mean"] + std * reference_io["posterior_eps_seed0"]
    torch.manual_seed(0)
    assert max_abs(official_vae.encode(reference_io["video"]).latent_dist.sample(), expected) <= ATOL
    generator = torch.Generator().manual_seed(0)
    assert max_abs(official_vae.encode(reference_io["video"]).latent_dist.sample(generator), expected) <= ATOL


# ---------------------------------------------------------------------------------------------------------------
# frame bookkeeping and causality (vae-spec 2.4)


@pytest.mark.parametrize(
    "frames, latent_frames, decoded_frames",
    [(1, 1, 1), (2, 1, 1), (4, 1, 1), (5, 2, 5), (8, 2, 5), (9, 3, 9), (13, 4, 13), (16, 4, 13), (17, 5, 17)],
)
def test_frame_bookkeeping(random_tiny_vae, frames, latent_frames, decoded_frames):
    video = torch.randn(2, 3, frames, 16, 16)
    posterior = random_tiny_vae.encode(video).latent_dist
    assert posterior.mean.shape == (2, 16, latent_frames, 2, 2)
    assert random_tiny_vae.decode(posterior.mean).sample.shape == (2, 3, decoded_frames, 16, 16)


def test_encoder_and_decoder_are_causal_in_time(random_tiny_vae):
    video = torch.randn(1, 3, 17, 16, 16)
    latents = random_tiny_vae.encode(video).latent_dist.mean
    # latent frame j sees frames up to 4j only
    assert max_abs(random_tiny_vae.encode(video[:, :, :9]).latent_dist.mean, latents[:, :, :3]) <= 1e-5
    # decoded frames up to 4j depend on latent frames up to j only
    decoded = random_tiny_vae.decode(latents).sample
    assert max_abs(random_tiny_vae.decode(latents[:, :, :3]).sample, decoded[:, :, :9]) <= 1e-5


@pytest.mark.parametrize("latent_frames_per_chunk", [1, 2, 3])
def test_framewise_streaming_matches_one_pass(random_tiny_vae, latent_frames_per_chunk):
    """Chunks of latent frames with the causal history carried over give the one-pass numbers (33 frames: 9 latent
    frames, chunks that do not divide them too), in a batch of two."""
    vae = copy.copy(random_tiny_vae)  # own framewise settings, shared weights
    video = torch.randn(2, 3, 33, 16, 16)
    vae.disable_framewise()
    latents = vae.encode(video).latent_dist.mean
    decoded = vae.decode(latents).sample
    vae.enable_framewise(latent_frames_per_chunk)
    assert max_abs(vae.encode(video).latent_dist.mean, latents) <= 1e-5
    assert max_abs(vae.decode(latents).sample, decoded) <= 1e-5
    assert not any(hasattr(module, "_temporal_state") for module in vae.modules())  # no state left behind
    with pytest.raises(ValueError, match="num_latent_frames_batch_size"):
        vae.enable_framewise(0)


@pytest.mark.parametrize("framewise", [False, True])
def test_sequential_cpu_offload_gives_the_same_numbers(random_tiny_vae, framewise):
    """accelerate's `cpu_offload` (what `enable_sequential_cpu_offload` does): every weight on the meta device
    between calls, each module's own weights loaded by a hook around its own forward. Any parameter read outside
    its owner's forward (a parent reading its child conv's weight) would be a meta tensor here and fail."""
    from accelerate import cpu_offload

    video = torch.randn(1, 3, 9, 16, 16)
    reference = copy.copy(random_tiny_vae)
    (reference.enable_framewise if framewise else reference.disable_framewise)()
    latents = reference.encode(video).latent_dist.mean
    decoded = reference.decode(latents).sample
    streamed = VidTokVAE(base_channels=4).eval().requires_grad_(False)
    streamed.load_state_dict(random_tiny_vae.state_dict())
    (streamed.enable_framewise if framewise else streamed.disable_framewise)()
    cpu_offload(streamed, execution_device="cpu")
    assert all(param.device.type == "meta" for param in streamed.parameters())
    assert torch.equal(streamed.encode(video).latent_dist.mean, latents)
    assert torch.equal(streamed.decode(latents).sample, decoded)


def test_forward_round_trip(random_tiny_vae):
    video = torch.randn(1, 3, 5, 16, 16)
    output = random_tiny_vae(video)
    assert isinstance(output, DecoderOutput) and output.sample.shape == video.shape
    expected = random_tiny_vae.decode(random_tiny_vae.encode(video).latent_dist.mode()).sample
    assert torch.equal(output.sample, expected)
    first = random_tiny_vae(video, sample_posterior=True, generator=torch.Generator().manual_seed(3)).sample
    second = random_tiny_vae(video, sample_posterior=True, generator=torch.Generator().manual_seed(3)).sample
    assert torch.equal(first, second) and not torch.equal(first, output.sample)


# ---------------------------------------------------------------------------------------------------------------
# errors


@pytest.mark.parametrize(
    "videos, message",
    [
        (torch.zeros(3, 5, 16, 16), r"videos must be a 5-D tensor \[B, 3, T, H, W\], got shape \(3, 5, 16, 16\)"),
        (torch.zeros(1, 4, 5, 16, 16), r"videos must have 3 channels .* got shape \(1, 4, 5, 16, 16\)"),
        (
            torch.zeros(1, 3, 5, 16, 16, dtype=torch.uint8),
            "videos must be a floating-point tensor, got dtype torch.uint8",
        ),
        (torch.zeros(1, 3, 5, 12, 16), "videos height and width must be multiples of 8, got 12x16"),
        (torch.zeros(1, 3, 0, 16, 16), "videos must not be empty"),
    ],
)
def test_encode_rejects_bad_videos(random_tiny_vae, videos, message):
    with pytest.raises(ValueError, match=message):
        random_tiny_vae.encode(videos)


def test_decode_rejects_bad_latents(random_tiny_vae):
    with pytest.raises(ValueError, match=r"latents must have 16 channels .* got shape \(1, 8, 2, 2, 2\)"):
        random_tiny_vae.decode(torch.zeros(1, 8, 2, 2, 2))
    with pytest.raises(ValueError, match="latents must be a 5-D tensor"):
        random_tiny_vae.decode(torch.zeros(16, 2, 2, 2))
    with pytest.raises(TypeError, match="latents must be a torch.Tensor"):
        random_tiny_vae.decode([[0.0]])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"base_channels": 0}, "base_channels must be a positive integer, got 0"),
        ({"channel_multipliers": (1, 2)}, "need at least 3 entries in channel_multipliers, got \\[1, 2\\]"),
        ({"temporal_downsample_factor": 8}, r"temporal_downsample_factor must be 2 \*\* len\(.*\) = 4, got 8"),
        ({"spatial_downsample_levels": (0, 4)}, r"spatial_downsample_levels must hold level indices in \[0, 3\]"),
        ({"temporal_upsample_levels": (0, 1)}, r"temporal_upsample_levels \[0, 1\] must be a subset"),
        ({"norm_eps": 0.0}, "norm_eps must be positive"),
    ],
)
def test_constructor_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        with torch.device("meta"):
            VidTokVAE(**{"base_channels": 4, **kwargs})


def test_config_from_state_dict_rejects_other_weights(official_vae_weights):
    with pytest.raises(ValueError, match="does not look like a VidTok v1 VAE: key 'encoder.conv_in.conv.weight'"):
        VidTokVAE.config_from_state_dict({"conv.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="key 'vae.encoder.conv_in.conv.weight' is missing"):
        VidTokVAE.config_from_state_dict(official_vae_weights, prefix="vae.")
