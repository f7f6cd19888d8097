"""Training: the objective, a few optimisation steps lower the loss, checkpoints resume exactly."""

import json

import pytest
import torch
from helpers import tiny_config
from safetensors.torch import load_file

from videoflextok_hf import VideoFlexTokModel
from videoflextok_hf.data import write_video
from videoflextok_hf.training import Trainer, TrainingConfig, flow_matching_loss, sample_num_tokens
from videoflextok_hf.training.cli import main as train_main

PATCHIFY = dict(compressor="patchify", vae_latent_channels=768)


def _moving_square_video(path, frames=40, size=48, seed=0):
    generator = torch.Generator().manual_seed(seed)
    video = torch.full((3, frames, size, size), -0.8)
    color = torch.rand(3, generator=generator) * 2 - 1
    for t in range(frames):
        x = 4 + t % (size - 16)
        video[:, t, 10:22, x : x + 12] = color[:, None, None]
    write_video(path, video, fps=8)
    return path


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    for seed in range(2):
        _moving_square_video(folder / f"clip{seed}.mp4", seed=seed)
    return folder


def _config(video_dir, output_dir, **overrides):
    values = dict(
        output_dir=str(output_dir),
        videos=[str(video_dir)],
        fps=[8.0],
        decode_size=40,
        model=tiny_config(**PATCHIFY).to_diff_dict() | {"image_size": 32},
        max_steps=6,
        batch_size=2,
        learning_rate=2e-3,
        warmup_steps=1,
        save_every=3,
        log_every=1,
    )
    values.update(overrides)
    return TrainingConfig.from_dict(values)


def test_nested_dropout_samplers_stay_in_range():
    generator = torch.Generator().manual_seed(0)
    for mode in ("uniform", "pow2", "pow2_roundup", "uniform_pow2", "uniform_halved", "halved", "zipf"):
        k = sample_num_tokens(mode, 16, 500, generator)
        assert k.min() >= 1 and k.max() <= 16, mode
    assert set(sample_num_tokens("pow2", 16, 500, generator).tolist()) == {1, 2, 4, 8, 16}
    assert set(sample_num_tokens("uniform", 4, 500, generator).tolist()) == {1, 2, 3, 4}


def test_objective_samples_what_the_config_asks():
    model = VideoFlexTokModel(tiny_config(**PATCHIFY, null_condition_dropout_prob=1.0, prefix_lengths=[2],
                                          prefix_probabilities=[1.0]))
    videos = torch.rand(3, 3, 17, 32, 32) * 2 - 1
    out = flow_matching_loss(model, videos=videos, generator=torch.Generator().manual_seed(0))
    assert out.unconditional.all() and (out.prefix_frames == 2).all()
    assert torch.isfinite(out.loss) and out.loss.dim() == 0
    again = flow_matching_loss(model, videos=videos, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out.loss, again.loss)  # all randomness comes from the generator
    with pytest.raises(ValueError, match="one chunk of 17 frames"):
        flow_matching_loss(model, videos=torch.zeros(1, 3, 33, 32, 32))
    # the noise levels: sigmoid(N(0, 1)) officially, shifted by sigma_logit_mean on request (same draws)
    shifted = flow_matching_loss(model, videos=videos, generator=torch.Generator().manual_seed(0), sigma_logit_mean=1.5)
    assert torch.allclose(torch.logit(shifted.sigmas.double()), torch.logit(out.sigmas.double()) + 1.5, atol=1e-5)


def test_straight_through_gradients_reach_the_encoder():
    model = VideoFlexTokModel(tiny_config(**PATCHIFY))
    with torch.no_grad():
        model.encoder.fsq_head.proj.weight.normal_(std=0.5)
        for linear in model.decoder.block_modulations:
            linear.weight.normal_(std=0.05)
        model.decoder.head.proj.weight.normal_(std=0.05)
    loss = flow_matching_loss(model, videos=torch.rand(2, 3, 17, 32, 32) * 2 - 1,
                              generator=torch.Generator().manual_seed(1)).loss
    loss.backward()
    assert model.encoder.registers.grad is not None and model.encoder.registers.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.vae.parameters())


