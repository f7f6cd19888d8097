"""Non-square frames against the official code, and a 32 x 48 model trained, tokenizing and decoding a real clip.

The golden tensors in `tests/fixtures/non_square/` were made by running the official code (see `generate.py` there):
24 x 32 frames with patch size (1, 1, 2) and 32 x 48 frames with patch size (1, 2, 2), one and two chunks. Each
official checkpoint is converted with the `videoflextok-convert` entry point and reloaded with `AutoModel`; floats
agree to <= 1e-5 (single forwards and sampler outputs), token ids exactly.
"""

import json
import math
import sys
from pathlib import Path

import pytest
import torch
from helpers import FORWARD_ATOL, max_abs
from safetensors.torch import load_file
from transformers import AutoModel

import videoflextok_hf  # noqa: F401  (registers the Auto classes)
from videoflextok_hf import VideoFlexTokConfig, VideoFlexTokFlowMatchScheduler, VideoFlexTokPipeline
from videoflextok_hf.conversion import OriginalCheckpointError, config_from_original, read_original_config
from videoflextok_hf.conversion.convert_original import main as convert_main
from videoflextok_hf.modeling.transformer import build_attention_mask

FIXTURES = Path(__file__).parent / "fixtures" / "non_square"
SAMPLER_ATOL = FORWARD_ATOL  # measured <= 1.2e-6 on these sets (tests/test_pipeline.py allows 1e-4)
SETS = {"h24_w32_p112": ((24, 32), (3, 4), [1, 1, 2]), "h32_w48_p122": ((32, 48), (4, 6), [1, 2, 2])}


@pytest.fixture(scope="module", params=sorted(SETS))
def case(request, tmp_path_factory):
    name = request.param
    destination = tmp_path_factory.mktemp(name)
    assert convert_main(["--src", str(FIXTURES / name / "official"), "--dst", str(destination)]) == 0
    model = AutoModel.from_pretrained(destination).eval()
    pipe = VideoFlexTokPipeline(model=model, scheduler=VideoFlexTokFlowMatchScheduler())
    pipe.set_progress_bar_config(disable=True)
    io = load_file(str(FIXTURES / name / "io.safetensors"))
    io["video"] = io["video_2chunk"][:, :, :17].contiguous()  # as the official fixture builder cuts it
    return name, model, pipe, io


