"""VideoFlexTokPipeline parity with the official sampler tensors, reproducibility and input errors."""

import numpy as np
import PIL.Image
import pytest
import torch
from helpers import convert_reference, max_abs
from transformers import AutoModel

from videoflextok_hf import VideoFlexTokFlowMatchScheduler, VideoFlexTokPipeline

# Sampler outputs accumulate round-off over steps (APG projection in float64): issue contract <= 1e-4.
SAMPLER_ATOL = 1e-4


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    model = AutoModel.from_pretrained(convert_reference(tmp_path_factory.mktemp("converted"))).eval()
    pipe = VideoFlexTokPipeline(model=model, scheduler=VideoFlexTokFlowMatchScheduler())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _latents(pipe, reference_io, **kwargs):
    args = dict(num_inference_steps=4, latents=reference_io["sample_noise"], output_type="latent")
    args.update(kwargs)
    return pipe(reference_io["token_ids"], **args).frames


@pytest.mark.parametrize(
    "name,kwargs",
    [
        ("sample_latents_nocfg", dict(guidance_scale=1.0)),
        ("sample_latents_cfg", dict(guidance="cfg", guidance_scale=3.0)),
        ("sample_latents_apg", dict(guidance="apg", guidance_scale=3.0)),
        ("sample_latents_apg_mom", dict(guidance="apg", guidance_scale=3.0, apg_momentum=-0.5, apg_eta=0.3)),
        ("sample_latents_apg_keep3", dict(guidance="apg", guidance_scale=3.0, num_tokens=3)),
    ],
)
def test_single_chunk_sampler_parity(pipe, reference_io, name, kwargs):
    assert max_abs(_latents(pipe, reference_io, **kwargs), reference_io[name]) <= SAMPLER_ATOL


def test_per_step_trace_matches(pipe, reference_io):
    seen = []

    def record(p, step, timestep, tensors):
        seen.append((step, float(timestep), tensors["latents"].clone()))
        return tensors

    latents = _latents(pipe, reference_io, guidance_scale=3.0, callback_on_step_end=record)
    assert [s for s, _, _ in seen] == [0, 1, 2, 3]
    assert [t / 1000 for _, t, _ in seen] == pytest.approx(reference_io["trace_apg_t"].tolist())
    # x_t fed to step i+1 is the latents after step i
    for i in range(3):
        assert max_abs(seen[i][2][0], reference_io["trace_apg_xt"][i + 1]) <= SAMPLER_ATOL
    assert torch.equal(seen[-1][2], latents)


def test_decoded_video_parity(pipe, reference_io):
    video = pipe(
        reference_io["token_ids"], num_inference_steps=4, guidance_scale=3.0, latents=reference_io["sample_noise"]
    ).frames
    expected = (reference_io["sample_video_apg"] / 2 + 0.5).clamp(0, 1).permute(0, 2, 1, 3, 4)
    assert video.shape == (1, 17, 3, 32, 32)
    assert max_abs(video, expected) <= SAMPLER_ATOL


def test_external_conditioning_frame(pipe, reference_io):
    latents = _latents(pipe, reference_io, guidance_scale=3.0, conditioning_frames=reference_io["video"][:, :, :1])
    # the conditioning frame's clean latents are imposed on the first latent frame
    assert max_abs(latents[:, :, :1], reference_io["extcond_cond_latents"]) <= 1e-5
    assert max_abs(latents, reference_io["sample_latents_extcond_apg"]) <= SAMPLER_ATOL


def test_batch_with_mixed_k_and_per_sample_momentum(pipe, reference_io):
    latents = pipe(
        reference_io["b2_token_ids"],
        num_tokens=reference_io["b2_keep_k"].tolist(),
        num_inference_steps=4,
        guidance_scale=3.0,
        apg_momentum=-0.5,
        apg_eta=0.3,
        latents=reference_io["b2_noise"],
        output_type="latent",
    ).frames
    # the official code shares one momentum buffer across the batch; we follow the per-sample behaviour
    assert max_abs(latents, reference_io["b2_sample_latents_apg_mom_individual"]) <= SAMPLER_ATOL
    assert max_abs(latents, reference_io["b2_sample_latents_apg_mom"]) > 1e-2