def test_a_few_steps_lower_the_loss(video_dir, tmp_path):
    config = _config(video_dir, tmp_path / "run", max_steps=30, save_every=30, learning_rate=3e-3, batch_size=4,
                     ema_decay=0.0, clip_cache=True)  # the in-memory sampler (the resume test below streams)
    trainer = Trainer(config)
    fixed = torch.stack([trainer.dataset[123 + i] for i in range(4)])

    def evaluate():
        losses = [flow_matching_loss(trainer.unwrapped, videos=fixed, generator=torch.Generator().manual_seed(s)).loss
                  for s in range(4)]
        return torch.stack(losses).mean().item()

    with torch.no_grad():
        before = evaluate()
    trainer.train()
    with torch.no_grad():
        after = evaluate()
    assert after < 0.9 * before, (before, after)
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 31))


def test_resume_continues_exactly(video_dir, tmp_path):
    config_file = tmp_path / "train.json"
    config_file.write_text(json.dumps(_config(video_dir, tmp_path / "unused").to_dict()))
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    exported = tmp_path / "exported"
    assert train_main(["--config", str(config_file), "--output-dir", str(straight), "--max-steps", "6",
                       "--export", str(exported), "--export-dtype", "float16"]) == 0
    # interrupted after 3 of 6 steps (same config, so the same learning-rate schedule), then resumed
    assert train_main(["--config", str(config_file), "--output-dir", str(resumed), "--max-steps", "6",
                       "--stop-after", "3"]) == 0
    assert not (resumed / "checkpoint-6").exists()
    assert train_main(["--config", str(config_file), "--output-dir", str(resumed), "--max-steps", "6", "--resume"]) == 0
    for name in ("model.safetensors", "ema.safetensors"):
        a, b = load_file(str(straight / "checkpoint-6" / name)), load_file(str(resumed / "checkpoint-6" / name))
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), (name, key)
    # the export holds the EMA weights, cast to float16 as asked
    ema = load_file(str(straight / "checkpoint-6" / "ema.safetensors"))
    model = VideoFlexTokModel.from_pretrained(exported, dtype=torch.float32)
    weights = load_file(str(exported / "model.safetensors"))
    assert {t.dtype for t in weights.values() if t.is_floating_point()} == {torch.float16}
    state = model.state_dict()
    assert ema.keys() <= state.keys()
    for key, value in ema.items():
        assert torch.equal(state[key], value.half().float()), key


def test_training_config_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown training config keys \\['lr'\\]"):
        TrainingConfig.from_dict({"lr": 1.0, "videos": ["x"], "model": {"image_size": 32}})
    with pytest.raises(ValueError, match="needs `videos`"):
        TrainingConfig.from_dict({"model": {"image_size": 32}})
    with pytest.raises(SystemExit, match="videoflextok-train: "):
        train_main(["--config", str(tmp_path / "missing.yaml")])


def test_clip_sampler_scales_and_colour_permutations(tmp_path):
    from videoflextok_hf.training.data import ClipSampler

    video = torch.zeros(3, 20, 48, 48)
    video[0], video[1], video[2] = -0.6, 0.0, 0.6  # three distinct constant channels: their order is visible
    write_video(tmp_path / "colours.mp4", video, fps=8)
    plain = ClipSampler([str(tmp_path)], clip_frames=17, image_size=32, fps=[8.0], decode_size=[32, 40])
    assert {v.shape[-1] for v in plain.videos} == {32, 40}  # the video at each size
    shuffled = ClipSampler([str(tmp_path)], clip_frames=17, image_size=32, fps=[8.0], decode_size=40,
                           channel_shuffle=True)
    orders = set()
    for clips, shuffle in ((plain.sample(24, torch.Generator().manual_seed(3)), False),
                           (shuffled.sample(24, torch.Generator().manual_seed(3)), True)):
        assert clips.shape == (24, 3, 17, 32, 32)
        for clip in clips:
            order = tuple(clip.mean(dim=(1, 2, 3)).argsort().tolist())
            assert shuffle or order == (0, 1, 2)
            if shuffle:
                orders.add(order)
    assert len(orders) >= 4  # 24 draws over the 6 permutations
    with pytest.raises(ValueError, match="decode_size"):
        ClipSampler([str(tmp_path)], clip_frames=17, image_size=32, decode_size=[16])
