"""Video datasets in, token datasets out.

* `load_video_dataset(source)` lists fixed-length clips (sliding windows of `clip_frames` frames at the target fps)
  of a local video folder, a Hub dataset / `datasets.Dataset` with a `Video` column, or a list of files. Clips are
  descriptors (where to read, which frames); they are decoded lazily, so large datasets need not fit in memory.
* `tokenize_dataset(clips, model, output_dir)` tokenizes them into parquet shards written atomically as it goes.
  A re-run skips finished shards, so an interrupted job never loses or duplicates a clip; shard s belongs to
  process s mod P, so several processes (`accelerate launch`, or explicit `process_index` / `num_processes`)
  produce exactly the single-process result.
* `push_token_dataset` / `load_token_dataset` move the result to and from the Hub (or a folder).
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from tqdm.auto import tqdm

from ..utils import atomic_write_file
from .video_io import VideoDecodeError, decode_frames, preprocess_frames, probe_video

logger = logging.getLogger(__name__)

MANIFEST = "tokenizer.json"
CLIP_COLUMNS = ("video_id", "source_path", "source_bytes", "clip_index", "clip_start", "frame_indices", "fps")


# ------------------------------------------------------------------------------------------------------------------
# clips


def _video_rows(source, video_column: str, split: str) -> tuple[list[dict], dict]:
    """(rows with `video_id`, `path` / `bytes` and label columns, the features of the label columns)."""
    if isinstance(source, (list, tuple)):
        rows = []
        for item in source:
            path = Path(item)
            if not path.is_file():
                raise FileNotFoundError(f"{path}: no such video file.")
            rows.append({"video_id": str(path), "path": str(path), "bytes": None})
        return rows, {}
    if isinstance(source, (str, os.PathLike)) and Path(source).is_dir():
        dataset = datasets.load_dataset("videofolder", data_dir=str(source), split=split)
        base = Path(source)
    elif isinstance(source, (datasets.Dataset, datasets.DatasetDict)):
        dataset = source[split] if isinstance(source, datasets.DatasetDict) else source
        base = None
    elif isinstance(source, str):
        dataset = datasets.load_dataset(source, split=split)
        base = None
    else:
        raise TypeError(f"source must be a folder, a Hub dataset id, a datasets.Dataset or a list of files, got {source!r}.")
    if video_column not in dataset.column_names:
        raise ValueError(f"the dataset has no {video_column!r} column (columns: {dataset.column_names}).")
    name = getattr(dataset.info, "dataset_name", None) or (str(source) if isinstance(source, str) else "dataset")
    dataset = dataset.cast_column(video_column, datasets.Video(decode=False))
    labels = {c: dataset.features[c] for c in dataset.column_names if c != video_column}
    rows = []
    for index, row in enumerate(dataset):
        video = row[video_column]
        path = video.get("path")
        if base is not None and path:
            video_id = str(Path(path).relative_to(base)) if Path(path).is_relative_to(base) else path
        else:
            video_id = f"{name}/{index}"
        entry = {"video_id": video_id, "path": path if not video.get("bytes") else None, "bytes": video.get("bytes")}
        entry.update({label: row[label] for label in labels})
        rows.append(entry)
    return rows, labels


def load_video_dataset(
    source,
    clip_frames: int = 17,
    stride: int | None = None,
    fps: float = 8.0,
    video_column: str = "video",
    split: str = "train",
    skip_errors: bool = False,
) -> datasets.Dataset:
    """Fixed-length clips of a video collection as a `datasets.Dataset` of descriptors.

    Args:
        source: a folder (`videofolder` layout: labels from subfolders, or any columns from a metadata.csv/jsonl
            file, e.g. captions; as in `datasets`, a metadata file replaces the subfolder labels), a Hub
            dataset id or `datasets.Dataset` with a `Video` column, or a list of video files.
        clip_frames: frames per clip at `fps` (1 + 16K for VideoFlexTok). stride: frames between clip starts
            (default `clip_frames`: disjoint clips). Each video is resampled uniformly to `fps` first.
        skip_errors: skip unreadable videos (logged and listed in the `skipped` info) instead of raising.

    Columns: `video_id`, `source_path` / `source_bytes`, `clip_index`, `clip_start` (seconds), `frame_indices`
    (source frames of the clip), `fps`, plus the dataset's label / caption columns.
    """
    if clip_frames < 1 or (stride is not None and stride < 1):
        raise ValueError(f"clip_frames and stride must be positive, got {clip_frames} and {stride}.")
    stride = stride or clip_frames
    rows, labels = _video_rows(source, video_column, split)
    clips: dict[str, list] = {column: [] for column in CLIP_COLUMNS + tuple(labels)}
    features = datasets.Features({
        "video_id": datasets.Value("string"), "source_path": datasets.Value("string"),
        "source_bytes": datasets.Value("binary"), "clip_index": datasets.Value("int32"),
        "clip_start": datasets.Value("float32"), "frame_indices": datasets.List(datasets.Value("int64")),
        "fps": datasets.Value("float32"), **labels,
    })
    skipped = []
    for row in rows:
        try:
            total, source_fps = probe_video(row["bytes"] or row["path"])
        except VideoDecodeError as error:
            if not skip_errors:
                raise
            logger.warning("skipping %s: %s", row["video_id"], error)
            skipped.append({"video_id": row["video_id"], "error": str(error)})
            continue
        count = int(total / source_fps * fps)
        # uniform resampling of the whole video to `fps`, as the official reader does
        indices = np.linspace(0, total - 1, count).astype(np.int64) if count > 0 else np.zeros(0, np.int64)
        for clip_index, start in enumerate(range(0, count - clip_frames + 1, stride)):
            clips["video_id"].append(row["video_id"])
            clips["source_path"].append(row["path"])
            clips["source_bytes"].append(row["bytes"])
            clips["clip_index"].append(clip_index)
            clips["clip_start"].append(start / fps)
            clips["frame_indices"].append(indices[start : start + clip_frames].tolist())
            clips["fps"].append(float(fps))
            for label in labels:
                clips[label].append(row[label])
    dataset = datasets.Dataset.from_dict(clips, features=features)
    dataset.info.description = json.dumps({"clip_frames": clip_frames, "stride": stride, "fps": fps, "skipped": skipped})
    return dataset


def decode_clip(clip: dict[str, Any], size: int) -> torch.Tensor:
    """A clip descriptor -> `[3, clip_frames, size, size]` float32 in [-1, 1] (official preprocessing)."""
    source = clip.get("source_bytes") or clip["source_path"]
    indices = torch.tensor(clip["frame_indices"], dtype=torch.long)
    frames, _ = decode_frames(source, stop=int(indices.max()) + 1)
    if int(indices.max()) >= len(frames):
        raise VideoDecodeError(
            f"{clip['video_id']}: the video has only {len(frames)} decodable frames, clip {clip['clip_index']} needs "
            f"{int(indices.max()) + 1} (truncated file?)."
        )
    return preprocess_frames(frames[indices], size)


# ------------------------------------------------------------------------------------------------------------------
# tokenization


def _features(labels: dict[str, datasets.features.FeatureType], id_type: str) -> datasets.Features:
    features = {
        "video_id": datasets.Value("string"),
        "clip_index": datasets.Value("int32"),
        "clip_start": datasets.Value("float32"),
        "fps": datasets.Value("float32"),
        "num_frames": datasets.Value("int32"),
        "tokens_per_step": datasets.Value("int32"),
        "token_ids": datasets.List(datasets.List(datasets.Value(id_type))),
    }
    features.update(labels)
    return datasets.Features(features)


def _manifest(model, clips: datasets.Dataset, num_tokens: int, id_type: str, shard_size: int) -> dict:
    config = model.config
    info = json.loads(clips.info.description or "{}")
    return {
        "tokenizer": getattr(config, "_name_or_path", "") or "",
        "tokenizer_source_checkpoint": config.source_checkpoint,
        "tokenizer_revision": getattr(config, "_commit_hash", None),
        "image_size": config.image_size,
        "fps": info.get("fps", config.fps),
        "clip_frames": info.get("clip_frames"),
        "clip_stride": info.get("stride"),
        "tokens_per_step": num_tokens,
        "registers_per_step": config.num_registers,
        "codebook_size": config.codebook_size,
        "fsq_levels": list(config.fsq_levels),
        "token_dtype": id_type,
        "num_clips": len(clips),
        "shard_size": shard_size,
        "num_shards": max(1, math.ceil(len(clips) / shard_size)),
        "posterior": "mean",
    }


def shard_path(output_dir: str | os.PathLike, shard: int, num_shards: int) -> Path:
    return Path(output_dir) / "data" / f"train-{shard:05d}-of-{num_shards:05d}.parquet"


def _write_shard(rows: list[dict], features: datasets.Features, path: Path) -> None:
    """One parquet shard, written atomically (a shard with every clip skipped is still written, empty, so that
    a re-run knows it is done)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist([features.encode_example(row) for row in rows], schema=features.arrow_schema)
    with atomic_write_file(path) as handle:
        pq.write_table(table, handle)