def test_two_chunk_parity_and_noise_order(pipe, reference_io):
    kwargs = dict(num_inference_steps=3, guidance_scale=2.0)
    video = pipe(reference_io["tokens_2chunk"], generator=torch.Generator().manual_seed(0), **kwargs).frames
    expected = (reference_io["video_2chunk_decoded"] / 2 + 0.5).clamp(0, 1).permute(0, 2, 1, 3, 4)
    assert video.shape == (1, 33, 3, 32, 32)
    assert max_abs(video, expected) <= SAMPLER_ATOL
    latents = pipe(
        reference_io["tokens_2chunk"], generator=torch.Generator().manual_seed(0), output_type="latent", **kwargs
    ).frames
    # stitched latents: chunk 0 (5 frames) + chunk 1 without its conditioning frame (4)
    assert latents.shape == (1, 16, 9, 4, 4)
    assert max_abs(latents[:, :, :5], reference_io["dbg_2chunk_latents_chunk0"]) <= SAMPLER_ATOL
    assert max_abs(latents[:, :, 5:], reference_io["dbg_2chunk_latents_chunk1"][:, :, 1:]) <= SAMPLER_ATOL


def test_same_generator_same_video_and_batch_independence(pipe, reference_io):
    ids = reference_io["tokens_2chunk"]
    kwargs = dict(num_inference_steps=2, guidance_scale=2.0, output_type="latent")
    first = pipe(ids, generator=torch.Generator().manual_seed(5), **kwargs).frames
    second = pipe(ids, generator=torch.Generator().manual_seed(5), **kwargs).frames
    assert torch.equal(first, second)
    other = torch.randint(0, 64000, ids.shape, generator=torch.Generator().manual_seed(9))
    batch = pipe(
        torch.cat([ids, other]),
        generator=[torch.Generator().manual_seed(5), torch.Generator().manual_seed(6)],
        **kwargs,
    ).frames
    assert max_abs(batch[:1], first) <= 1e-5


def test_output_types(pipe, reference_io):
    ids = reference_io["token_ids"]
    kwargs = dict(num_inference_steps=1, guidance_scale=1.0, generator=torch.Generator().manual_seed(0))
    as_np = pipe(ids, output_type="np", **kwargs).frames
    assert isinstance(as_np, np.ndarray) and as_np.shape == (1, 17, 32, 32, 3)
    assert 0.0 <= as_np.min() and as_np.max() <= 1.0
    kwargs["generator"] = torch.Generator().manual_seed(0)
    as_pil = pipe(ids, output_type="pil", **kwargs).frames
    assert len(as_pil) == 1 and len(as_pil[0]) == 17 and isinstance(as_pil[0][0], PIL.Image.Image)
    kwargs["generator"] = torch.Generator().manual_seed(0)
    (as_tuple,) = pipe(ids, return_dict=False, **kwargs)
    # the default "pt" output is [B, T, 3, H, W]: the same frames as the numpy output
    assert torch.allclose(as_tuple, torch.from_numpy(as_np).permute(0, 1, 4, 2, 3), atol=1e-6)


def test_detokenize_is_the_pipeline(pipe, reference_io):
    model = pipe.model
    direct = model.detokenize(
        reference_io["token_ids"], num_inference_steps=4, guidance_scale=3.0,
        latents=reference_io["sample_noise"], output_type="latent",
    ).frames
    assert max_abs(direct, reference_io["sample_latents_apg"]) <= SAMPLER_ATOL


def test_pipeline_save_and_load(pipe, tmp_path, reference_io):
    pipe.save_pretrained(tmp_path)
    assert (tmp_path / "model_index.json").is_file()
    assert (tmp_path / "scheduler" / "scheduler_config.json").is_file()
    assert (tmp_path / "model" / "model.safetensors").is_file()
    reloaded = VideoFlexTokPipeline.from_pretrained(tmp_path)
    reloaded.set_progress_bar_config(disable=True)
    latents = reloaded(
        reference_io["token_ids"], num_inference_steps=4, guidance_scale=3.0, latents=reference_io["sample_noise"],
        output_type="latent",
    ).frames
    assert max_abs(latents, reference_io["sample_latents_apg"]) <= SAMPLER_ATOL


