"""Training loop for VideoFlexTok: the official objective through `accelerate`, with EMA and exact resume.

One command runs on one CPU, one GPU, several GPUs or several nodes (`accelerate launch` / `torchrun`, see
docs/training.md). The loss is the forward of the prepared `FlowMatchingObjective`, so DDP / FSDP / DeepSpeed see it.
Every random choice of a step (which clips, crops, flips, noise, k, sigma) is drawn from generators seeded by the
global sample number or step, never by the process, so one process with batch P*b and P processes with batch b
train on the same samples with the same draws, and a resumed run continues exactly as if it had not stopped.
Checkpoints are `accelerator.save_state` folders (model as safetensors, optimizer / GradScaler / RNG states as
accelerate writes them) plus the EMA (safetensors) and the data position (JSON).
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
from ..utils import save_pretrained_atomically
from .data import (
    ClipSampler,
    GlobalSampleSampler,
    InMemoryClipDataset,
    StreamingClipDataset,
    augment_clip,
    expand_video_paths,
)
from .growth import GROWABLE_KEYS, grow_registers
from .objective import FlowMatchingObjective

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
    # or/and a `load_video_dataset` source: a videofolder folder, a Hub dataset id (labels are ignored)
    video_dataset: str | None = None
    num_workers: int = 2  # DataLoader worker processes decoding clips (per training process); 0 = in the loop
    # decode every video once into memory (ClipSampler) instead of streaming clips: much faster for a small corpus,
    # but memory grows with the corpus (on every process); `videos` only
    clip_cache: bool = False
    # precomputed VAE latents (`videoflextok-train --precompute-latents`): read instead of running the frozen VAE
    latents_dir: str | None = None
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
    log_with: list[str] = field(default_factory=list)  # accelerate trackers, e.g. [tensorboard] or [wandb]
    validation_videos: list[str] = field(default_factory=list)  # held-out videos: reconstruction PSNR per k
    validate_every: int = 0  # steps between validations (0: never)
    validation_num_tokens: list[int] | None = None  # k values (default: powers of two up to num_registers)
    validation_inference_steps: int = 10
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
        if not (self.videos or self.video_dataset or self.latents_dir):
            raise ValueError("training config needs `videos`: a list of video files or folders (or `video_dataset`, "
                             "or `latents_dir` with precomputed latents).")
        if isinstance(self.log_with, str):
            self.log_with = [self.log_with]
        if not isinstance(self.num_workers, int) or self.num_workers < 0:
            raise ValueError(f"num_workers={self.num_workers!r} must be an integer >= 0.")
        if not isinstance(self.validate_every, int) or self.validate_every < 0:
            raise ValueError(f"validate_every={self.validate_every!r} must be an integer >= 0 (0: no validation).")
        if self.clip_cache and (self.video_dataset or not self.videos):
            raise ValueError("clip_cache decodes the `videos` files into memory; it does not read `video_dataset`. "
                             "List the videos, or set clip_cache: false to stream.")
        if self.validate_every and not self.validation_videos:
            raise ValueError("validate_every > 0 needs `validation_videos` (held-out video files or folders).")
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


def _like(full: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """`full` placed like `reference`: same device, and sharded the same way if `reference` is a DTensor (FSDP2)."""
    if hasattr(reference, "device_mesh"):
        from torch.distributed.tensor import distribute_tensor

        return distribute_tensor(full.to(reference.dtype), reference.device_mesh, reference.placements)
    return full.to(device=reference.device, dtype=reference.dtype)


def build_model(config: TrainingConfig) -> VideoFlexTokModel:
    """The model a run starts from: `init_from` loaded, or `model` initialised from `seed`."""
    torch.manual_seed(config.seed)
    if config.init_from:
        # master weights in float32 whatever the folder stores (mixed precision is accelerate's job)
        model = VideoFlexTokModel.from_pretrained(config.init_from, dtype=torch.float32)
        unsupported = set(config.model) - GROWABLE_KEYS
        if unsupported:
            raise ValueError(f"init_from={config.init_from!r} takes its architecture from that model; `model` may only "
                             f"set {sorted(GROWABLE_KEYS)} with it (to grow the model), got {sorted(unsupported)}.")
        if config.model.get("num_registers", model.config.num_registers) != model.config.num_registers:
            model = grow_registers(model, config.model["num_registers"],
                                   generator=torch.Generator().manual_seed(config.seed))
        return model
    model = VideoFlexTokModel(VideoFlexTokConfig(**config.model))
    if config.zero_fsq_head:
        # the official from-scratch init: FSQ inputs start at 0, in tanh's linear range. A random head starts
        # partly saturated, and Adam's normalised steps on the vanishing gradients push it further out
        # (measured on the tiny model: pre-FSQ std 4.6 and ~10 distinct ids after 400 steps, vs std 1.1
        # and ~95 ids with a zero head)
        with torch.no_grad():
            model.encoder.fsq_head.proj.weight.zero_()
    return model


class Trainer:
    """Trains a VideoFlexTok model as `config` says; `train()` returns the trained model on every process.

    `batch_size` is per process and per micro-step: a step trains on `batch_size * num_processes *
    gradient_accumulation_steps` clips.
    """

    def __init__(self, config: TrainingConfig, accelerator=None):
        from accelerate import Accelerator
        from accelerate.tracking import get_available_trackers

        self.config = config
        available = {str(tracker) for tracker in get_available_trackers()}
        missing = [name for name in config.log_with if name != "all" and name not in available]
        if missing and accelerator is None:  # accelerate would drop them without a word
            raise ValueError(f"log_with {missing}: not installed (available trackers: {sorted(available) or 'none'}); "
                             "install the package (e.g. `pip install tensorboard`) or remove it from log_with.")
        if accelerator is None and config.mixed_precision == "fp16" and not torch.accelerator.is_available():
            # accelerate would run it in float32 without a word (no autocast, no GradScaler on CPU)
            raise ValueError("mixed_precision='fp16' needs a GPU; on CPU use 'bf16' (autocast) or 'no'.")
        self.accelerator = accelerator or Accelerator(
            mixed_precision=config.mixed_precision, gradient_accumulation_steps=config.gradient_accumulation_steps,
            log_with=config.log_with or None, project_dir=config.output_dir,
            # without cpu=True, accelerate treats processes launched by torchrun on a machine without accelerator
            # as unrelated single-process jobs (no process group): each would train its own model
            cpu=not torch.accelerator.is_available(),
        )
        launched = int(os.environ.get("WORLD_SIZE", "1"))
        if launched != self.accelerator.num_processes:
            raise RuntimeError(
                f"launched as {launched} processes (WORLD_SIZE) but accelerate runs {self.accelerator.num_processes}: "
                "the processes would train separate models. Launch with `accelerate launch` / `torchrun` and let "
                "Trainer create the Accelerator, or pass one configured for this launch."
            )
        model = build_model(config)
        if config.gradient_checkpointing:
            model.gradient_checkpointing_enable()
        model.train()
        trainable = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            trainable, lr=config.learning_rate, betas=tuple(config.adam_betas), weight_decay=config.weight_decay
        )
        # the objective is the prepared module: its forward is what DDP / FSDP / DeepSpeed wrap
        self.model, self.optimizer = self.accelerator.prepare(
            FlowMatchingObjective(model, config.sigma_logit_mean), self.optimizer
        )
        self.ema = ExponentialMovingAverage(self.unwrapped, config.ema_decay)  # on the prepared model's device
        if config.latents_dir is None and config.videos:
            expand_video_paths(config.videos)  # fail early on missing files; indexing waits for the first step
        self._dataset = None
        self._validation_clips = None
        self.step = 0
        self.samples_seen = 0  # the data position: global sample numbers below it have been trained on
        self.output_dir = Path(config.output_dir)
        self.log_path = self.output_dir / "log.jsonl"

    @property
    def unwrapped(self) -> VideoFlexTokModel:
        return self.accelerator.unwrap_model(self.model).model

    @property
    def samples_per_step(self) -> int:
        config = self.config
        return config.batch_size * self.accelerator.num_processes * config.gradient_accumulation_steps

    # ---------------------------------------------------------------------------------------------------------
    # data
    @property
    def dataset(self) -> torch.utils.data.Dataset:
        """Item i = global sample i: a decoded, augmented clip (or precomputed latents); built on first use."""
        if self._dataset is None:
            config, model_config = self.config, self.unwrapped.config
            if config.latents_dir is not None:
                from .latents import LatentDataset

                self._dataset = LatentDataset(config.latents_dir, seed=config.seed)
            elif config.clip_cache:
                self._dataset = InMemoryClipDataset(ClipSampler(
                    config.videos, clip_frames=model_config.chunk_size, image_size=model_config.image_size,
                    fps=config.fps, decode_size=config.decode_size, random_crop=config.random_crop,
                    horizontal_flip=config.horizontal_flip, channel_shuffle=config.channel_shuffle,
                ), seed=config.seed)
            else:
                self._dataset = StreamingClipDataset(
                    config.videos, clip_frames=model_config.chunk_size, image_size=model_config.image_size,
                    fps=config.fps, decode_size=config.decode_size, random_crop=config.random_crop,
                    horizontal_flip=config.horizontal_flip, channel_shuffle=config.channel_shuffle,
                    seed=config.seed, dataset=config.video_dataset,
                )
        return self._dataset

    def dataloader(self, steps: int) -> torch.utils.data.DataLoader:
        """The next `steps` steps' batches from `samples_seen` on, sharded across processes by accelerate."""
        config = self.config
        sampler = GlobalSampleSampler(self.samples_seen, self.samples_seen + steps * self.samples_per_step)
        loader = torch.utils.data.DataLoader(
            self.dataset, batch_size=config.batch_size, sampler=sampler, num_workers=config.num_workers,
            prefetch_factor=2 if config.num_workers else None,
        )
        return self.accelerator.prepare(loader)

    # ---------------------------------------------------------------------------------------------------------
    # checkpoints
    def save_checkpoint(self) -> Path:
        """`output_dir/checkpoint-<step>/`: `accelerator.save_state` (model, optimizer, GradScaler, RNG states),
        the EMA (`ema.safetensors`) and the trainer state (step, data position, config) as JSON, written last.

        Every process writes its part to a staging folder that is renamed when all are done, so a job killed
        while saving leaves the previous checkpoint intact."""
        import shutil

        accelerator = self.accelerator
        target = self.output_dir / f"checkpoint-{self.step}"
        staging = self.output_dir / f".checkpoint-{self.step}.partial"
        if accelerator.is_main_process and staging.exists():
            shutil.rmtree(staging)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(staging), safe_serialization=True)
        # sharded (FSDP2 DTensor) EMA entries are gathered on every process (a collective), then written by one
        ema = {k: (v.full_tensor() if hasattr(v, "full_tensor") else v).detach().contiguous().cpu()
               for k, v in self.ema.shadow.items()}
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            # the EMA and the data position are saved here rather than through register_for_checkpointing:
            # accelerate unpickles registered objects with weights_only=False, which a checkpoint must never need
            save_file(ema, str(staging / "ema.safetensors"))
            state = {"step": self.step, "samples_seen": self.samples_seen,
                     "num_processes": accelerator.num_processes, "training_config": self.config.to_dict()}
            (staging / CHECKPOINT_STATE).write_text(json.dumps(state, indent=2))
            if target.exists():
                shutil.rmtree(target)
            staging.rename(target)
            checkpoints = sorted(self.output_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
            for old in checkpoints[: -self.config.keep_checkpoints]:
                shutil.rmtree(old)
        accelerator.wait_for_everyone()
        return target

    def latest_checkpoint(self) -> Path | None:
        checkpoints = [p for p in self.output_dir.glob("checkpoint-*") if (p / CHECKPOINT_STATE).is_file()]
        return max(checkpoints, key=lambda p: int(p.name.split("-")[1]), default=None)

    def load_checkpoint(self, path: str | os.PathLike) -> None:
        path = Path(path)
        state = json.loads((path / CHECKPOINT_STATE).read_text())
        if "samples_seen" not in state:
            raise ValueError(f"{path} is a checkpoint of the earlier trainer format (model/, optimizer.safetensors), "
                             "which cannot be resumed by this version; export it or start a new run with "
                             f"init_from: {path / 'model'}.")
        self.accelerator.load_state(str(path), strict=True)
        ema = load_file(str(path / "ema.safetensors"))
        if ema.keys() != self.ema.shadow.keys():
            raise ValueError(f"{path}: the EMA does not match the model's trainable parameters; was the checkpoint "
                             "written for another model config?")
        self.ema.shadow = {k: _like(v, self.ema.shadow[k]) for k, v in ema.items()}
        self.step, self.samples_seen = state["step"], state["samples_seen"]

    # ---------------------------------------------------------------------------------------------------------
    # training
    def train_step(self, batches) -> torch.Tensor:
        """One optimisation step over `gradient_accumulation_steps` micro-batches; returns this process's loss."""
        config, accelerator = self.config, self.accelerator
        rows = (accelerator.process_index * config.batch_size, accelerator.num_processes * config.batch_size)
        total = torch.zeros((), device=accelerator.device)
        for micro in range(config.gradient_accumulation_steps):
            batch = next(batches)
            # the draws of a micro-step are made for the global batch (same on every process), this process's
            # rows kept: the split across processes does not change what a sample gets
            generator = step_generator(config.seed, self.step * config.gradient_accumulation_steps + micro, 0, 1)
            inputs = {"vae_latents": batch} if config.latents_dir is not None else {"videos": batch}
            with accelerator.accumulate(self.model), accelerator.autocast():
                loss = self.model(**inputs, generator=generator, draw_rows=rows).loss
                accelerator.backward(loss)
                if accelerator.sync_gradients and config.max_grad_norm:
                    accelerator.clip_grad_norm_(self.model.parameters(), config.max_grad_norm)
                for group in self.optimizer.param_groups:
                    group["lr"] = config.learning_rate_at(self.step)
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
            total += loss.detach().float()
        self.ema.update(self.unwrapped, self.step)
        self.step += 1
        self.samples_seen += self.samples_per_step
        return total / config.gradient_accumulation_steps

    def train(self, resume: bool = False, stop_after: int | None = None) -> VideoFlexTokModel:
        """Train to `max_steps` (or stop early after `stop_after` steps of this session, saving a checkpoint:
        for time-boxed jobs; a later `resume=True` run continues exactly)."""
        config, accelerator = self.config, self.accelerator
        if accelerator.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
        accelerator.wait_for_everyone()
        if resume and (checkpoint := self.latest_checkpoint()) is not None:
            self.load_checkpoint(checkpoint)
            logger.info("resumed from %s at step %d", checkpoint, self.step)
        last_step = config.max_steps if stop_after is None else min(config.max_steps, self.step + stop_after)
        if self.step >= last_step:
            return self.unwrapped
        if accelerator.log_with:
            accelerator.init_trackers("videoflextok", config={k: v for k, v in self.config.to_dict().items()
                                                             if isinstance(v, (int, float, str, bool))})
        progress = tqdm(total=config.max_steps, initial=self.step, disable=not accelerator.is_main_process,
                        desc="training")
        batches = iter(self.dataloader(last_step - self.step))
        running, count, start = torch.zeros((), device=accelerator.device), 0, time.time()
        while self.step < last_step:
            running += self.train_step(batches)
            count += 1
            progress.update(1)
            if self.step % config.log_every == 0 or self.step == config.max_steps:
                # the mean over every process's clips, not one process's
                loss = accelerator.reduce(running / count, reduction="mean").item()
                record = {"step": self.step, "loss": loss, "lr": config.learning_rate_at(self.step - 1),
                          "elapsed_s": round(time.time() - start, 1)}
                if config.validate_every and self.step % config.validate_every == 0:
                    record |= self.validate()
                progress.set_postfix(loss=f"{loss:.4f}")
                self._log(record)
                running, count = torch.zeros_like(running), 0
            elif config.validate_every and self.step % config.validate_every == 0:
                self._log({"step": self.step} | self.validate())
            if self.step % config.save_every == 0 or self.step == last_step:
                self.save_checkpoint()
        progress.close()
        if accelerator.log_with:
            accelerator.end_training()
        return self.unwrapped

    def _log(self, record: dict) -> None:
        if self.accelerator.is_main_process:
            with open(self.log_path, "a") as handle:
                handle.write(json.dumps(record) + "\n")
        if self.accelerator.log_with:
            self.accelerator.log({k: v for k, v in record.items() if k != "step"}, step=record["step"])

    # ---------------------------------------------------------------------------------------------------------
    # validation
    @property
    def validation_clips(self) -> torch.Tensor:
        """The first chunk of every validation video at the first training rate, center-cropped: `[N, 3, T, H, W]`."""
        if self._validation_clips is None:
            from ..data import decode_clip, load_video_dataset
            from .data import decode_sizes

            model_config = self.unwrapped.config
            height, width = model_config.frame_size
            (size,) = decode_sizes(model_config.image_size, None, random_crop=False)
            files = [str(path) for path in expand_video_paths(self.config.validation_videos)]
            rows = load_video_dataset(files, clip_frames=model_config.chunk_size, fps=self.config.fps[0])
            firsts = [row for row in rows if row["clip_index"] == 0]
            if not firsts:
                raise ValueError(f"no validation video has {model_config.chunk_size} frames at {self.config.fps[0]} "
                                 "fps.")
            self._validation_clips = torch.stack([
                augment_clip(decode_clip(row, size), (height, width), torch.Generator(),
                             random_crop=False, horizontal_flip=False, channel_shuffle=False)
                for row in firsts
            ])
        return self._validation_clips

    def validate(self) -> dict[str, float]:
        """Reconstruction PSNR (dB) of the held-out clips with k tokens per step, for each configured k, with the
        current weights (fixed seed, no guidance). Computed on the main process; {} on the others."""
        from accelerate.utils import DistributedType

        from ..evaluation import reconstruct

        accelerator = self.accelerator
        if accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED):
            raise ValueError("validate_every needs the whole model on one process; it is not supported with FSDP / "
                             "DeepSpeed: set validate_every: 0 and evaluate an exported checkpoint instead.")
        if not accelerator.is_main_process:
            return {}
        model = self.unwrapped
        num_registers = model.config.num_registers
        ks = self.config.validation_num_tokens or [2**i for i in range(num_registers.bit_length())
                                                   if 2**i <= num_registers]
        model.eval()
        try:
            result = reconstruct(model, self.validation_clips, num_tokens=ks,
                                 num_inference_steps=self.config.validation_inference_steps, guidance_scale=1.0)
        finally:
            model.train()
        return {f"val_psnr_k{k}": round(result.psnr[k], 4) for k in ks}

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
