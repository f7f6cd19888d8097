"""Precomputed VAE latents: one pass runs the frozen VAE over training clips, training reads the latents back.

The VAE is frozen, so running it on every step only costs time. `precompute_latents` draws global samples
0 .. N-1 of the run's `StreamingClipDataset` (the same clips, scales, crops and flips training would draw), encodes
them and writes the posterior mean and std as safetensors shards; `LatentDataset` serves global sample i as the
posterior of a stored clip drawn from (seed, i), sampled (mean + std * eps) with that sample's generator, as the
objective samples it. Shards are written atomically and a rerun computes only the missing ones (resumable); with
several processes (`accelerate launch`) shard S is written by process S % num_processes.

The augmentation is fixed at precompute time: a run on latents sees N distinct clips instead of fresh random crops
every step, the usual trade of precomputed features (raise N with `num_clips` for more diversity).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm.auto import tqdm

from .data import sample_seed

logger = logging.getLogger(__name__)

MANIFEST = "latents.json"


def _shard_path(folder: Path, shard: int) -> Path:
    return folder / f"latents-{shard:05d}.safetensors"


def precompute_latents(config, output_dir: str | os.PathLike | None = None, num_clips: int | None = None,
                       shard_size: int = 256, batch_size: int = 16, device: str | torch.device | None = None,
                       progress: bool = True) -> Path:
    """Write the VAE latents of `num_clips` training clips of `config` (a `TrainingConfig`; default: as many as
    there are clip starts) to `output_dir` (default `config.latents_dir`). Returns the folder."""
    from accelerate import PartialState

    from .data import StreamingClipDataset
    from .trainer import build_model

    output_dir = Path(output_dir or config.latents_dir or "")
    if not str(output_dir) or output_dir == Path(""):
        raise ValueError("precompute_latents needs an output folder (output_dir= or the config's latents_dir).")
    if batch_size < 1 or shard_size < 1:
        raise ValueError(f"batch_size and shard_size must be positive, got {batch_size} and {shard_size}.")
    model = build_model(config)
    model_config = model.config
    dataset = StreamingClipDataset(
        config.videos, clip_frames=model_config.chunk_size, image_size=model_config.image_size, fps=config.fps,
        decode_size=config.decode_size, random_crop=config.random_crop, horizontal_flip=config.horizontal_flip,
        channel_shuffle=config.channel_shuffle, seed=config.seed, dataset=config.video_dataset,
    )
    num_clips = dataset.num_clips if num_clips is None else int(num_clips)
    if num_clips < 1:
        raise ValueError(f"num_clips must be positive, got {num_clips}.")
    settings = {
        "num_clips": num_clips, "shard_size": shard_size, "seed": config.seed, "videos": list(config.videos),
        "video_dataset": config.video_dataset, "fps": list(config.fps), "decode_size": config.decode_size,
        "random_crop": config.random_crop, "horizontal_flip": config.horizontal_flip,
        "channel_shuffle": config.channel_shuffle, "model": model_config.to_diff_dict() if not config.init_from
        else {"init_from": config.init_from},
    }
    state = PartialState()
    manifest = output_dir / MANIFEST
    if manifest.exists():
        previous = json.loads(manifest.read_text())
        changed = sorted(k for k in settings if previous.get(k) != json.loads(json.dumps(settings[k])))
        if changed:
            raise ValueError(f"{output_dir} holds latents computed with other settings ({', '.join(changed)}); use "
                             "another folder, or delete it to start over.")
    elif state.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        tmp = manifest.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(settings, indent=2))
        tmp.replace(manifest)
    state.wait_for_everyone()
    device = torch.device(device) if device is not None else state.device
    model.to(device).eval()
    num_shards = -(-num_clips // shard_size)
    todo = [s for s in range(num_shards) if s % state.num_processes == state.process_index
            and not _shard_path(output_dir, s).exists()]
    bar = tqdm(total=sum(min(num_clips, (s + 1) * shard_size) - s * shard_size for s in todo), unit="clip",
               desc="precomputing latents", disable=not progress)
    for shard in todo:
        indices = list(range(shard * shard_size, min(num_clips, (shard + 1) * shard_size)))
        means, stds = [], []
        for first in range(0, len(indices), batch_size):
            videos = torch.stack([dataset[i] for i in indices[first : first + batch_size]]).to(device)
            with torch.inference_mode():
                posterior = model.vae.encode(videos.to(model.dtype)).latent_dist
            means.append(posterior.mean.float().cpu())
            stds.append(posterior.std.float().cpu())
            bar.update(len(videos))
        target = _shard_path(output_dir, shard)
        tmp = target.with_suffix(".tmp")
        save_file({"mean": torch.cat(means).contiguous(), "std": torch.cat(stds).contiguous()}, str(tmp))
        tmp.replace(target)  # atomic: a killed run leaves whole shards only
    bar.close()
    state.wait_for_everyone()
    return output_dir


class LatentDataset(torch.utils.data.Dataset):
    """Global sample i -> VAE latents `[C, t, h, w]` of a precomputed clip drawn from (seed, i), the posterior
    sampled with that sample's generator. Shards are memory-mapped (opened lazily, per DataLoader worker)."""

    def __init__(self, folder: str | os.PathLike, seed: int = 0):
        self.folder = Path(folder)
        manifest = self.folder / MANIFEST
        if not manifest.is_file():
            raise FileNotFoundError(f"{self.folder} holds no precomputed latents ({MANIFEST} missing); run "
                                    "`videoflextok-train --config ... --precompute-latents` first.")
        settings = json.loads(manifest.read_text())
        self.num_clips, self.shard_size, self.seed = settings["num_clips"], settings["shard_size"], seed
        missing = [s for s in range(-(-self.num_clips // self.shard_size)) if not _shard_path(self.folder, s).exists()]
        if missing:
            raise ValueError(f"{self.folder}: latent shards {missing[:5]} are missing (the precompute pass did not "
                             "finish); rerun it, it continues where it stopped.")
        self._open: dict[int, object] = {}

    def _row(self, clip: int) -> tuple[torch.Tensor, torch.Tensor]:
        shard, row = divmod(clip, self.shard_size)
        if shard not in self._open:
            self._open[shard] = safe_open(str(_shard_path(self.folder, shard)), framework="pt")
        handle = self._open[shard]
        return handle.get_slice("mean")[row], handle.get_slice("std")[row]

    def __getitem__(self, index: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(sample_seed(self.seed, int(index)))
        mean, std = self._row(int(torch.randint(self.num_clips, (1,), generator=generator)))
        return mean + std * torch.randn(mean.shape, generator=generator)
