"""Training on several processes: 2 CPU processes (torchrun, gloo) end with the same weights, equal to one process
with the same global batch, and a 2-process run killed mid-training resumes exactly.

Before the loss went through the prepared module's forward, DDP never all-reduced a gradient: the ranks trained
their own models and ended with different weights (this test fails on that code)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import tiny_config
from safetensors.torch import load_file

from videoflextok_hf.data import write_video
from videoflextok_hf.training import Trainer, TrainingConfig

WORKER = Path(__file__).with_name("distributed_training_worker.py")
STEPS, PER_RANK_BATCH = 4, 2


def _video(path, seed, frames=36, size=40):
    generator = torch.Generator().manual_seed(seed)
    video = torch.rand(3, 1, size // 8, size // 8, generator=generator).repeat_interleave(8, -1).repeat_interleave(8, -2)
    video = (video * 2 - 1).expand(3, frames, size, size).clone()
    for t in range(frames):  # a moving bar: motion for the time axis
        video[:, t, :, (2 * t) % size] = 1.0
    write_video(path, video, fps=8)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dist_videos")
    for seed in range(3):
        _video(folder / f"v{seed}.mp4", seed)
    return folder


def _config(videos, output_dir, batch_size, **overrides) -> dict:
    model = tiny_config(compressor="dct", vae_latent_channels=48, dct_coefficients_per_color=16,
                        # one prefix length for every sample: the loss denominator is then the same on each rank, so
                        # the mean of the ranks' losses (what DDP averages) is the one-process loss
                        prefix_lengths=[0], prefix_probabilities=[1.0])
    values = dict(output_dir=str(output_dir), videos=[str(videos)], fps=[8.0], decode_size=[32, 40],
                  model=model.to_diff_dict() | {"image_size": 32}, max_steps=STEPS, batch_size=batch_size,
                  learning_rate=3e-3, warmup_steps=1, save_every=2, log_every=1, ema_decay=0.9,
                  gradient_accumulation_steps=2)  # micro-steps: no_sync, then one all-reduce
    values.update(overrides)
    return values


def _torchrun(config: dict, tmp_path: Path, name: str, *flags: str) -> subprocess.CompletedProcess:
    config_file = tmp_path / f"{name}.json"
    config_file.write_text(json.dumps(config))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(
        [str(Path(__file__).parents[1] / "src"), os.environ.get("PYTHONPATH", "")]))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(WORKER), str(config_file), str(tmp_path / f"{name}-weights"), *flags]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def _ranks(tmp_path: Path, name: str) -> list[dict[str, torch.Tensor]]:
    return [load_file(str(tmp_path / f"{name}-weights" / f"rank{r}.safetensors")) for r in range(2)]


def _losses(output_dir: Path) -> list[tuple[int, float]]:
    records = [json.loads(line) for line in (output_dir / "log.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in records]


def test_two_processes_train_one_model_and_resume_exactly(videos, tmp_path):
    # 2 processes x batch 2 ...
    run = _torchrun(_config(videos, tmp_path / "two", PER_RANK_BATCH), tmp_path, "two")
    assert run.returncode == 0, run.stderr[-3000:]
    rank0, rank1 = _ranks(tmp_path, "two")
    assert rank0.keys() == rank1.keys()
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), f"ranks disagree on {key}: gradients were not synchronised"

    # ... the same training as 1 process x batch 4 on the same samples with the same draws: every step's loss (the
    # mean over all processes' clips) agrees to fp32 rounding (the all-reduce sums in another order) ...
    config = _config(videos, tmp_path / "one", 2 * PER_RANK_BATCH)
    single = Trainer(TrainingConfig.from_dict(config))
    initial = {k: v.detach().clone() for k, v in single.unwrapped.state_dict().items()}
    state = {k: v.detach() for k, v in single.train().state_dict().items()}
    for (step_a, loss_a), (step_b, loss_b) in zip(_losses(tmp_path / "one"), _losses(tmp_path / "two"), strict=True):
        assert step_a == step_b and loss_a == pytest.approx(loss_b, rel=1e-5, abs=0)
    # ... and so do the weights, to rounding. Not element by element: Adam divides each gradient by its own running
    # RMS, so an element whose gradient is ~0 turns a summation-order rounding into a step of up to ~lr, and an FSQ
    # level flipped by rounding changes a few elements by ~1e-3 (measured: max 4.7e-7 to 2.3e-6 on an AMD EPYC; above
    # 1e-5 in decoder.patch_embed.proj.weight on a CI machine). So: nearly every element within 1e-5, and the whole
    # difference tiny next to how far training moved the weights (a different last batch or unsynchronised step
    # would fail both by orders of magnitude)
    difference = torch.cat([(state[k] - rank0[k]).flatten() for k in initial])
    movement = torch.cat([(rank0[k] - initial[k]).flatten() for k in initial])
    off = (difference.abs() > 1e-5).float().mean().item()
    assert off <= 1e-3, f"{off:.2%} of the weights differ from the one-process run by more than 1e-5"
    assert difference.norm() <= 1e-2 * movement.norm(), (difference.norm(), movement.norm())
    moved = max((rank0[k] - initial[k]).abs().max().item() for k in initial)
    assert moved > 2 * config["learning_rate"]  # training moved the weights far more than the tolerance

    # a 2-process run killed (SIGKILL) at the start of step 3, after the step-2 checkpoint, then resumed
    config = _config(videos, tmp_path / "killed", PER_RANK_BATCH)
    crashed = _torchrun(config, tmp_path, "killed", "--die-at-step", "3")
    assert crashed.returncode != 0 and not (tmp_path / "killed-weights").exists()
    assert (tmp_path / "killed" / "checkpoint-2").is_dir() and not (tmp_path / "killed" / "checkpoint-4").exists()
    resumed = _torchrun(config, tmp_path, "killed", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for weights in _ranks(tmp_path, "killed"):
        for key in rank0:
            assert torch.equal(weights[key], rank0[key]), f"resumed run differs on {key}"
    straight_log, resumed_log = _losses(tmp_path / "two"), _losses(tmp_path / "killed")
    assert resumed_log[-2:] == straight_log[-2:]  # steps 3 and 4, logged by the resumed run
    for name in ("model.safetensors", "ema.safetensors"):
        a = load_file(str(tmp_path / "two" / "checkpoint-4" / name))
        b = load_file(str(tmp_path / "killed" / "checkpoint-4" / name))
        assert all(torch.equal(a[k], b[k]) for k in a), name
