"""Property-based fuzzing of the public entry points (hypothesis).

Every entry point gets FUZZ_EXAMPLES generated cases (default 1000, derandomized so CI is reproducible). The
contract checked: valid input gives well-formed, finite output; invalid input raises one of the documented
exception types (ValueError -- including VideoDecodeError and OriginalCheckpointError -- or TypeError) with a
message; nothing else escapes and nothing hangs.
"""

import copy
import json
import math
import os

import pytest
import torch
from conftest import REFERENCE_TINY, SHARED_DATA
from helpers import randomize_, tiny_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from videoflextok_hf import VideoFlexTokConfig, VideoFlexTokModel
from videoflextok_hf.conversion import config_from_original
from videoflextok_hf.data import read_video
from videoflextok_hf.modeling.fsq import FiniteScalarQuantizer
from videoflextok_hf.pipeline import VideoFlexTokFlowMatchScheduler, VideoFlexTokPipeline

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "1000"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))
DOCUMENTED = (ValueError, TypeError)

pytestmark = pytest.mark.fuzz


def _expect_documented(fn):
    """Run fn; return its result, or None if it raised a documented exception with a message."""
    try:
        return fn()
    except DOCUMENTED as error:
        assert str(error), f"{type(error).__name__} without a message"
        return None


@pytest.fixture(scope="module")
def model():
    config = tiny_config(compressor="dct", vae_latent_channels=48, image_size=32, encoder_hidden_size=16,
                         decoder_hidden_size=16, encoder_head_dim=8, decoder_head_dim=8)
    return randomize_(VideoFlexTokModel(config), seed=11).eval()


# ---------------------------------------------------------------------------------------------------------------
# configuration

_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 300), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8), st.lists(st.integers(-2, 20), max_size=5),
    st.dictionaries(st.text(max_size=6), st.integers(0, 9), max_size=3),
)
_FIELDS = st.sampled_from([
    "image_size", "fps", "chunk_size", "overlap_size_frames", "vae_base_channels", "vae_channel_multipliers",
    "num_registers", "num_eval_registers", "register_max_frames", "encoder_hidden_size", "encoder_head_dim",
    "encoder_patch_size", "encoder_attention_mask", "decoder_register_ops", "decoder_adaln_expansion", "fsq_levels",
    "encoder_patch_position_embedding", "decoder_cross_timestep_attention", "compressor", "prefix_probabilities",
    "time_embedding_max_timestep", "not_a_field",
])


@FUZZ
@given(st.dictionaries(_FIELDS, _VALUES, max_size=4))
def test_fuzz_config(overrides):
    config = _expect_documented(lambda: tiny_config(**overrides))
    if config is not None:
        again = VideoFlexTokConfig.from_dict(config.to_dict())
        assert again.to_dict() == config.to_dict()


# ---------------------------------------------------------------------------------------------------------------
# FSQ


@FUZZ
@given(st.lists(st.integers(2, 9), min_size=1, max_size=6), st.data())
def test_fuzz_fsq_round_trips(levels, data):
    quantizer = FiniteScalarQuantizer(levels)
    ids = torch.tensor(data.draw(st.lists(st.integers(-5, quantizer.codebook_size + 5), min_size=1, max_size=16)))
    codes = _expect_documented(lambda: quantizer.ids_to_codes(ids))
    valid = bool(((ids >= 0) & (ids < quantizer.codebook_size)).all())
    assert (codes is not None) == valid
    if valid:
        assert torch.equal(quantizer.codes_to_ids(codes), ids)
        assert codes.abs().max() <= 1.0
    z = torch.tensor(data.draw(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=len(levels),
                                        max_size=len(levels))))
    quantized, z_ids = quantizer(z[None])
    assert torch.isfinite(quantized).all() and 0 <= int(z_ids) < quantizer.codebook_size
    assert torch.equal(quantizer.ids_to_codes(z_ids), quantized)


# ---------------------------------------------------------------------------------------------------------------
# model


_DTYPES = st.sampled_from([torch.float32, torch.float64, torch.float16, torch.int64, torch.uint8, torch.bool])


