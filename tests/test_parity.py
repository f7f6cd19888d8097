"""Parity of the converted official tiny checkpoint with the official code's golden tensors.

The checkpoint is converted with the `videoflextok-convert` entry point and reloaded through
`AutoModel.from_pretrained`; every stage is compared at <= 1e-5 max abs error in float32 (token ids exactly).
"""

import copy

import pytest
import torch
from helpers import FORWARD_ATOL, convert_reference, max_abs
from transformers import AutoModel

import videoflextok_hf  # noqa: F401  (registers the Auto classes)
from videoflextok_hf import VideoFlexTokModel
from videoflextok_hf.modeling.transformer import build_attention_mask


@pytest.fixture(scope="module")
def converted_dir(tmp_path_factory):
    return convert_reference(tmp_path_factory.mktemp("converted"))


@pytest.fixture(scope="module")
def model(converted_dir):
    model = AutoModel.from_pretrained(converted_dir)
    assert isinstance(model, VideoFlexTokModel)
    return model.eval()


def test_converted_config_reads_the_official_tree(model):
    config = model.config
    assert config.vae_base_channels == 4  # the fixture's narrow VAE, read from the weights
    assert (config.encoder_hidden_size, config.encoder_num_layers, config.encoder_head_dim) == (64, 2, 32)
    assert config.num_registers == 8 and config.register_max_frames == 5
    assert config.encoder_attention_mask == "time_block_causal_last"
    assert config.decoder_attention_mask == "time_block_causal"
    assert config.decoder_register_ops == ["position_embedding", "nested_dropout", "prefix_masking", "null_condition"]
    assert config.image_size == 32 and config.fsq_levels == [8, 8, 8, 5, 5, 5]


def test_attention_masks_match_reference(reference_io):
    encoder_mask = build_attention_mask("time_block_causal_last", 5, [4, 8])
    decoder_mask = build_attention_mask("time_block_causal", 5, [4, 8])
    assert torch.equal(encoder_mask, reference_io["enc_attn_mask"])
    assert torch.equal(decoder_mask, reference_io["dec_attn_mask"])


@torch.no_grad()
def test_vae_moments_and_decode(model, reference_io):
    posterior = model.vae.encode(reference_io["video"]).latent_dist
    assert max_abs(posterior.mean, reference_io["vae_mean"]) <= FORWARD_ATOL
    assert max_abs(posterior.logvar, reference_io["vae_logvar"]) <= FORWARD_ATOL
    assert max_abs(model.vae.decode(reference_io["vae_mean"]).sample, reference_io["vae_decoded"]) <= FORWARD_ATOL
    one_frame = model.vae.encode(reference_io["video"][:, :, 16:17]).latent_dist.mean
    assert max_abs(one_frame, reference_io["vae_mean_1frame"]) <= FORWARD_ATOL
    decoded = model.vae.decode(reference_io["vae_mean_1frame"]).sample
    assert max_abs(decoded, reference_io["vae_decoded_1frame"]) <= FORWARD_ATOL


@torch.no_grad()
def test_position_embeddings(model, reference_io):
    assert max_abs(model.encoder.patch_pos_embed((5, 2, 2))[None], reference_io["posemb_enc__enc_posemb_module"]) == 0
    decoder = model.decoder
    assert max_abs(decoder.patch_pos_embed((5, 2, 2))[None], reference_io["posemb_dec__dec_patches_posemb_module"]) == 0
    registers = decoder.register_pos_embed((5, 8))[None]
    assert max_abs(registers, reference_io["posemb_dec__dec_registers_posemb_module"]) == 0


@torch.no_grad()
def test_encoder_fsq_and_token_ids(model, reference_io):
    latents = model.encoder(reference_io["vae_mean"])
    assert max_abs(latents, reference_io["enc_fsq_latents"]) <= FORWARD_ATOL
    codes, ids = model.quantizer(latents)
    assert torch.equal(codes, reference_io["fsq_quants"])
    output = model.encode(reference_io["video"])
    assert output.token_ids.dtype == torch.long
    assert torch.equal(output.token_ids, reference_io["token_ids"])
    assert torch.equal(ids, reference_io["token_ids"])
    assert torch.equal(model.quantizer.ids_to_codes(output.token_ids), reference_io["fsq_ids_roundtrip_codes"])