@pytest.mark.parametrize(
    "token_ids,kwargs,error",
    [
        (torch.full((1, 5, 8), 64000), {}, "must lie in \\[0, 63999\\]"),
        (torch.zeros(1, 5, 8).long(), {"num_tokens": 9}, "num_tokens must lie in 1..8"),
        (torch.zeros(1, 5, 4).long(), {"num_tokens": [2, 3]}, "one value per video"),
        (torch.zeros(1, 5, 8).long(), {"num_tokens": 0}, "num_tokens must lie"),
        (torch.zeros(1, 6, 8).long(), {}, "5 \\+ 4\\*K time steps"),
        (torch.zeros(5, 8).long(), {}, "\\[B, t, n\\]"),
        (torch.zeros(1, 5, 8), {}, "integers"),
        (torch.zeros(2, 5, 8).long(), {"latents": torch.zeros(1, 16, 5, 4, 4)}, "latents .* shape"),
        (torch.zeros(2, 5, 8).long(), {"conditioning_frames": torch.zeros(1, 3, 1, 32, 32)}, "has 1 videos"),
        (torch.zeros(1, 5, 8).long(), {"conditioning_frames": torch.zeros(1, 3, 2, 32, 32)}, "1 \\+ 4\\*j frames"),
        (torch.zeros(1, 5, 8).long(), {"conditioning_frames": torch.zeros(1, 3, 1, 64, 64)}, "32x32"),
        (torch.zeros(1, 5, 8).long(), {"guidance": "pag"}, "guidance must be one of"),
        (torch.zeros(1, 5, 8).long(), {"output_type": "gif"}, "output_type must be one of"),
        (torch.zeros(1, 5, 8).long(), {"generator": [torch.Generator()] * 3}, "3 generators for 1 videos"),
    ],
)
def test_clear_errors(pipe, token_ids, kwargs, error):
    with pytest.raises((ValueError, TypeError), match=error):
        pipe(token_ids, num_inference_steps=1, **kwargs)


def test_decoding_defaults_travel_with_the_model(tmp_path):
    """Arguments left out of a call take the model's `config.decoding_defaults`, through a save / load, in the
    pipeline, `model.detokenize` and the evaluation alike; given arguments win."""
    from helpers import randomize_, tiny_config

    from videoflextok_hf import VideoFlexTokModel
    from videoflextok_hf.evaluation import reconstruct

    settings = {"num_inference_steps": 3, "guidance": "cfg", "guidance_scale": 2.0}
    model = randomize_(VideoFlexTokModel(tiny_config(decoding_defaults=settings)), seed=4).eval()
    assert model.config.decoding_defaults == {**settings, "apg_momentum": 0.0, "apg_eta": 0.0, "apg_norm_threshold": 0.6}
    model.save_pretrained(tmp_path)
    model = AutoModel.from_pretrained(tmp_path).eval()
    assert model.config.decoding_defaults["num_inference_steps"] == 3
    pipe = VideoFlexTokPipeline(model=model, scheduler=VideoFlexTokFlowMatchScheduler())
    pipe.set_progress_bar_config(disable=True)
    ids = torch.randint(0, model.config.codebook_size, (1, 5, 8), generator=torch.Generator().manual_seed(0))
    steps = []

    def decode(call, **kwargs):
        steps.clear()
        kwargs.update(generator=torch.Generator().manual_seed(1), output_type="latent",
                      callback_on_step_end=lambda p, i, t, tensors: steps.append(i) or tensors)
        return call(ids, **kwargs).frames

    implicit = decode(pipe)
    assert len(steps) == 3
    assert torch.equal(implicit, decode(pipe, **settings))
    assert torch.equal(implicit, decode(model.detokenize))
    assert not torch.equal(implicit, decode(pipe, num_inference_steps=3, guidance="apg", guidance_scale=2.0))
    decode(pipe, num_inference_steps=2)
    assert len(steps) == 2
    videos = torch.rand(1, 3, 17, 32, 32, generator=torch.Generator().manual_seed(2)) * 2 - 1
    by_default = reconstruct(model, videos, [8]).videos[8][0]
    assert torch.equal(by_default, reconstruct(model, videos, [8], **settings).videos[8][0])


def test_official_configs_carry_the_official_decoding_settings():
    from videoflextok_hf import VideoFlexTokConfig, load_default_model

    official = VideoFlexTokConfig().decoding_defaults
    assert (official["num_inference_steps"], official["guidance"], official["guidance_scale"]) == (30, "apg", 20.0)
    bundled = load_default_model().config.decoding_defaults  # the settings its README figures were measured with
    assert (bundled["num_inference_steps"], bundled["guidance"], bundled["guidance_scale"]) == (1, "none", 1.0)
    with pytest.raises(ValueError, match="decoding_defaults"):
        VideoFlexTokConfig(decoding_defaults={"steps": 4})
    with pytest.raises(ValueError, match="num_inference_steps"):
        VideoFlexTokConfig(decoding_defaults={"num_inference_steps": 0})