@FUZZ
@given(
    st.integers(0, 2), st.integers(1, 4), st.sampled_from([1, 5, 16, 17, 18, 33]), st.sampled_from([8, 16, 24, 32, 40]),
    st.sampled_from([16, 32, 33]), _DTYPES, st.sampled_from([1.0, 1.5, float("nan")]), st.integers(4, 6),
)
def test_fuzz_encode(model, batch, channels, frames, height, width, dtype, scale, rank):
    shape = [batch, channels, frames, height, width][:rank] + [2] * max(0, rank - 5)
    videos = (torch.rand(shape) * 2 - 1) * scale
    videos = videos.to(dtype) if dtype.is_floating_point else (videos * 100).to(dtype)
    with torch.no_grad():
        output = _expect_documented(lambda: model.encode(videos))
    if output is not None:
        steps = 5 + 4 * ((frames - 17) // 16)
        assert output.token_ids.shape == (batch, steps, 8) and output.token_ids.dtype == torch.long
        assert 0 <= output.token_ids.min() and output.token_ids.max() < model.config.codebook_size


@FUZZ
@given(
    st.integers(1, 3), st.sampled_from([4, 5, 6]), st.sampled_from([47, 48]), st.integers(1, 9),
    st.one_of(st.floats(-0.5, 1.5), st.lists(st.floats(0, 1), min_size=1, max_size=3)),
    st.one_of(st.none(), st.integers(-1, 10), st.lists(st.integers(0, 9), min_size=1, max_size=3)),
    st.one_of(st.integers(-1, 5), st.lists(st.integers(0, 4), min_size=1, max_size=3)),
    st.one_of(st.booleans(), st.lists(st.booleans(), min_size=1, max_size=3), st.just(1.0)),
    st.integers(-10, 70000),
)
def test_fuzz_predict_velocity(model, batch, steps, channels, count, timestep, num_tokens, prefix, uncond, max_id):
    latents = torch.randn(batch, channels, steps, 4, 4)
    token_ids = torch.randint(0, max(1, min(max_id, 64000)), (batch, steps, count))
    if max_id < 0 or max_id >= 64000:
        token_ids[0, 0, 0] = max_id
    if isinstance(timestep, list):
        timestep = torch.tensor(timestep)
    with torch.no_grad():
        velocity = _expect_documented(lambda: model.predict_velocity(
            latents, timestep, token_ids, num_tokens=num_tokens, prefix_frames=prefix, unconditional=uncond))
    if velocity is not None:
        assert velocity.shape == latents.shape and torch.isfinite(velocity).all()


@pytest.fixture(scope="module")
def pipe(model):
    pipe = VideoFlexTokPipeline(model=model, scheduler=VideoFlexTokFlowMatchScheduler())
    pipe.set_progress_bar_config(disable=True)
    return pipe


@FUZZ
@given(
    st.integers(1, 2), st.sampled_from([4, 5, 9]), st.integers(0, 9),
    st.one_of(st.none(), st.integers(0, 9), st.lists(st.integers(1, 8), min_size=1, max_size=3)),
    st.sampled_from(["apg", "cfg", "none", "pag"]), st.sampled_from([1.0, 2.5, -3.0]),
    st.integers(0, 2), st.sampled_from(["pt", "np", "latent", "gif"]), st.booleans(),
)
def test_fuzz_pipeline(pipe, batch, steps, count, num_tokens, guidance, scale, num_steps, output_type, with_latents):
    token_ids = torch.randint(0, 64000, (batch, steps, count))
    latents = torch.randn(batch, 48, 5, 4, 4) if with_latents else None
    frames = _expect_documented(lambda: pipe(
        token_ids, num_tokens=num_tokens, guidance=guidance, guidance_scale=scale, num_inference_steps=num_steps,
        output_type=output_type, latents=latents, generator=torch.Generator().manual_seed(0)).frames)
    if frames is not None:
        frames = torch.as_tensor(frames)
        assert torch.isfinite(frames).all()
        if output_type != "latent":
            assert frames.shape[:2] == (batch, 17 + 16 * ((steps - 5) // 4)) and 0 <= frames.min() <= frames.max() <= 1


# ---------------------------------------------------------------------------------------------------------------
# scheduler


@FUZZ
@given(st.one_of(st.integers(-2, 60), st.floats(), st.none()),
       st.one_of(st.none(), st.lists(st.floats(-1, 2, allow_nan=False), min_size=0, max_size=6)))
def test_fuzz_scheduler(steps, sigmas):
    scheduler = VideoFlexTokFlowMatchScheduler()
    result = _expect_documented(lambda: scheduler.set_timesteps(steps, sigmas=sigmas))
    if result is None and not scheduler.sigmas:
        return
    sample = torch.randn(2, 3)
    for t in scheduler.timesteps:
        sample = scheduler.step(torch.randn(2, 3), t, sample).prev_sample
    assert torch.isfinite(sample).all() and scheduler.sigmas[-1] == 0.0
    assert all(a > b for a, b in zip(scheduler.sigmas, scheduler.sigmas[1:]))


# ---------------------------------------------------------------------------------------------------------------
# video files

CLIP_BYTES = (SHARED_DATA / "orig_clip.mp4").read_bytes()


@FUZZ
@given(st.lists(st.tuples(st.integers(0, len(CLIP_BYTES) - 1), st.integers(0, 255)), max_size=20),
       st.integers(0, len(CLIP_BYTES)))
def test_fuzz_corrupted_video_bytes(tmp_path_factory, flips, cut):
    data = bytearray(CLIP_BYTES[:cut])
    for position, value in flips:
        if position < len(data):
            data[position] = value
    path = tmp_path_factory.getbasetemp() / "fuzz.mp4"
    path.write_bytes(bytes(data))
    video = _expect_documented(lambda: read_video(path, fps=None, size=16, frame_policy="pad"))
    if video is not None:
        assert video.shape[:2] == (3, 17) and torch.isfinite(video).all() and video.abs().max() <= 1


# ---------------------------------------------------------------------------------------------------------------
# conversion of official configs

OFFICIAL = json.loads((REFERENCE_TINY / "official" / "config.json").read_text())


def _paths(tree, prefix=()):
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield prefix + (key,)
            yield from _paths(value, prefix + (key,))
    elif isinstance(tree, list):
        for index, value in enumerate(tree):
            yield prefix + (index,)
            yield from _paths(value, prefix + (index,))


ALL_PATHS = list(_paths(OFFICIAL))


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(ALL_PATHS), st.sampled_from(["delete", "replace"]), _VALUES), max_size=3))
def test_fuzz_official_config_mutations(mutations):
    tree = copy.deepcopy(OFFICIAL)
    for path, action, value in mutations:
        parent = tree
        try:
            for key in path[:-1]:
                parent = parent[key]
            if action == "delete" and isinstance(parent, dict):
                parent.pop(path[-1], None)
            else:
                parent[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue
    result = _expect_documented(lambda: config_from_original(tree, {"base_channels": 4}))
    if result is not None:
        config, parsed = result
        assert isinstance(config, VideoFlexTokConfig) and parsed.key_rules
        assert math.isfinite(config.fps)


# ---------------------------------------------------------------------------------------------------------------
# command line: any argv made of the commands' real flags with good and bad values exits 0 (a result) or 2 (argparse
# or one line on stderr), never with a traceback


@pytest.fixture(scope="module")
def cli_files(model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    model.save_pretrained(folder / "model")
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "junk.safetensors").write_bytes(b"\x00" * 64)
    return folder


_CLI_VALUES = st.sampled_from(["0", "1", "4", "-1", "99", "1,4", "x", "", "nan", "cpu", "cuda", "float16", "apg", "none"])
_CLI_FLAGS = st.sampled_from(["--num-tokens", "--steps", "--guidance-scale", "--guidance", "--frame-policy",
                              "--seed", "--seeds", "--dtype", "--device", "--bogus"])


@FUZZ
@given(st.sampled_from(["tokenize", "detokenize", "eval", "frobnicate"]),
       st.sampled_from(["clip", "empty", "junk", "missing"]),
       st.lists(st.tuples(_CLI_FLAGS, _CLI_VALUES), max_size=3))
def test_fuzz_cli(cli_files, capsys, command, source, flags):
    from videoflextok_hf.cli import main

    inputs = {"clip": str(SHARED_DATA / "orig_clip.mp4"), "empty": str(cli_files / "empty.mp4"),
              "junk": str(cli_files / "junk.safetensors"), "missing": str(cli_files / "missing.mp4")}
    argv = [command, inputs[source], "--model", str(cli_files / "model")]
    if command != "eval":
        argv += ["-o", str(cli_files / ("out.safetensors" if command == "tokenize" else "out.mp4"))]
    argv += [part for flag, value in flags for part in (flag, value)]
    if command != "tokenize":
        argv += ["--steps", "1"]  # keep decoding cheap unless a flag above overrides it with something bad
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse rejects the command line
        code = exit_.code
    captured = capsys.readouterr()
    assert code in (0, 2), (argv, code)
    assert "Traceback" not in captured.err, (argv, captured.err)
    if code == 2:
        assert captured.err.strip(), argv