@torch.no_grad()
def test_tokenize_batch_two_chunks_and_posterior_sampling(model, reference_io):
    video = reference_io["video"]
    batch = torch.cat([video, video.flip(-1)])
    assert torch.equal(model.encode(batch).token_ids, reference_io["b2_token_ids"])
    assert torch.equal(model.encode(reference_io["video_2chunk"]).token_ids, reference_io["tokens_2chunk"])
    expected = reference_io["tokens_posterior_sample_seed0"]
    torch.manual_seed(0)  # the official code samples the posterior from the global RNG
    assert torch.equal(model.encode(video, sample_posterior=True).token_ids, expected)
    generator = torch.Generator().manual_seed(0)
    assert torch.equal(model.encode(video, sample_posterior=True, generator=generator).token_ids, expected)
    # default: deterministic posterior mean
    assert torch.equal(model.encode(video).token_ids, model.encode(video).token_ids)


@torch.no_grad()
def test_time_embedding(model, reference_io):
    embedder = model.decoder.time_embed
    assert max_abs(embedder.sinusoidal_features(reference_io["temb_t"]), reference_io["temb_freq"]) <= FORWARD_ATOL
    assert max_abs(embedder(reference_io["temb_t"]), reference_io["temb_out"]) <= FORWARD_ATOL


@torch.no_grad()
def test_decoder_velocities(model, reference_io):
    ids, xt, t = reference_io["token_ids"], reference_io["dec_xt"], reference_io["dec_t"]
    cases = {
        "dec_v_keep_full": model.predict_velocity(xt, t, ids),
        "dec_v_keep3": model.predict_velocity(xt, t, ids, num_tokens=3),
        "dec_v_uncond": model.predict_velocity(xt, t, ids, unconditional=True),
        "dec_v_prefix1": model.predict_velocity(xt, t, ids, prefix_frames=1),
        "dec_v_cond1": model.predict_velocity(reference_io["dec_xt_cond1"], t, ids, prefix_frames=1),
    }
    for name, velocity in cases.items():
        assert max_abs(velocity, reference_io[name]) <= FORWARD_ATOL, name
    # the uncond pass does not depend on k
    uncond_k3 = model.predict_velocity(xt, t, ids, num_tokens=3, unconditional=True)
    assert max_abs(uncond_k3, reference_io["dec_v_uncond"]) <= FORWARD_ATOL
    # truncating ids to k is the same as keeping k of the full ids (masked positions are replaced)
    assert torch.equal(model.predict_velocity(xt, t, ids[..., :3]), cases["dec_v_keep3"])


@torch.no_grad()
def test_decoder_batch_with_mixed_k(model, reference_io):
    velocity = model.predict_velocity(
        reference_io["b2_dec_xt"], 0.7, reference_io["b2_token_ids"], num_tokens=reference_io["b2_keep_k"]
    )
    assert max_abs(velocity, reference_io["b2_dec_v"]) <= FORWARD_ATOL


@torch.no_grad()
def test_eager_attention_matches_sdpa(converted_dir, model, reference_io):
    eager = AutoModel.from_pretrained(converted_dir, attn_implementation="eager").eval()
    assert eager.config._attn_implementation == "eager"
    ids, xt = reference_io["token_ids"], reference_io["dec_xt"]
    assert max_abs(eager.predict_velocity(xt, 0.7, ids, num_tokens=3), reference_io["dec_v_keep3"]) <= FORWARD_ATOL
    assert torch.equal(eager.encode(reference_io["video"]).token_ids, reference_io["token_ids"])
    sdpa = model.predict_velocity(xt, 0.7, ids)
    assert max_abs(eager.predict_velocity(xt, 0.7, ids), sdpa) <= 1e-6


@torch.no_grad()
def test_save_pretrained_round_trip_is_exact(model, tmp_path, reference_io):
    model.save_pretrained(tmp_path)
    reloaded = AutoModel.from_pretrained(tmp_path).eval()
    for key, value in model.state_dict().items():
        assert torch.equal(value, reloaded.state_dict()[key]), key
    ids, xt = reference_io["token_ids"], reference_io["dec_xt"]
    assert torch.equal(reloaded.predict_velocity(xt, 0.7, ids, num_tokens=3), model.predict_velocity(xt, 0.7, ids, num_tokens=3))
    assert torch.equal(reloaded.encode(reference_io["video_2chunk"]).token_ids, reference_io["tokens_2chunk"])
    # the FSQ has no buffers that could be left uninitialised by the meta-device load
    assert list(reloaded.quantizer.buffers()) == []