@pytest.fixture(scope="module")
def offload_case():
    """A two-chunk decode (the second chunk re-encodes the overlap frame: VAE, encoder, decoder all run)."""
    from helpers import randomize_, tiny_config

    from videoflextok_hf import VideoFlexTokModel

    model = randomize_(VideoFlexTokModel(tiny_config()), seed=6).eval()
    ids = torch.randint(0, model.config.codebook_size, (1, 9, 8), generator=torch.Generator().manual_seed(0))
    return model, ids


def _offload_pipe(model):
    pipe = VideoFlexTokPipeline(model=model, scheduler=VideoFlexTokFlowMatchScheduler())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _decode(pipe, ids):
    return pipe(ids, num_inference_steps=2, generator=torch.Generator().manual_seed(1)).frames


def _parts(model):
    return {id(model.vae): "vae", id(model.encoder): "encoder", id(model.decoder): "decoder", id(model): "model"}


@pytest.mark.parametrize("compressor", ["vidtok", "dct"])
def test_model_cpu_offload_moves_one_part_at_a_time_and_changes_nothing(offload_case, compressor):
    """Every part with weights (VAE, encoder, decoder) gets its own accelerate offload hook, run when the part runs
    (also for `vae.encode` / `vae.decode`, which are not `forward`); each hook offloads the part that ran before it
    (a cycle: decoding alternates decoder steps and VAE calls). On CPU accelerate skips the moves (everything is
    already "on the CPU"), so the wiring and the calls are checked; memory on a GPU is not measured (no GPU here)."""
    from unittest import mock

    from accelerate.hooks import CpuOffload

    from videoflextok_hf import VideoFlexTokModel

    model, ids = offload_case
    if compressor == "dct":
        from helpers import randomize_, tiny_config

        model = randomize_(VideoFlexTokModel(tiny_config(compressor="dct", vae_latent_channels=48)), seed=6).eval()
    reference = _decode(_offload_pipe(model), ids)
    pipe = _offload_pipe(model)
    pipe.enable_model_cpu_offload(device="cpu")
    names = _parts(model)
    cycle = ["vae", "encoder", "decoder"] if compressor == "vidtok" else ["encoder", "decoder"]
    hooks = {names[id(part)]: part._hf_hook for part in (model.vae, model.encoder, model.decoder)
             if isinstance(getattr(part, "_hf_hook", None), CpuOffload)}
    assert sorted(hooks) == sorted(cycle)
    for i, name in enumerate(cycle):  # each part's hook offloads the part used just before it
        assert names[id(hooks[name].prev_module_hook.model)] == cycle[i - 1]
    events = []
    real_pre_forward = CpuOffload.pre_forward

    def pre_forward(hook, module, *args, **kwargs):
        events.append(names[id(module)])
        return real_pre_forward(hook, module, *args, **kwargs)

    with mock.patch.object(CpuOffload, "pre_forward", pre_forward):
        offloaded = _decode(pipe, ids)
    assert torch.equal(offloaded, reference)
    assert "model" not in events and set(events) == set(cycle)
    if compressor == "vidtok":
        # chunk 0: decoder steps, VAE decode; chunk 1: VAE encode + encoder for the overlap frame, decoder, VAE
        assert events.index("decoder") < events.index("vae") < events.index("encoder")


@pytest.mark.parametrize("compressor", ["vidtok", "dct"])
def test_sequentially_offloaded_weights_decode_the_same(offload_case, compressor):
    """What `enable_sequential_cpu_offload` does to a component (`accelerate.cpu_offload`: weights on the meta device
    between calls, streamed to the execution device module by module), with execution device "cpu". Through the
    diffusers method on a CPU-only machine it cannot run: diffusers forces "cpu:0", and accelerate then re-binds
    parameters as plain tensors (a TypeError in its hooks), so the method itself needs an accelerator."""
    from accelerate import cpu_offload
    from helpers import randomize_, tiny_config

    from videoflextok_hf import VideoFlexTokModel

    ids = offload_case[1]
    channels = {"dct": 48, "vidtok": 16}[compressor]
    config = tiny_config(compressor=compressor, vae_latent_channels=channels)
    model = randomize_(VideoFlexTokModel(config), seed=6).eval()
    reference = _decode(_offload_pipe(model), ids)
    streamed = VideoFlexTokModel(config).eval()
    streamed.load_state_dict(model.state_dict())
    cpu_offload(streamed, execution_device="cpu")
    assert all(param.device.type == "meta" for param in streamed.parameters())
    pipe = _offload_pipe(streamed)
    assert pipe._execution_device.type == "cpu" and streamed.input_device.type == "cpu"
    assert torch.equal(_decode(pipe, ids), reference)