def _process_layout(process_index: int | None, num_processes: int | None) -> tuple[int, int, torch.device | None]:
    if process_index is not None or num_processes is not None:
        if process_index is None or num_processes is None or not 0 <= process_index < num_processes:
            raise ValueError(f"invalid process_index={process_index} / num_processes={num_processes}.")
        return process_index, num_processes, None
    from accelerate import PartialState

    state = PartialState()
    return state.process_index, state.num_processes, state.device


def tokenize_dataset(
    clips: datasets.Dataset,
    model,
    output_dir: str | os.PathLike,
    num_tokens: int | None = None,
    batch_size: int = 8,
    shard_size: int = 256,
    process_index: int | None = None,
    num_processes: int | None = None,
    skip_errors: bool = False,
    progress: bool = True,
) -> datasets.Dataset | None:
    """Tokenize the clips of `load_video_dataset` into parquet shards under `output_dir/data/`.

    Returns the whole token dataset when every shard exists (else None: other processes are still working; load
    it later with `load_token_dataset`). Tokens come from the VAE posterior mean, so a re-run gives the same ids.
    Unreadable clips raise, or with `skip_errors=True` are left out and listed in `errors/shard-*.jsonl`.
    """
    config = model.config
    num_tokens = num_tokens or config.eval_registers
    if not 1 <= num_tokens <= config.eval_registers:
        raise ValueError(f"num_tokens must lie in 1..{config.eval_registers}, got {num_tokens}.")
    if len(clips) == 0:
        raise ValueError("the clip dataset is empty: no video was long enough for one clip.")
    missing = [c for c in ("video_id", "frame_indices", "clip_start", "fps") if c not in clips.column_names]
    if missing:
        raise ValueError(f"clips lack the columns {missing}; build them with load_video_dataset.")
    id_type = "uint16" if config.codebook_size <= 2**16 else "int32"
    output_dir = Path(output_dir)
    manifest = _manifest(model, clips, num_tokens, id_type, shard_size)
    manifest_path = output_dir / MANIFEST
    if manifest_path.exists():
        previous = json.loads(manifest_path.read_text())
        if previous != manifest:
            changed = sorted(k for k in manifest if previous.get(k) != manifest[k])
            raise ValueError(
                f"{output_dir} holds a tokenization with different settings ({changed}); use another output_dir "
                "or delete it to start over."
            )
    else:
        with atomic_write_file(manifest_path, "w") as handle:
            handle.write(json.dumps(manifest, indent=2))
    rank, world, device = _process_layout(process_index, num_processes)
    device = device or next(model.parameters()).device
    labels = {name: clips.features[name] for name in clips.column_names if name not in CLIP_COLUMNS}
    features = _features(labels, id_type)
    num_shards = manifest["num_shards"]
    mine = [s for s in range(num_shards) if s % world == rank and not shard_path(output_dir, s, num_shards).exists()]
    bar = tqdm(total=len(mine), desc=f"tokenizing (process {rank}/{world})", disable=not progress)
    for shard in mine:
        rows = clips.select(range(shard * shard_size, min(len(clips), (shard + 1) * shard_size)))
        records, errors = _tokenize_rows(rows, model, device, num_tokens, batch_size, labels, skip_errors)
        if errors:
            error_path = output_dir / "errors" / f"shard-{shard:05d}.jsonl"
            with atomic_write_file(error_path, "w") as handle:
                handle.write("".join(json.dumps(e) + "\n" for e in errors))
            logger.warning("shard %d: skipped %d unreadable clip(s), listed in %s", shard, len(errors), error_path)
        _write_shard(records, features, shard_path(output_dir, shard, num_shards))
        bar.update(1)
    bar.close()
    if all(shard_path(output_dir, s, num_shards).exists() for s in range(num_shards)):
        return load_token_dataset(output_dir)
    return None