def test_converted_geometry(case):
    name, model, _, io = case
    frame, grid, patch = SETS[name]
    config = model.config
    assert config.frame_size == frame and config.latent_grid == grid and config.encoder_patch_size == patch
    assert list(config.image_size) == list(frame)
    patches = (grid[0] // patch[1]) * (grid[1] // patch[2])
    assert torch.equal(build_attention_mask("time_block_causal_last", 5, [patches, 8]), io["enc_attn_mask"])
    assert torch.equal(build_attention_mask("time_block_causal", 5, [patches, 8]), io["dec_attn_mask"])


@torch.no_grad()
def test_vae_encoder_and_token_ids(case):
    name, model, _, io = case
    frame, grid, patch = SETS[name]
    posterior = model.vae.encode(io["video"]).latent_dist
    assert max_abs(posterior.mean, io["vae_mean"]) <= FORWARD_ATOL
    assert max_abs(posterior.logvar, io["vae_logvar"]) <= FORWARD_ATOL
    steps_grid = (5, grid[0] // patch[1], grid[1] // patch[2])
    assert max_abs(model.encoder.patch_pos_embed(steps_grid)[None], io["posemb_enc__enc_posemb_module"]) == 0
    assert max_abs(model.decoder.patch_pos_embed(steps_grid)[None], io["posemb_dec__dec_patches_posemb_module"]) == 0
    latents = model.encoder(io["vae_mean"])
    assert max_abs(latents, io["enc_fsq_latents"]) <= FORWARD_ATOL
    assert torch.equal(model.quantizer(latents)[0], io["fsq_quants"])
    assert torch.equal(model.encode(io["video"]).token_ids, io["token_ids"])
    assert torch.equal(model.encode(io["video_2chunk"]).token_ids, io["tokens_2chunk"])
    batch = torch.cat([io["video"], io["video"].flip(-1)])
    assert torch.equal(model.encode(batch).token_ids, io["b2_token_ids"])


@torch.no_grad()
def test_decoder_velocities(case):
    _, model, _, io = case
    ids, xt, t = io["token_ids"], io["dec_xt"], io["dec_t"]
    cases = {
        "dec_v_keep_full": model.predict_velocity(xt, t, ids),
        "dec_v_keep3": model.predict_velocity(xt, t, ids, num_tokens=3),
        "dec_v_uncond": model.predict_velocity(xt, t, ids, unconditional=True),
        "dec_v_prefix1": model.predict_velocity(xt, t, ids, prefix_frames=1),
        "dec_v_cond1": model.predict_velocity(io["dec_xt_cond1"], t, ids, prefix_frames=1),
    }
    for key, velocity in cases.items():
        assert max_abs(velocity, io[key]) <= FORWARD_ATOL, key
    mixed = model.predict_velocity(io["b2_dec_xt"], 0.7, io["b2_token_ids"], num_tokens=io["b2_keep_k"])
    assert max_abs(mixed, io["b2_dec_v"]) <= FORWARD_ATOL


@pytest.mark.parametrize(
    "key,kwargs",
    [
        ("sample_latents_nocfg", dict(guidance_scale=1.0)),
        ("sample_latents_cfg", dict(guidance="cfg", guidance_scale=3.0)),
        ("sample_latents_apg", dict(guidance="apg", guidance_scale=3.0)),
        ("sample_latents_apg_keep3", dict(guidance="apg", guidance_scale=3.0, num_tokens=3)),
    ],
)
def test_single_chunk_sampler(case, key, kwargs):
    _, _, pipe, io = case
    latents = pipe(io["token_ids"], num_inference_steps=4, latents=io["sample_noise"], output_type="latent",
                   **kwargs).frames
    assert max_abs(latents, io[key]) <= SAMPLER_ATOL


def test_conditioning_frame_and_two_chunks(case):
    name, _, pipe, io = case
    frame, grid, _ = SETS[name]
    latents = pipe(io["token_ids"], num_inference_steps=4, guidance_scale=3.0, latents=io["sample_noise"],
                   conditioning_frames=io["video"][:, :, :1], output_type="latent").frames
    assert max_abs(latents[:, :, :1], io["extcond_cond_latents"]) <= FORWARD_ATOL
    assert max_abs(latents, io["sample_latents_extcond_apg"]) <= SAMPLER_ATOL
    kwargs = dict(num_inference_steps=3, guidance_scale=2.0)
    latents = pipe(io["tokens_2chunk"], generator=torch.Generator().manual_seed(0), output_type="latent",
                   **kwargs).frames
    assert latents.shape == (1, 16, 9, *grid)
    assert max_abs(latents[:, :, :5], io["dbg_2chunk_latents_chunk0"]) <= SAMPLER_ATOL
    assert max_abs(latents[:, :, 5:], io["dbg_2chunk_latents_chunk1"][:, :, 1:]) <= SAMPLER_ATOL
    video = pipe(io["tokens_2chunk"], generator=torch.Generator().manual_seed(0), **kwargs).frames
    assert video.shape == (1, 33, 3, *frame)
    with pytest.raises(ValueError, match=rf"conditioning_frames must be {frame[0]}x{frame[1]}"):
        first = io["video"][:, :, :1]
        pipe(io["token_ids"], conditioning_frames=torch.cat([first, first], dim=-1))  # twice as wide


# ---------------------------------------------------------------------------------------------------------------
# the converter's geometry rules


def _official(name="h24_w32_p112"):
    return read_original_config(FIXTURES / name / "official")


def test_converter_accepts_both_size_forms():
    original = _official()
    original["video_preprocess_args"].pop("size")  # frames follow vae_video_sizes
    assert config_from_original(original)[0].image_size == [24, 32]
    square = _official("h32_w48_p122")
    square["vae_video_sizes"] = [5, 4, 4]
    for size in (32, [32], [32, 32]):
        square["video_preprocess_args"]["size"] = size
        assert config_from_original(square)[0].frame_size == (32, 32)


def test_converter_refuses_what_the_official_code_cannot_run():
    original = _official()
    original["vae_video_sizes"] = [5, 4, 3]
    with pytest.raises(OriginalCheckpointError, match=r"\[5, 4, 3\] do not match the preprocessing size \[24, 32\]"):
        config_from_original(original)
    odd = _official("h32_w48_p122")
    odd["vae_video_sizes"], odd["video_preprocess_args"]["size"] = [5, 3, 6], [24, 48]
    with pytest.raises(OriginalCheckpointError, match="latent height 3 is not divisible by the encoder patch height 2"):
        config_from_original(odd)
    large = _official("h32_w48_p122")  # position tables of 8 per axis, a 10-patch-wide grid
    large["vae_video_sizes"], large["video_preprocess_args"]["size"] = [5, 4, 20], [32, 160]
    with pytest.raises(OriginalCheckpointError, match=r"patch grid \[5, 2, 10\] .* exceeds .* max_sizes \[8, 8, 8\]"):
        config_from_original(large)
    zero = _official()
    zero["video_flex_tok"]["encoder"]["module_dict"]["enc_patch_emb"]["patch_sizes"] = [1, 0, 2]
    with pytest.raises(OriginalCheckpointError, match=r"encoder patch_sizes \[1, 0, 2\] must be three positive"):
        config_from_original(zero)
    for levels in ([float("inf"), 5], [8, 1], [], "8,8"):  # found by the fuzz suite: inf crashed with OverflowError
        bad = _official()
        bad["video_flex_tok"]["regularizer"]["levels"] = levels
        with pytest.raises(OriginalCheckpointError, match="`levels` must be a non-empty list of integers >= 2"):
            config_from_original(bad)


def test_config_pairs_round_trip_and_ints_stay_square(tmp_path):
    config = VideoFlexTokConfig(image_size=(32, 48), vae_base_channels=4)
    assert config.image_size == [32, 48] and config.frame_size == (32, 48) and config.latent_grid == (4, 6)
    config.save_pretrained(tmp_path)
    assert VideoFlexTokConfig.from_pretrained(tmp_path).frame_size == (32, 48)
    assert VideoFlexTokConfig(image_size=64).frame_size == (64, 64)
    with pytest.raises(ValueError, match="image_size"):
        VideoFlexTokConfig(image_size=[32, 44])
    with pytest.raises(ValueError, match=r"latent size \[4, 6\]"):
        VideoFlexTokConfig(image_size=[32, 48], encoder_patch_size=[1, 4, 4])


# ---------------------------------------------------------------------------------------------------------------
# a 32 x 48 model end to end: training clips, a few training steps, a real clip tokenized and decoded


def test_a_32x48_model_trains_tokenizes_and_decodes_a_real_clip(tmp_path):
    from helpers import tiny_config

    from videoflextok_hf.data import read_video, write_video
    from videoflextok_hf.samples import SAMPLE_VIDEO
    from videoflextok_hf.training import Trainer, TrainingConfig

    folder = tmp_path / "videos"
    folder.mkdir()
    generator = torch.Generator().manual_seed(0)
    for index in range(2):  # synthetic training videos (the real clip is for evaluation only): 40 x 64, moving box
        video = torch.full((3, 24, 40, 64), -0.7)
        color = torch.rand(3, generator=generator) * 2 - 1
        for t in range(24):
            video[:, t, 8:24, 2 * t : 2 * t + 16] = color[:, None, None]
        write_video(folder / f"clip{index}.mp4", video, fps=8)
    model_config = tiny_config(compressor="dct", vae_latent_channels=48, image_size=[32, 48])
    config = TrainingConfig.from_dict(dict(
        output_dir=str(tmp_path / "run"), videos=[str(folder)], fps=[8.0], model=model_config.to_diff_dict(),
        max_steps=3, batch_size=2, learning_rate=2e-3, warmup_steps=1, save_every=3, log_every=1,
    ))
    trainer = Trainer(config)
    clips = torch.stack([trainer.dataset[i] for i in range(2)])  # training samples 0 and 1 (streamed)
    assert clips.shape == (2, 3, 17, 32, 48)  # decoded at 40 x 60, randomly cropped
    model = trainer.train().eval()
    assert model.config.frame_size == (32, 48) and trainer.step == 3
    losses = [json.loads(line)["loss"] for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert len(losses) == 3 and all(math.isfinite(loss) for loss in losses)

    for mode in ("official", "crop"):
        video = read_video(SAMPLE_VIDEO, fps=model.config.fps, size=model.config.image_size, frame_policy="trim",
                           resize_mode=mode)[None, :, :17]
        assert video.shape == (1, 3, 17, 32, 48)
        with torch.no_grad():
            token_ids = model.encode(video).token_ids
        assert token_ids.shape == (1, 5, 8)
        pipe = VideoFlexTokPipeline(model=model, scheduler=VideoFlexTokFlowMatchScheduler())
        pipe.set_progress_bar_config(disable=True)
        frames = pipe(token_ids, num_inference_steps=2, generator=torch.Generator().manual_seed(0)).frames
        assert frames.shape == (1, 17, 3, 32, 48) and torch.isfinite(frames).all()


def test_pair_sizes_resize_as_the_official_reader():
    from torchvision import transforms

    from videoflextok_hf.data import preprocess_frames

    frames = torch.randint(0, 256, (3, 30, 50, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    float_frames = frames.permute(3, 0, 1, 2).float() / 255.0  # [C, T, H, W] as the official reader holds them
    for size in (24, [24, 32]):  # the official transform: Resize(size) -> clamp -> CenterCrop(size) -> [-1, 1]
        official = transforms.Resize(size, interpolation=transforms.InterpolationMode.BICUBIC)(float_frames)
        official = transforms.CenterCrop(size)(official.clamp(0, 1)) * 2 - 1
        assert max_abs(preprocess_frames(frames, size), official) <= 1e-6
    assert preprocess_frames(frames, [24, 32]).shape == (3, 3, 24, 32)
    # "crop" keeps the aspect ratio: 30 x 50 covers 24 x 40 at scale 0.8, then the centre 24 x 32 is cut
    cover = transforms.Resize([24, 40], interpolation=transforms.InterpolationMode.BICUBIC)(float_frames)
    cover = transforms.CenterCrop([24, 32])(cover.clamp(0, 1)) * 2 - 1
    assert max_abs(preprocess_frames(frames, [24, 32], resize_mode="crop"), cover) <= 1e-6
    assert torch.equal(preprocess_frames(frames, 24, resize_mode="crop"), preprocess_frames(frames, 24))
    with pytest.raises(ValueError, match="resize_mode must be one of"):
        preprocess_frames(frames, [24, 32], resize_mode="stretch")


# ---------------------------------------------------------------------------------------------------------------
# validation at the boundary: the sampling loop runs the unchecked decoder path


def test_sampling_loop_runs_unchecked_and_without_per_step_host_reads(monkeypatch):
    from helpers import randomize_, tiny_config

    from videoflextok_hf import VideoFlexTokModel
    from videoflextok_hf.modeling.fsq import FiniteScalarQuantizer

    model = randomize_(VideoFlexTokModel(tiny_config(compressor="dct", vae_latent_channels=48, image_size=[32, 48])))
    pipe = VideoFlexTokPipeline(model=model.eval(), scheduler=VideoFlexTokFlowMatchScheduler())
    pipe.set_progress_bar_config(disable=True)
    token_ids = torch.randint(0, model.config.codebook_size, (2, 9, 8), generator=torch.Generator().manual_seed(0))
    reads, checks = [], []
    for name in ("item", "tolist", "any", "all", "min", "max", "__bool__", "__int__", "__float__"):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, _name=name, **kwargs):
            # the scheduler's step lookup compares host tensors: the pipeline keeps its grid on the CPU (below)
            if not sys._getframe(1).f_code.co_filename.endswith("scheduling_flow_match.py"):
                reads.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    original_check = FiniteScalarQuantizer.check_ids
    def counted_check(self, *args, **kwargs):
        checks.append(1)
        return original_check(self, *args, **kwargs)

    monkeypatch.setattr(FiniteScalarQuantizer, "check_ids", counted_check)
    monkeypatch.setattr(type(model), "predict_velocity", lambda *a, **k: pytest.fail("the loop ran the checked path"))

    counts = {}
    for steps in (1, 5):
        reads.clear(), checks.clear()
        pipe(token_ids, num_tokens=[8, 3], num_inference_steps=steps, guidance_scale=2.0, output_type="latent",
             generator=torch.Generator().manual_seed(0))
        counts[steps] = (len(reads), len(checks))
        assert pipe.scheduler.timesteps.device.type == "cpu"
    # host reads and id checks happen once per call (and per chunk for the conditioning frame), never per step
    assert counts[1] == counts[5], counts
    assert counts[5][1] == 1


def test_pipeline_reports_missing_learned_tokens_once_as_predict_velocity_does():
    from helpers import randomize_, tiny_config

    from videoflextok_hf import VideoFlexTokModel

    ops = ["position_embedding", "prefix_masking"]  # neither a nested-dropout mask token nor a null condition
    model = randomize_(VideoFlexTokModel(tiny_config(compressor="dct", vae_latent_channels=48,
                                                     decoder_register_ops=ops))).eval()
    pipe = VideoFlexTokPipeline(model=model, scheduler=VideoFlexTokFlowMatchScheduler())
    pipe.set_progress_bar_config(disable=True)
    ids = torch.randint(0, model.config.codebook_size, (1, 5, 8), generator=torch.Generator().manual_seed(0))
    xt = torch.randn(1, 48, 5, 4, 4)
    for call in (lambda: model.predict_velocity(xt, 0.5, ids, num_tokens=3),
                 lambda: pipe(ids, num_tokens=3, guidance="none", num_inference_steps=1)):
        with pytest.raises(ValueError, match="no nested-dropout mask token"):
            call()
    for call in (lambda: model.predict_velocity(xt, 0.5, ids, unconditional=True),
                 lambda: pipe(ids, guidance="cfg", guidance_scale=2.0, num_inference_steps=1)):
        with pytest.raises(ValueError, match="no learned null condition"):
            call()
    # guidance off (or a scale of 1 at every step) needs neither
    assert pipe(ids, guidance="none", num_inference_steps=1, output_type="latent").frames.shape == (1, 48, 5, 4, 4)
    assert pipe(ids, guidance_scale=lambda t: 1.0, num_inference_steps=2, output_type="latent").frames.shape[2] == 5


# ---------------------------------------------------------------------------------------------------------------
# the chunk geometry


@pytest.mark.parametrize("chunk_size,overlap,time_patch", [(17, 1, 1), (17, 0, 1), (9, 1, 1), (17, 5, 1), (17, 1, 5)])
def test_chunk_geometry_counts_split_and_stitch(chunk_size, overlap, time_patch):
    from videoflextok_hf.modeling.chunking import ChunkGeometry

    geometry = ChunkGeometry(chunk_size, overlap, 4, time_patch)
    latent_per_chunk = (chunk_size - 1) // 4 + 1
    assert geometry.latent_frames_per_chunk == latent_per_chunk
    assert geometry.tokens_per_chunk == latent_per_chunk // time_patch
    stride = chunk_size - overlap
    for chunks in (1, 2, 3):
        frames = chunk_size + (chunks - 1) * stride
        assert geometry.num_frames(chunks) == frames and geometry.is_valid_frame_count(frames)
        assert geometry.num_chunks_for_frames(frames) == chunks
        assert geometry.num_chunks_for_token_steps(geometry.num_token_steps(chunks)) == chunks
        assert not geometry.is_valid_frame_count(frames + 1) or stride == 1
        assert geometry.next_valid_frame_count(frames - 1 if chunks > 1 else 1) == frames
        assert geometry.previous_valid_frame_count(frames + stride - 1) == frames
    with pytest.raises(ValueError, match=rf"videos must have .* got T={chunk_size - 1}\."):
        geometry.num_chunks_for_frames(chunk_size - 1)
    # split then stitch: every frame once, in order (frame values are their index)
    video = torch.arange(geometry.num_frames(3), dtype=torch.float32).view(1, 1, -1, 1, 1).expand(2, 1, -1, 1, 1)
    chunks = geometry.split(video)
    assert chunks.shape == (6, 1, chunk_size, 1, 1)
    assert torch.equal(geometry.stitch(chunks, 2, 2, overlap), video)
    # the new token steps of each chunk tile the sequence
    steps = range(geometry.num_token_steps(3))
    covered = [step for chunk in range(3) for step in steps[geometry.new_token_steps(chunk)]]
    assert covered == list(range(geometry.num_token_steps(3)))
    with pytest.raises(ValueError, match=r"overlap must lie in \[0, chunk_size\)"):
        ChunkGeometry(17, 17)


def test_command_line_on_a_non_square_model(tmp_path):
    from helpers import randomize_, tiny_config
    from safetensors import safe_open

    from videoflextok_hf import VideoFlexTokModel
    from videoflextok_hf.cli import main
    from videoflextok_hf.data import probe_video
    from videoflextok_hf.samples import SAMPLE_VIDEO

    model_dir = tmp_path / "model"
    config = tiny_config(compressor="dct", vae_latent_channels=48, image_size=[32, 48])
    randomize_(VideoFlexTokModel(config), seed=1).save_pretrained(model_dir)
    tokens, video = tmp_path / "tokens.safetensors", tmp_path / "out.mp4"
    assert main(["tokenize", str(SAMPLE_VIDEO), "-o", str(tokens), "--model", str(model_dir),
                 "--resize-mode", "crop"]) == 0
    with safe_open(str(tokens), framework="pt") as handle:
        token_ids = handle.get_tensor("token_ids")
    assert token_ids.shape[0] == 1 and token_ids.shape[2] == 8
    assert main(["detokenize", str(tokens), "-o", str(video), "--model", str(model_dir), "--steps", "1"]) == 0
    info = probe_video(video)
    assert (info.height, info.width) == (32, 48)  # the model's frame size, written as it is
