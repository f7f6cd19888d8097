"""Training loop for VideoFlexTok: the official objective through `accelerate`, with EMA and exact resume.

One command runs on one CPU, one GPU or several GPUs (`accelerate launch videoflextok-train ...`). Every random
choice of a step (which clips, crops, flips, noise, k, sigma) is drawn from a generator seeded by
(seed, step, process), so a run resumed from a checkpoint continues exactly as if it had not stopped.
Checkpoints are safetensors only: model, EMA and optimizer tensors, with the scalars in a JSON file.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from ..modeling.configuration_videoflextok import VideoFlexTokConfig
from ..modeling.modeling_videoflextok import VideoFlexTokModel
from ..utils import atomic_write_dir, save_pretrained_atomically
from .data import ClipSampler, expand_video_paths
from .objective import flow_matching_loss

logger = logging.getLogger(__name__)

CHECKPOINT_STATE = "trainer_state.json"


@dataclass
class TrainingConfig:
    """Everything a training run needs; loadable from YAML/JSON (`TrainingConfig.from_file`)."""

    output_dir: str = "runs/videoflextok"
    # model: a VideoFlexTokConfig as a dict, or `init_from` a pretrained folder
    model: dict[str, Any] = field(default_factory=dict)
    init_from: str | None = None
    # data: video files or folders (mp4/mkv/webm/avi/mov), decoded at these frame rates
    videos: list[str] = field(default_factory=list)
    fps: list[float] = field(default_factory=lambda: [8.0])
    decode_size: int | list[int] | None = None  # center-crop size(s) before random crops (default 1.25 * image_size)
    random_crop: bool = True
    horizontal_flip: bool = True
    channel_shuffle: bool = False  # random RGB permutation per clip
    # optimisation
    seed: int = 0
    max_steps: int = 1000
    batch_size: int = 8
    gradient_accumulation_steps: int = 1
    learning_rate: float = 3e-4
    warmup_steps: int = 100
    lr_schedule: str = "cosine"  # "cosine" or "constant"
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.01
    adam_betas: tuple[float, float] = (0.9, 0.99)
    max_grad_norm: float = 1.0
    sigma_logit_mean: float = 0.0  # noise levels sigmoid(N(mean, 1)); 0 is the official objective
    zero_fsq_head: bool = True  # official init of the encoder's FSQ projection for models trained from scratch
    ema_decay: float = 0.999
    mixed_precision: str = "no"  # "no", "bf16" or "fp16" (accelerate)
    gradient_checkpointing: bool = False
    # bookkeeping
    log_every: int = 10
    save_every: int = 500
    keep_checkpoints: int = 2

    @classmethod
    def from_file(cls, path: str | os.PathLike, **overrides) -> "TrainingConfig":
        text = Path(path).read_text()
        try:
            values = yaml.safe_load(text) if str(path).endswith((".yaml", ".yml")) else json.loads(text)
        except (yaml.YAMLError, json.JSONDecodeError) as error:
            raise ValueError(f"{path}: not a valid training config file ({error}).") from None
        if values is not None and not isinstance(values, dict):
            raise ValueError(f"{path}: a training config is a mapping of settings, got a {type(values).__name__}.")
        values = dict(values or {})
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(values)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainingConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown training config keys {unknown}; valid keys: {sorted(known)}.")
        config = cls(**values)
        config.validate()
        return config

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def validate(self) -> None:
        for name in ("max_steps", "batch_size", "gradient_accumulation_steps", "log_every", "save_every"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"training config {name}={getattr(self, name)!r} must be a positive integer.")
        if self.learning_rate <= 0 or not 0 <= self.ema_decay < 1:
            raise ValueError("learning_rate must be > 0 and ema_decay in [0, 1).")
        if self.lr_schedule not in ("cosine", "constant"):
            raise ValueError(f"lr_schedule must be 'cosine' or 'constant', got {self.lr_schedule!r}.")
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise ValueError(f"mixed_precision must be 'no', 'bf16' or 'fp16', got {self.mixed_precision!r}.")
        if not self.videos:
            raise ValueError("training config needs `videos`: a list of video files or folders.")
        if self.init_from is None and not self.model:
            raise ValueError("training config needs `model` (a VideoFlexTokConfig dict) or `init_from`.")

    def learning_rate_at(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.learning_rate * (step + 1) / self.warmup_steps
        if self.lr_schedule == "constant":
            return self.learning_rate
        progress = (step - self.warmup_steps) / max(1, self.max_steps - self.warmup_steps)
        cosine = 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
        return self.learning_rate * (self.min_lr_ratio + (1 - self.min_lr_ratio) * cosine)


def step_generator(seed: int, step: int, process_index: int, stream: int) -> torch.Generator:
    """A fresh generator for one (step, process, purpose): no RNG state has to survive a restart."""
    return torch.Generator().manual_seed(((seed * 1_000_003 + step) * 97 + process_index) * 7 + stream)


class ExponentialMovingAverage:
    """EMA of the trainable parameters, kept by name so that it saves to safetensors."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.shadow = {name: p.detach().clone().float() for name, p in model.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        # warm up the decay so that early averages are not dominated by the random initialisation
        decay = min(self.decay, (1 + step) / (10 + step))
        for name, param in model.named_parameters():
            if name in self.shadow:
                self.shadow[name].lerp_(param.detach().float(), 1 - decay)

    @torch.no_grad()
    def copy_to(self, model: torch.nn.Module) -> None:
        for name, param in model.named_parameters():
            if name in self.shadow:
                param.copy_(self.shadow[name].to(param.dtype))


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    state = optimizer.state_dict()
    tensors = {}
    for index, values in state["state"].items():
        for key, value in values.items():
            tensors[f"{index}.{key}"] = value if isinstance(value, torch.Tensor) else torch.tensor(value)
    return tensors, {"param_groups": state["param_groups"]}