@torch.inference_mode()
def _tokenize_rows(rows, model, device, num_tokens, batch_size, labels, skip_errors):
    records, errors, batch = [], [], []

    def flush():
        if not batch:
            return
        videos = torch.stack([video for _, video in batch]).to(device=device, dtype=model.dtype)
        token_ids = model.encode(videos).token_ids[..., :num_tokens].cpu()
        for (row, video), ids in zip(batch, token_ids):
            record = {
                "video_id": row["video_id"], "clip_index": row["clip_index"], "clip_start": row["clip_start"],
                "fps": row["fps"], "num_frames": video.shape[1], "tokens_per_step": num_tokens,
                "token_ids": ids.tolist(),
            }
            record.update({name: row[name] for name in labels})
            records.append(record)
        batch.clear()

    for row in rows:
        try:
            video = decode_clip(row, model.config.image_size)
        except VideoDecodeError as error:
            if not skip_errors:
                raise
            errors.append({"video_id": row["video_id"], "clip_index": row["clip_index"], "error": str(error)})
            continue
        batch.append((row, video))
        if len(batch) == batch_size:
            flush()
    flush()
    return records, errors


# ------------------------------------------------------------------------------------------------------------------
# Hub


def load_token_dataset(repo_or_dir: str | os.PathLike, revision: str | None = None, **hub_kwargs) -> datasets.Dataset:
    """A token dataset folder or Hub dataset repo -> `datasets.Dataset` (torch format: token_ids `[t, k]`)."""
    folder = Path(repo_or_dir)
    if not folder.is_dir():
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(str(repo_or_dir), repo_type="dataset", revision=revision, **hub_kwargs))
    files = sorted(str(p) for p in (folder / "data").glob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"{folder} holds no data/*.parquet shards: not a token dataset written by tokenize_dataset.")
    files = _non_empty(files)
    if not files:
        raise ValueError(f"{folder}: every shard is empty (all clips were skipped; see its errors/ folder).")
    manifest = folder / MANIFEST
    dataset = datasets.Dataset.from_parquet(files)
    if manifest.exists():
        dataset.info.description = manifest.read_text()
    return dataset.with_format("torch")


