"""Training data and bookkeeping: streaming clips, precomputed latents, validation, trackers, bf16 resume."""

import json

import pytest
import torch
from accelerate import Accelerator
from accelerate.tracking import GeneralTracker
from helpers import tiny_config
from safetensors.torch import load_file

from videoflextok_hf import VideoFlexTokModel
from videoflextok_hf.data import write_video
from videoflextok_hf.training import Trainer, TrainingConfig
from videoflextok_hf.training.data import ClipSampler, StreamingClipDataset
from videoflextok_hf.training.latents import LatentDataset, precompute_latents

DCT = dict(compressor="dct", vae_latent_channels=48, dct_coefficients_per_color=16)


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory):
    """Two videos whose pixels say where they come from: red = frame index, green = column, blue = video."""
    folder = tmp_path_factory.mktemp("stream_videos")
    for seed, frames in ((0, 30), (1, 24)):
        t = torch.linspace(-1, 1, frames).view(frames, 1, 1).expand(frames, 48, 64)
        x = torch.linspace(-1, 1, 64).view(1, 1, 64).expand(frames, 48, 64)
        video = torch.stack([t, x, torch.full_like(t, -0.5 + seed)])
        write_video(folder / f"v{seed}.mp4", video, fps=8)
    return folder


def _config(video_dir, output_dir, **overrides):
    values = dict(output_dir=str(output_dir), videos=[str(video_dir)], fps=[8.0], decode_size=40,
                  model=tiny_config(**DCT).to_diff_dict() | {"image_size": 32}, max_steps=4, batch_size=2,
                  learning_rate=2e-3, warmup_steps=1, save_every=2, log_every=1, num_workers=0)
    values.update(overrides)
    return TrainingConfig.from_dict(values)


def test_streaming_clips_are_a_function_of_the_sample_number(video_dir):
    dataset = StreamingClipDataset([str(video_dir)], clip_frames=17, image_size=(24, 32), fps=[8.0, 4.0],
                                   decode_size=[40, 48], seed=3)
    # every clip start of every video at every rate (at 4 fps both are shorter than a clip); the in-memory sampler
    # trims each video to a valid length (1 + 16K frames) first, so it has one start per video here
    assert dataset.num_clips == (30 - 16) + (24 - 16)
    memory = ClipSampler([str(video_dir)], clip_frames=17, image_size=32, fps=[8.0, 4.0], decode_size=40)
    assert memory.num_clips == 2
    again = StreamingClipDataset([str(video_dir)], clip_frames=17, image_size=(24, 32), fps=[8.0, 4.0],
                                 decode_size=[40, 48], seed=3)
    clips = [dataset[i] for i in range(12)]
    assert all(c.shape == (3, 17, 24, 32) for c in clips)  # (H, W) frames: no square assumption
    assert torch.equal(clips[5], again[5]) and not torch.equal(clips[5], clips[6])
    # red rises over time (a window of consecutive frames), green runs along x left to right or flipped
    slopes = [torch.sign(c[1, 0, 12, -1] - c[1, 0, 12, 0]).item() for c in clips]
    assert all((c[0, 1:].mean((1, 2)) - c[0, :-1].mean((1, 2)) > 0).all() for c in clips)
    assert set(slopes) == {-1.0, 1.0}  # both flips occur
    assert {bool(c[2].mean() > 0) for c in clips} == {False, True}  # both videos (blue -0.5 vs 0.5)
    # a `load_video_dataset` source (here a videofolder folder; a Hub dataset id works the same way)
    folder = StreamingClipDataset(None, clip_frames=17, image_size=(24, 32), fps=[8.0, 4.0], decode_size=[40, 48],
                                  seed=3, dataset=str(video_dir))
    assert folder.num_clips == dataset.num_clips and folder[7].shape == (3, 17, 24, 32)
    with pytest.raises(ValueError, match="no training video has 33 frames"):
        StreamingClipDataset([str(video_dir)], clip_frames=33, image_size=32, fps=[8.0])
    with pytest.raises(ValueError, match="decode_size"):
        StreamingClipDataset([str(video_dir)], clip_frames=17, image_size=(24, 48), decode_size=20)