def _load_optimizer_tensors(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


class Trainer:
    def __init__(self, config: TrainingConfig, accelerator=None):
        from accelerate import Accelerator

        self.config = config
        self.accelerator = accelerator or Accelerator(
            mixed_precision=config.mixed_precision, gradient_accumulation_steps=config.gradient_accumulation_steps
        )
        torch.manual_seed(config.seed)
        if config.init_from:
            model = VideoFlexTokModel.from_pretrained(config.init_from)
        else:
            model = VideoFlexTokModel(VideoFlexTokConfig(**config.model))
            if config.zero_fsq_head:
                # the official from-scratch init: FSQ inputs start at 0, in tanh's linear range. A random head starts
                # partly saturated, and Adam's normalised steps on the vanishing gradients push it further out
                # (measured on the tiny model: pre-FSQ std 4.6 and ~10 distinct ids after 400 steps, vs std 1.1
                # and ~95 ids with a zero head)
                with torch.no_grad():
                    model.encoder.fsq_head.proj.weight.zero_()
        if config.gradient_checkpointing:
            model.gradient_checkpointing_enable()
        model.train()
        self.ema = ExponentialMovingAverage(model, config.ema_decay)
        trainable = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            trainable, lr=config.learning_rate, betas=tuple(config.adam_betas), weight_decay=config.weight_decay
        )
        self.model, self.optimizer = self.accelerator.prepare(model, self.optimizer)
        expand_video_paths(config.videos)  # fail early on missing files; decoding waits for the first step
        self._sampler: ClipSampler | None = None
        self.step = 0
        self.output_dir = Path(config.output_dir)
        self.log_path = self.output_dir / "log.jsonl"

    @property
    def sampler(self) -> ClipSampler:
        """The training clips, decoded on first use (a finished run resumed only to export decodes nothing)."""
        if self._sampler is None:
            config, model_config = self.config, self.unwrapped.config
            self._sampler = ClipSampler(
                config.videos,
                clip_frames=model_config.chunk_size,
                image_size=model_config.image_size,
                fps=config.fps,
                decode_size=config.decode_size,
                random_crop=config.random_crop,
                horizontal_flip=config.horizontal_flip,
                channel_shuffle=config.channel_shuffle,
            )
        return self._sampler

    @property
    def unwrapped(self) -> VideoFlexTokModel:
        return self.accelerator.unwrap_model(self.model)

    # ---------------------------------------------------------------------------------------------------------
    def save_checkpoint(self) -> Path:
        """`output_dir/checkpoint-<step>/`: model (save_pretrained), EMA, optimizer tensors, trainer state."""
        if not self.accelerator.is_main_process:
            return self.output_dir / f"checkpoint-{self.step}"
        target = self.output_dir / f"checkpoint-{self.step}"
        with atomic_write_dir(target) as tmp:
            self.unwrapped.save_pretrained(tmp / "model")
            save_file({k: v.contiguous() for k, v in self.ema.shadow.items()}, str(tmp / "ema.safetensors"))
            tensors, meta = _optimizer_tensors(self.optimizer.optimizer if hasattr(self.optimizer, "optimizer")
                                               else self.optimizer)
            save_file(tensors, str(tmp / "optimizer.safetensors"))
            state = {"step": self.step, "optimizer": meta, "training_config": self.config.to_dict()}
            (tmp / CHECKPOINT_STATE).write_text(json.dumps(state, indent=2))
        checkpoints = sorted(self.output_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
        for old in checkpoints[: -self.config.keep_checkpoints]:
            import shutil

            shutil.rmtree(old)
        return target

    def latest_checkpoint(self) -> Path | None:
        checkpoints = [p for p in self.output_dir.glob("checkpoint-*") if (p / CHECKPOINT_STATE).is_file()]
        return max(checkpoints, key=lambda p: int(p.name.split("-")[1]), default=None)

    def load_checkpoint(self, path: str | os.PathLike) -> None:
        path = Path(path)
        state = json.loads((path / CHECKPOINT_STATE).read_text())
        weights = load_file(str(path / "model" / "model.safetensors"))
        self.unwrapped.load_state_dict(weights, strict=True)
        self.ema.shadow = load_file(str(path / "ema.safetensors"))
        optimizer = self.optimizer.optimizer if hasattr(self.optimizer, "optimizer") else self.optimizer
        _load_optimizer_tensors(optimizer, load_file(str(path / "optimizer.safetensors")), state["optimizer"])
        self.step = state["step"]

    # ---------------------------------------------------------------------------------------------------------
    def train_step(self) -> float:
        config, accelerator = self.config, self.accelerator
        rank = accelerator.process_index
        for micro in range(config.gradient_accumulation_steps):
            data_gen = step_generator(config.seed, self.step * config.gradient_accumulation_steps + micro, rank, 0)
            noise_gen = step_generator(config.seed, self.step * config.gradient_accumulation_steps + micro, rank, 1)
            clips = self.sampler.sample(config.batch_size, data_gen).to(accelerator.device)
            with accelerator.accumulate(self.model), accelerator.autocast():
                loss = flow_matching_loss(self.unwrapped, videos=clips, generator=noise_gen,
                                          sigma_logit_mean=config.sigma_logit_mean).loss
                accelerator.backward(loss)
                if accelerator.sync_gradients and config.max_grad_norm:
                    accelerator.clip_grad_norm_(self.model.parameters(), config.max_grad_norm)
                for group in self.optimizer.param_groups:
                    group["lr"] = config.learning_rate_at(self.step)
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
        self.ema.update(self.unwrapped, self.step)
        self.step += 1
        return loss.item()

    def train(self, resume: bool = False, stop_after: int | None = None) -> VideoFlexTokModel:
        """Train to `max_steps` (or stop early after `stop_after` steps of this session, saving a checkpoint:
        for time-boxed jobs; a later `resume=True` run continues exactly)."""
        config = self.config
        self.output_dir.mkdir(parents=True, exist_ok=True)
        if resume and (checkpoint := self.latest_checkpoint()) is not None:
            self.load_checkpoint(checkpoint)
            logger.info("resumed from %s at step %d", checkpoint, self.step)
        progress = tqdm(total=config.max_steps, initial=self.step, disable=not self.accelerator.is_main_process,
                        desc="training")
        running, start = [], time.time()
        last_step = config.max_steps if stop_after is None else min(config.max_steps, self.step + stop_after)
        while self.step < last_step:
            running.append(self.train_step())
            progress.update(1)
            if self.step % config.log_every == 0 or self.step == config.max_steps:
                record = {"step": self.step, "loss": sum(running) / len(running),
                          "lr": config.learning_rate_at(self.step - 1), "elapsed_s": round(time.time() - start, 1)}
                progress.set_postfix(loss=f"{record['loss']:.4f}")
                if self.accelerator.is_main_process:
                    with open(self.log_path, "a") as handle:
                        handle.write(json.dumps(record) + "\n")
                running = []
            if self.step % config.save_every == 0 or self.step == last_step:
                self.save_checkpoint()
        progress.close()
        return self.unwrapped

    def export(self, destination: str | os.PathLike, use_ema: bool = True, dtype: torch.dtype | None = None) -> Path:
        """Save the trained (EMA) weights as a `from_pretrained` folder, optionally cast to `dtype` (e.g. float16 to
        halve the size of a model that ships inside a package)."""
        model = self.unwrapped
        if use_ema:
            backup = {k: v.detach().clone() for k, v in model.state_dict().items()}
            self.ema.copy_to(model)
        try:
            exported = copy.deepcopy(model).to(dtype) if dtype is not None else model
            save_pretrained_atomically(exported, destination)  # a killed export leaves the old or the new model
        finally:
            if use_ema:
                model.load_state_dict(backup)
        return Path(destination)