def _non_empty(files: list[str]) -> list[str]:
    """Shards whose clips were all skipped are kept (they mark the shard as done) but hold no rows."""
    import pyarrow.parquet as pq

    return [f for f in files if pq.ParquetFile(f).metadata.num_rows > 0]


def write_dataset_card(output_dir: str | os.PathLike, repo_id: str, license: str = "other") -> Path:
    """README.md for a token dataset, with the tokenizer, fps, clip length and token layout from its manifest."""
    output_dir = Path(output_dir)
    manifest = json.loads((output_dir / MANIFEST).read_text())
    import pyarrow.parquet as pq

    num_rows = sum(pq.ParquetFile(p).metadata.num_rows for p in (output_dir / "data").glob("*.parquet"))
    sizes = "n<1K" if num_rows < 1000 else "1K<n<10K" if num_rows < 10_000 else "10K<n<100K" if num_rows < 100_000 else "n>100K"
    steps = "?" if not manifest.get("clip_frames") else 1 + (manifest["clip_frames"] - 1) // 4
    card = f"""---
license: {license}
tags:
- video-tokens
- videoflextok
size_categories:
- {sizes}
configs:
- config_name: default
  data_files: data/*.parquet
---

# {repo_id.split("/")[-1]}

VideoFlexTok token ids of {num_rows} video clips, made with `videoflextok_hf.data.tokenize_dataset`.

| | |
|---|---|
| tokenizer | {manifest["tokenizer"] or "n/a"} (source checkpoint: {manifest.get("tokenizer_source_checkpoint") or "n/a"}) |
| frames per clip | {manifest.get("clip_frames")} at {manifest["fps"]:g} fps, {manifest["image_size"]}x{manifest["image_size"]} pixels |
| token layout | `token_ids` is `[t, k]`: t = {steps} time steps, k = {manifest["tokens_per_step"]} tokens per step (of {manifest["registers_per_step"]}), coarse to fine |
| vocabulary | {manifest["codebook_size"]} ids (FSQ levels {manifest["fsq_levels"]}), stored as {manifest["token_dtype"]} |
| encoding | deterministic (VAE posterior mean) |

```python
from videoflextok_hf.data import load_token_dataset
tokens = load_token_dataset("{repo_id}")      # token_ids as torch tensors [t, k]
```

Columns: `video_id`, `clip_index`, `clip_start` (seconds), `fps`, `num_frames`, `tokens_per_step`, `token_ids`
and the source dataset's labels / captions.
"""
    path = output_dir / "README.md"
    with atomic_write_file(path, "w") as handle:
        handle.write(card)
    return path