def test_precomputed_latents_resume_and_train(video_dir, tmp_path):
    config = _config(video_dir, tmp_path / "run")
    folder = precompute_latents(config, tmp_path / "latents", num_clips=6, shard_size=4, progress=False)
    shards = sorted(folder.glob("latents-*.safetensors"))
    assert [p.name for p in shards] == ["latents-00000.safetensors", "latents-00001.safetensors"]
    # the stored posteriors are the VAE's on the streaming dataset's samples 0..5
    model = VideoFlexTokModel(tiny_config(**DCT))
    dataset = StreamingClipDataset([str(video_dir)], clip_frames=17, image_size=32, fps=[8.0], decode_size=40)
    expected = model.vae.encode(torch.stack([dataset[i] for i in range(6)])).latent_dist.mean
    stored = torch.cat([load_file(str(p))["mean"] for p in shards])
    assert torch.allclose(stored, expected, atol=1e-5)
    # resumable: a missing shard is recomputed, finished ones are kept
    first_written = shards[0].stat().st_mtime_ns
    shards[1].unlink()
    with pytest.raises(ValueError, match="missing"):
        LatentDataset(folder)
    precompute_latents(config, folder, num_clips=6, shard_size=4, progress=False)
    assert shards[0].stat().st_mtime_ns == first_written and torch.equal(load_file(str(shards[1]))["mean"], stored[4:])
    with pytest.raises(ValueError, match="other settings"):
        precompute_latents(config, folder, num_clips=7, shard_size=4, progress=False)
    # training reads them (no video decoding: the videos are not even listed)
    trainer = Trainer(_config(video_dir, tmp_path / "run", videos=[], latents_dir=str(folder)))
    trainer.train()
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4] and all(r["loss"] > 0 for r in log)
    assert any(stored.flatten(1).eq(trainer.dataset[0].flatten()).all(1))  # dct: std 0, latents = a stored mean
    # the command line: `videoflextok-train --config ... --precompute-latents DIR`
    from videoflextok_hf.training.cli import main as train_main

    (tmp_path / "train.json").write_text(json.dumps(config.to_dict()))
    assert train_main(["--config", str(tmp_path / "train.json"), "--precompute-latents", str(tmp_path / "cli"),
                       "--num-latent-clips", "2"]) == 0
    assert LatentDataset(tmp_path / "cli").num_clips == 2


class RecordingTracker(GeneralTracker):
    name, requires_logging_directory, main_process_only = "recording", False, True

    def __init__(self):
        super().__init__()
        self.records = []

    @property
    def tracker(self):
        return self.records

    def store_init_configuration(self, values):
        self.records.append(("config", values))

    def log(self, values, step=None, **kwargs):
        self.records.append((step, values))


def test_validation_psnr_and_trackers(video_dir, tmp_path):
    tracker = RecordingTracker()
    config = _config(video_dir, tmp_path / "run", validation_videos=[str(video_dir / "v0.mp4")], validate_every=2,
                     validation_num_tokens=[1, 8], validation_inference_steps=2)
    trainer = Trainer(config, accelerator=Accelerator(cpu=True, log_with=[tracker]))
    trainer.train()
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    validated = [r for r in log if "val_psnr_k1" in r]
    assert [r["step"] for r in validated] == [2, 4]
    assert all(0 < r["val_psnr_k1"] < 100 and 0 < r["val_psnr_k8"] < 100 for r in validated)
    assert trainer.validation_clips.shape == (1, 3, 17, 32, 32)
    steps = [step for step, values in tracker.records if step != "config"]
    assert steps == [1, 2, 3, 4] and tracker.records[0][0] == "config"
    assert tracker.records[2][1]["val_psnr_k8"] == validated[0]["val_psnr_k8"]
    with pytest.raises(ValueError, match="not installed"):
        Trainer(_config(video_dir, tmp_path / "x", log_with=["tensorboard_not_a_tracker"]))
    if not torch.accelerator.is_available():
        with pytest.raises(ValueError, match="fp16.*needs a GPU"):
            Trainer(_config(video_dir, tmp_path / "x", mixed_precision="fp16"))


@pytest.fixture
def fresh_accelerate_state():
    """accelerate keeps one process-wide state, whose mixed precision cannot change: reset it around the test."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def test_bf16_resume_continues_exactly(video_dir, tmp_path, fresh_accelerate_state):
    def run(output, stop_after=None, resume=False):
        trainer = Trainer(_config(video_dir, output, mixed_precision="bf16"))
        return trainer, trainer.train(resume=resume, stop_after=stop_after)

    _, straight = run(tmp_path / "straight")
    run(tmp_path / "resumed", stop_after=2)
    assert (tmp_path / "resumed" / "checkpoint-2").is_dir() and not (tmp_path / "resumed" / "checkpoint-4").exists()
    trainer, resumed = run(tmp_path / "resumed", resume=True)
    assert trainer.step == 4 and trainer.samples_seen == 8
    for (key, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), key
    logs = [(tmp_path / name / "log.jsonl").read_text() for name in ("straight", "resumed")]
    assert logs[0].count("\n") == logs[1].count("\n") == 4
    strip = [[{k: v for k, v in json.loads(line).items() if k != "elapsed_s"} for line in text.splitlines()]
             for text in logs]
    assert strip[0] == strip[1]


def test_accelerate_launch_configs_parse():
    from pathlib import Path

    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils import DistributedType

    configs = Path(__file__).parents[1] / "configs"
    ddp = load_config_from_file(str(configs / "accelerate_multi_gpu.yaml"))
    fsdp = load_config_from_file(str(configs / "accelerate_fsdp.yaml"))
    assert ddp.distributed_type == DistributedType.MULTI_GPU and fsdp.distributed_type == DistributedType.FSDP
    # the wrapped layer class is the model's transformer block
    from videoflextok_hf.modeling.transformer import TransformerBlock

    assert fsdp.fsdp_config["fsdp_transformer_layer_cls_to_wrap"] == TransformerBlock.__name__