# ---------------------------------------------------------------------------------------------------------------
# VAE execution options: slicing (one item at a time) and a bfloat16 VAE beside float32 transformers


def _count_calls(module: torch.nn.Module) -> list:
    calls = []
    module.register_forward_hook(lambda *_: calls.append(1))
    return calls


@pytest.mark.parametrize("use_slicing, expected_calls", [(None, 3), (True, 3), (False, 1)])
@torch.no_grad()
def test_vae_slicing_modes(model, reference_io, use_slicing, expected_calls):
    video = reference_io["video"]
    videos = torch.cat([video, video.flip(-1), -video])  # three different clips
    vae = copy.deepcopy(model.vae)
    vae.disable_slicing()
    batched_mean = vae.encode(videos).latent_dist.mean
    batched_decoded = vae.decode(batched_mean).sample
    vae.use_slicing = use_slicing  # None: the default, slices on the CPU
    encoder_calls, decoder_calls = _count_calls(vae.encoder), _count_calls(vae.decoder)
    mean = vae.encode(videos).latent_dist.mean
    decoded = vae.decode(mean).sample
    assert len(encoder_calls) == len(decoder_calls) == expected_calls
    assert max_abs(mean, batched_mean) <= FORWARD_ATOL  # batched convolutions round differently
    assert max_abs(decoded, batched_decoded) <= FORWARD_ATOL
    for index in range(3):  # and each slice is that video encoded alone
        alone = vae.encode(videos[index : index + 1]).latent_dist.mean
        assert torch.equal(alone, mean[index : index + 1]) or use_slicing is False


@torch.no_grad()
def test_bfloat16_vae_beside_float32_transformers(model, reference_io):
    half = copy.deepcopy(model)
    half.vae.to(torch.bfloat16)
    assert half.vae_dtype == torch.bfloat16 and model.vae_dtype == torch.float32
    assert half.encoder.registers.dtype == torch.float32
    video = reference_io["video"]
    full, low = model.encode(video), half.encode(video)
    assert low.vae_latents.dtype == torch.bfloat16 and low.latents.dtype == torch.float32
    # bfloat16 keeps 8 bits of mantissa: the VAE latents agree to about 1% of their scale
    scale = full.vae_latents.abs().max().item()
    assert max_abs(low.vae_latents.float(), full.vae_latents) <= 0.02 * scale
    assert (low.token_ids == full.token_ids).float().mean() >= 0.8
    # the pipeline decodes with the bf16 VAE and returns float32 frames close to the float32 model's
    kwargs = dict(num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="pt")
    frames_full = model.detokenize(full.token_ids, **kwargs).frames
    kwargs["generator"] = torch.Generator().manual_seed(0)
    frames_low = half.detokenize(full.token_ids, **kwargs).frames
    assert frames_low.dtype == torch.float32
    assert (frames_low - frames_full).abs().mean() <= 0.02


@torch.no_grad()
def test_onednn_linear_route_keeps_parity(model, reference_io, monkeypatch):
    """The fixture is too small for the oneDNN route of `transformer.linear` (it starts at 512 rows); forced on for
    every linear, the encoder, the token ids and the decoder velocities still match the official golden tensors."""
    from videoflextok_hf.modeling import transformer

    monkeypatch.setattr(transformer, "ONEDNN_LINEAR_MIN_ROWS", 1)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)  # the route needs >= 2 threads
    with torch.profiler.profile() as prof:
        latents = model.encoder(reference_io["vae_mean"])
    linears = sum(isinstance(m, torch.nn.Linear) for m in model.encoder.modules())
    assert sum(event.name == "aten::convolution" for event in prof.events()) >= linears  # the route ran
    assert max_abs(latents, reference_io["enc_fsq_latents"]) <= FORWARD_ATOL
    assert torch.equal(model.encode(reference_io["video"]).token_ids, reference_io["token_ids"])
    ids, xt, t = reference_io["token_ids"], reference_io["dec_xt"], reference_io["dec_t"]
    assert max_abs(model.predict_velocity(xt, t, ids), reference_io["dec_v_keep_full"]) <= FORWARD_ATOL
    assert max_abs(model.predict_velocity(xt, t, ids, num_tokens=3), reference_io["dec_v_keep3"]) <= FORWARD_ATOL
