"""The parameter-free VAE stand-ins (patchify, DCT): VidTok's causal geometry, exact inversion, scaling, errors."""

import pytest
import torch
from helpers import tiny_config

from videoflextok_hf import VideoFlexTokConfig, VideoFlexTokModel
from videoflextok_hf.modeling.patchify import DCTCompressor, PatchifyCompressor, dct_basis


@pytest.fixture(scope="module")
def video():
    return torch.rand(2, 3, 17, 16, 24, generator=torch.Generator().manual_seed(0)) * 2 - 1


def test_patchify_has_vidtok_geometry_and_inverts_exactly(video):
    compressor = PatchifyCompressor()
    latents = compressor.encode(video).latent_dist.mode()
    assert latents.shape == (2, 768, 5, 2, 3)  # 1 + (17 - 1) / 4 steps, 8x8 spatial reduction
    assert torch.equal(compressor.decode(latents).sample, video)


@pytest.mark.parametrize("normalization", ["per_band", "uniform"])
def test_dct_with_every_coefficient_is_exact_and_fewer_drop_detail(video, normalization):
    full = DCTCompressor(coefficients_per_color=256, normalization=normalization)
    latents = full.encode(video).latent_dist.mode()
    assert latents.shape == (2, 768, 5, 2, 3)
    assert (full.decode(latents).sample - video).abs().max() < 1e-5
    low = DCTCompressor(coefficients_per_color=16, normalization=normalization)
    latents = low.encode(video).latent_dist.mode()
    assert latents.shape == (2, 48, 5, 2, 3)
    error_low = (low.decode(latents).sample - video).pow(2).mean()
    assert 0 < error_low < video.pow(2).mean()  # lossy, but better than nothing


def test_dct_normalizations_differ_only_in_channel_scale(video):
    basis, per_band = dct_basis(4, 8, 16, "per_band")
    same_basis, uniform = dct_basis(4, 8, 16, "uniform")
    assert torch.equal(basis, same_basis)
    assert torch.allclose(uniform, torch.full_like(uniform, 6.0))
    assert per_band[0] == 6.0 and (per_band[1:] < per_band[0]).all()  # higher bands are scaled up to unit size
    a = DCTCompressor(normalization="per_band").encode(video).latent_dist.mode().reshape(2, 3, 16, -1)
    b = DCTCompressor(normalization="uniform").encode(video).latent_dist.mode().reshape(2, 3, 16, -1)
    assert torch.allclose(a * per_band[None, None, :, None] / 6.0, b, atol=1e-5)


def test_dct_is_causal_in_time(video):
    compressor = DCTCompressor()
    latents = compressor.encode(video).latent_dist.mode()
    assert torch.allclose(compressor.encode(video[:, :, :9]).latent_dist.mode(), latents[:, :, :3])


def test_model_uses_the_configured_compressor(video):
    model = VideoFlexTokModel(tiny_config(compressor="dct", vae_latent_channels=48, dct_normalization="uniform"))
    assert isinstance(model.vae, DCTCompressor) and model.vae.latent_channels == 48
    assert torch.allclose(model.vae._synthesis, dct_basis(4, 8, 16, "uniform")[0] * 6.0)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(compressor="dct", vae_latent_channels=48, dct_normalization="weird"), "dct_normalization"),
        (dict(compressor="dct", vae_latent_channels=40), "vae_latent_channels"),
        (dict(compressor="dct", vae_latent_channels=48, dct_coefficients_per_color=0), "dct_coefficients_per_color"),
        (dict(compressor="jpeg"), "compressor"),
    ],
)
def test_bad_compressor_settings_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**overrides)


def test_bad_inputs_name_the_rule():
    with pytest.raises(ValueError, match="T = 1 \\+ 4k frames"):
        DCTCompressor().encode(torch.zeros(1, 3, 16, 16, 16))
    with pytest.raises(ValueError, match="normalization"):
        DCTCompressor(normalization="weird")
    with pytest.raises(ValueError, match="latents must have shape"):
        DCTCompressor().decode(torch.zeros(1, 47, 5, 2, 2))
    assert VideoFlexTokConfig(compressor="dct", vae_latent_channels=48).dct_normalization == "per_band"