def push_token_dataset(
    output_dir: str | os.PathLike,
    repo_id: str,
    private: bool = False,
    token: str | None = None,
    revision: str | None = None,
    license: str = "other",
) -> str:
    """Upload a token dataset folder (shards, manifest and a generated card) to a Hub dataset repo, one commit."""
    from huggingface_hub import HfApi

    output_dir = Path(output_dir)
    shards = _non_empty(sorted(str(p) for p in (output_dir / "data").glob("*.parquet")))
    if not shards:
        raise FileNotFoundError(f"{output_dir} holds no non-empty data/*.parquet shards to push.")
    write_dataset_card(output_dir, repo_id, license=license)
    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    if revision is not None:
        api.create_branch(repo_id, branch=revision, repo_type="dataset", exist_ok=True)
    info = api.upload_folder(
        folder_path=str(output_dir), repo_id=repo_id, repo_type="dataset", revision=revision,
        allow_patterns=[f"data/{Path(p).name}" for p in shards] + [MANIFEST, "README.md"],
        commit_message="Upload VideoFlexTok token dataset",
    )
    return getattr(info, "commit_url", str(info))


def detokenize_rows(rows, model, num_tokens: int | None = None, **pipeline_kwargs) -> torch.Tensor:
    """Rows of a token dataset (a `Dataset` slice or a list of rows with equal t) -> videos `[B, T, 3, H, W]`."""
    token_ids = rows["token_ids"] if isinstance(rows, dict) else [row["token_ids"] for row in rows]
    token_ids = torch.stack([torch.as_tensor(t) for t in token_ids]).long()
    return model.detokenize(token_ids, num_tokens=num_tokens, **pipeline_kwargs).frames

