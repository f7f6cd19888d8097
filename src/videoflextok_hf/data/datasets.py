"""Token datasets: tokenize clips into resumable parquet shards, push them to the Hub, load them back, inspect them.

Layout of a token dataset folder (`output_dir`):

    tokenizer.json                      settings (tokenizer, fps, frames per clip, k, ...) and, once complete, totals
    README.md                           dataset card (written when every shard is done, and by `push_token_dataset`)
    data/train-SSSSS-of-NNNNN.parquet   shard S: clips [S * shard_size, (S + 1) * shard_size) of the clip dataset
    shards/train-SSSSS-of-NNNNN.json    per-shard manifest, written after its parquet file: the shard is done
    errors/shard-SSSSS.jsonl, errors.jsonl   clips left out with skip_errors=True (per shard, and merged)

Every file is written to a temporary name and renamed, so a killed run leaves whole shards or none; a re-run skips
the shards whose manifest exists, and since a shard always holds the same clips (in the same batches), no clip is
lost or written twice. Shard S belongs to process `S % num_processes`, so processes write disjoint shards whose
union is the single-process result.
"""

from __future__ import annotations

import contextlib
import hashlib
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

from .clips import CLIP_COLUMNS, decode_clip, iter_decoded_clips, load_video_dataset  # noqa: F401 (re-exported)
from ..utils import atomic_write_file
from .video_io import VideoDecodeError

logger = logging.getLogger(__name__)

MANIFEST = "tokenizer.json"
ERRORS = "errors.jsonl"
CARD = "README.md"
FORMAT = "videoflextok-token-dataset"
REQUIRED_CLIP_COLUMNS = ("video_id", "source_path", "clip_index", "clip_start", "frame_indices", "fps")


def _atomic_file(target: Path, mode: str = "wb"):
    return atomic_write_file(target, mode)


def _read_manifest(path: Path) -> dict:
    """A token dataset's `tokenizer.json`, or an error naming the file (it is written atomically, so a damaged one
    was edited or copied badly)."""
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}): the token dataset's manifest is damaged; "
                         "delete the folder and tokenize again.") from None
    if not isinstance(manifest, dict):
        raise ValueError(f"{path} holds a JSON {type(manifest).__name__}, not the token dataset's manifest (an object).")
    return manifest


def _write_json(path: Path, data: Any) -> None:
    with _atomic_file(path, "w") as handle:
        handle.write(json.dumps(data, indent=2) + "\n")


def _remove_stale_temporaries(target: Path) -> None:
    """Temporary files of `target` left by a killed run (only the owner of `target` writes it)."""
    for stale in target.parent.glob(f".tmp-{target.name}-*"):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()


def shard_name(shard: int, num_shards: int) -> str:
    return f"train-{shard:05d}-of-{num_shards:05d}"


def shard_path(output_dir: str | os.PathLike, shard: int, num_shards: int) -> Path:
    return Path(output_dir) / "data" / f"{shard_name(shard, num_shards)}.parquet"


def _shard_manifest_path(output_dir: Path, shard: int, num_shards: int) -> Path:
    return output_dir / "shards" / f"{shard_name(shard, num_shards)}.json"


def _shard_entry(output_dir: Path, shard: int, num_shards: int) -> dict | None:
    """The manifest of a finished shard, or None (not started, killed midway, or its file is gone)."""
    path = _shard_manifest_path(output_dir, shard, num_shards)
    try:
        entry = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if entry.get("file"):
        data = output_dir / entry["file"]
        if not data.exists() or data.stat().st_size != entry.get("bytes"):
            return None
    return entry


# ----------------------------------------------------------------------------------------------------------------
# tokenization


def _token_features(labels: dict, id_type: str) -> datasets.Features:
    return datasets.Features({
        "video_id": datasets.Value("string"),
        "clip_index": datasets.Value("int32"),
        "clip_start": datasets.Value("float32"),
        "fps": datasets.Value("float32"),
        "num_frames": datasets.Value("int32"),
        "tokens_per_step": datasets.Value("int32"),
        "token_ids": datasets.List(datasets.List(datasets.Value(id_type))),
        **labels,
    })


def _write_shard(rows: list[dict], features: datasets.Features, path: Path) -> None:
    """One parquet shard (with the `datasets` features in its schema), written atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist([features.encode_example(row) for row in rows], schema=features.arrow_schema)
    with _atomic_file(path) as handle:
        pq.write_table(table, handle)


def _clip_lengths_and_fingerprint(clips: datasets.Dataset) -> tuple[set[int], str]:
    """The clip lengths present, and a hash of which clips (ids, indices, frames) are to be tokenized, in order."""
    import pyarrow.compute as pc

    digest = hashlib.sha256()
    lengths: set[int] = set()
    table_view = clips.with_format("arrow").select_columns(["video_id", "clip_index", "frame_indices"])
    for batch in table_view.iter(batch_size=4096):
        lengths.update(pc.unique(pc.list_value_length(batch["frame_indices"])).to_pylist())
        digest.update(json.dumps([batch[c].to_pylist() for c in ("video_id", "clip_index", "frame_indices")]).encode())
    return lengths, digest.hexdigest()


def _settings(model, clips, clip_frames, fingerprint, num_tokens, id_type, shard_size, resize_mode) -> dict:
    config = model.config
    info = {}
    with contextlib.suppress(json.JSONDecodeError, TypeError):
        info = json.loads(clips.info.description or "{}")
    import pyarrow.compute as pc

    fps = sorted(float(f) for f in pc.unique(clips.with_format("arrow").select_columns(["fps"])["fps"]).to_pylist())
    return {
        "format": FORMAT,
        "tokenizer": getattr(config, "_name_or_path", "") or "",
        "tokenizer_revision": getattr(config, "_commit_hash", None),
        "tokenizer_source_checkpoint": getattr(config, "source_checkpoint", None),
        "image_size": config.image_size,
        "fps": fps[0] if len(fps) == 1 else fps,
        "clip_frames": clip_frames,
        "clip_stride": info.get("stride") if isinstance(info, dict) else None,
        "time_steps": model.config.chunk_geometry.num_token_steps_for_frames(clip_frames),
        "tokens_per_step": num_tokens,
        "registers_per_step": config.num_registers,
        "codebook_size": config.codebook_size,
        "fsq_levels": list(config.fsq_levels),
        "token_dtype": id_type,
        "encoding": "posterior mean (sample_posterior=False), torch.inference_mode, model.eval()",
        "num_clips": len(clips),
        # recorded only when not the default, so that the manifests of earlier tokenizations still match
        **({"resize_mode": resize_mode} if resize_mode != "official" else {}),
        "clips_sha256": fingerprint,
        "shard_size": shard_size,
        "num_shards": max(1, math.ceil(len(clips) / shard_size)),
    }


def _process_layout(process_index, num_processes):
    """(rank, world size, accelerate state or None)."""
    if process_index is not None or num_processes is not None:
        if process_index is None or num_processes is None or not 0 <= process_index < num_processes:
            raise ValueError(f"give both process_index and num_processes with 0 <= process_index < num_processes, "
                             f"got process_index={process_index}, num_processes={num_processes}.")
        return int(process_index), int(num_processes), None
    from accelerate import PartialState

    state = PartialState()
    return state.process_index, state.num_processes, state


def tokenize_dataset(
    dataset: datasets.Dataset,
    model,
    output_dir: str | os.PathLike,
    num_tokens: int | None = None,
    batch_size: int = 8,
    shard_size: int = 256,
    process_index: int | None = None,
    num_processes: int | None = None,
    skip_errors: bool = False,
    progress: bool = True,
    num_workers: int = 0,
    resize_mode: str = "official",
) -> datasets.Dataset:
    """Tokenize the clips of `load_video_dataset` into parquet shards under `output_dir` (resumable, multi-process).

    Tokens are the deterministic encoding: the VAE posterior **mean** (`sample_posterior=False`) under
    `torch.inference_mode()` with the model in eval mode, so re-runs and other processes give the same ids.

    Args:
        dataset: clip descriptors (`load_video_dataset`); every clip must have the same, valid, number of frames.
        model: a `VideoFlexTokModel` (on any device / dtype; inputs follow its first parameter).
        num_tokens: keep the first k tokens of every time step (coarse to fine); default all (N).
        batch_size: clips per `model.encode` call. shard_size: clips per parquet shard.
        process_index, num_processes: this process's share (shards `S % num_processes == process_index`); by
            default taken from `accelerate` (`accelerate launch`), i.e. one process unless launched distributed.
        skip_errors: leave out clips whose video cannot be decoded, with a warning and a line in `errors.jsonl`;
            by default the first such clip raises `VideoDecodeError`.
        progress: show a tqdm progress bar (clips).
        num_workers: background threads that decode the next videos while the model runs (0: decode inline).
        resize_mode: how frames reach the model's `config.frame_size` ("official" or "crop", see `read_video`).

    Returns:
        The token dataset (`load_token_dataset(output_dir)`: columns `video_id`, `clip_index`, `clip_start`, `fps`,
        `num_frames`, `tokens_per_step`, `token_ids` `[t, k]` (uint16 when the codebook fits, else int32) and the
        clips' labels / captions, torch format). With several explicit processes, a process that finishes before
        the others gets only the rows of its own shards; under `accelerate` every process waits for the others.
    """
    if not isinstance(dataset, datasets.Dataset):
        raise TypeError(
            f"dataset must be a datasets.Dataset of clips (load_video_dataset), got {type(dataset).__name__}."
        )
    missing = [c for c in REQUIRED_CLIP_COLUMNS if c not in dataset.column_names]
    if missing:
        raise ValueError(f"the dataset lacks the clip columns {missing}; build it with load_video_dataset().")
    if len(dataset) == 0:
        raise ValueError("the clip dataset is empty (no video was long enough for one clip?).")
    if batch_size < 1 or shard_size < 1:
        raise ValueError(f"batch_size and shard_size must be positive, got {batch_size} and {shard_size}.")
    config = model.config
    registers = getattr(config, "eval_registers", config.num_registers)
    num_tokens = registers if num_tokens is None else int(num_tokens)
    if not 1 <= num_tokens <= registers:
        raise ValueError(f"num_tokens must lie in 1..{registers}, got {num_tokens}.")
    lengths, fingerprint = _clip_lengths_and_fingerprint(dataset)
    if len(lengths) != 1:
        raise ValueError(f"all clips must have the same number of frames, found {sorted(lengths)}.")
    (clip_frames,) = lengths
    config.chunk_geometry.num_chunks_for_frames(clip_frames)  # raises a clear error for an invalid length
    id_type = "uint16" if config.codebook_size <= 2**16 else "int32"
    output_dir = Path(output_dir)
    settings = _settings(model, dataset, clip_frames, fingerprint, num_tokens, id_type, shard_size, resize_mode)
    manifest_path = output_dir / MANIFEST
    if manifest_path.exists():
        previous = _read_manifest(manifest_path)
        changed = sorted(k for k in settings if previous.get(k) != settings[k])
        if changed:
            raise ValueError(
                f"{output_dir} holds a tokenization with different settings ({', '.join(changed)}); use another "
                "output_dir, or delete it to start over."
            )
    else:
        _write_json(manifest_path, settings)
    rank, world, state = _process_layout(process_index, num_processes)
    num_shards = settings["num_shards"]
    mine = [s for s in range(num_shards) if s % world == rank]
    todo = [s for s in mine if _shard_entry(output_dir, s, num_shards) is None]
    labels = {name: dataset.features[name] for name in dataset.column_names if name not in CLIP_COLUMNS}
    features = _token_features(labels, id_type)
    clips = dataset.with_format(None)
    total = sum(min(len(clips), (s + 1) * shard_size) - s * shard_size for s in todo)
    bar = tqdm(total=total, desc=f"tokenizing (process {rank + 1}/{world})", unit="clip", disable=not progress)
    was_training = model.training
    model.eval()
    try:
        for shard in todo:
            rows = clips.select(range(shard * shard_size, min(len(clips), (shard + 1) * shard_size)))
            records, errors = _tokenize_rows(rows, model, num_tokens, settings["time_steps"], batch_size, labels,
                                             skip_errors, bar, num_workers, resize_mode)
            _finish_shard(output_dir, shard, num_shards, records, errors, features)
    finally:
        bar.close()
        model.train(was_training)
    if state is not None and world > 1:
        state.wait_for_everyone()
    if all(_shard_entry(output_dir, s, num_shards) is not None for s in range(num_shards)):
        _finalize(output_dir, settings, features)
        return load_token_dataset(output_dir)
    logger.info("process %d/%d finished its shards; others are still running", rank + 1, world)
    return _load_parquet(output_dir, [shard_path(output_dir, s, num_shards) for s in mine], settings, features)


def _finish_shard(output_dir: Path, shard: int, num_shards: int, records, errors, features) -> None:
    data = shard_path(output_dir, shard, num_shards)
    entry = {"shard": shard, "file": None, "bytes": None, "num_rows": len(records), "num_skipped": len(errors)}
    error_path = output_dir / "errors" / f"shard-{shard:05d}.jsonl"
    if errors:
        with _atomic_file(error_path, "w") as handle:
            handle.write("".join(json.dumps(e) + "\n" for e in errors))
        logger.warning("shard %d: left out %d clip(s) that could not be decoded (see %s)", shard, len(errors),
                       output_dir / ERRORS)
    else:
        error_path.unlink(missing_ok=True)
    if records:
        _remove_stale_temporaries(data)
        _write_shard(records, features, data)
        entry.update(file=data.relative_to(output_dir).as_posix(), bytes=data.stat().st_size)
    else:
        data.unlink(missing_ok=True)
    _write_json(_shard_manifest_path(output_dir, shard, num_shards), entry)


def _tokenize_rows(rows, model, num_tokens, time_steps, batch_size, labels, skip_errors, bar, num_workers=0,
                   resize_mode="official"):
    records, errors, batch = [], [], []
    parameter = next(model.parameters())

    def flush():
        if not batch:
            return
        videos = torch.stack([video for _, video in batch]).to(device=parameter.device, dtype=parameter.dtype)
        with torch.inference_mode():
            token_ids = model.encode(videos, sample_posterior=False).token_ids[..., :num_tokens].cpu()
        if token_ids.shape[1:] != (time_steps, num_tokens):
            raise RuntimeError(f"model.encode returned token ids of shape {tuple(token_ids.shape)}, expected "
                               f"[B, {time_steps}, {num_tokens}].")
        for (row, video), ids in zip(batch, token_ids.numpy()):
            record = {
                "video_id": row["video_id"], "clip_index": row["clip_index"], "clip_start": row["clip_start"],
                "fps": row["fps"], "num_frames": int(video.shape[1]), "tokens_per_step": num_tokens,
                "token_ids": ids.tolist(),
            }
            record.update({name: row[name] for name in labels})
            records.append(record)
        bar.update(len(batch))
        batch.clear()

    for row, video in iter_decoded_clips(rows, model.config.image_size, num_workers, prefetch=2 * batch_size,
                                         resize_mode=resize_mode):
        if isinstance(video, VideoDecodeError):
            if not skip_errors:
                raise video
            errors.append({"video_id": row["video_id"], "clip_index": row["clip_index"],
                           "source_path": row["source_path"], "error": str(video)})
            bar.update(1)
            continue
        batch.append((row, video))
        if len(batch) == batch_size:
            flush()
    flush()
    return records, errors


def _finalize(output_dir: Path, settings: dict, features: datasets.Features) -> dict:
    """Merge the error reports, record the totals in the manifest and write the dataset card."""
    num_shards = settings["num_shards"]
    entries = [_shard_entry(output_dir, s, num_shards) for s in range(num_shards)]
    lines = []
    for shard in range(num_shards):
        path = output_dir / "errors" / f"shard-{shard:05d}.jsonl"
        if path.exists():
            lines.extend(path.read_text().splitlines(keepends=True))
    if lines:
        with _atomic_file(output_dir / ERRORS, "w") as handle:
            handle.write("".join(lines))
        logger.warning("%d clip(s) could not be decoded and were left out; see %s", len(lines), output_dir / ERRORS)
    else:
        (output_dir / ERRORS).unlink(missing_ok=True)
    manifest = dict(settings)
    manifest.update(
        num_rows=sum(e["num_rows"] for e in entries),
        num_skipped=sum(e["num_skipped"] for e in entries),
        data_files=[e["file"] for e in entries if e["file"]],
        features=features.to_dict(),
    )
    _write_json(output_dir / MANIFEST, manifest)
    write_dataset_card(output_dir)
    return manifest


# ----------------------------------------------------------------------------------------------------------------
# loading


def _load_parquet(folder: Path, files: list[Path], manifest: dict | None,
                  features: datasets.Features | None = None) -> datasets.Dataset:
    files = [str(f) for f in files if Path(f).exists()]
    if files:
        dataset = datasets.Dataset.from_parquet(files)
    elif features is not None:  # every clip of these shards was left out (see errors.jsonl)
        dataset = datasets.Dataset.from_dict({name: [] for name in features}, features=features)
    else:
        raise FileNotFoundError(f"{folder} holds no data/*.parquet shards: not a token dataset written by "
                                "tokenize_dataset.")
    if manifest is not None:
        dataset.info.description = json.dumps(manifest)
    return dataset.with_format("torch")


def load_token_dataset(
    repo_or_dir: str | os.PathLike,
    revision: str | None = None,
    allow_incomplete: bool = False,
    **hub_kwargs,
) -> datasets.Dataset:
    """A token dataset folder, or a Hub dataset repo (through the Hub cache; works offline with `HF_HUB_OFFLINE=1`
    once cached), as a `datasets.Dataset` in torch format: `token_ids` are `[t, k]` int64 tensors.

    `dataset.info.description` holds the manifest (`tokenizer.json`) as JSON. A folder whose tokenization is not
    finished raises unless `allow_incomplete=True`. `hub_kwargs` go to `huggingface_hub.snapshot_download`
    (e.g. `cache_dir`, `token`, `local_files_only`).
    """
    folder = Path(repo_or_dir)
    if not folder.is_dir():
        text = str(repo_or_dir)
        if folder.exists() or isinstance(repo_or_dir, os.PathLike) or text.startswith(("/", ".", "~")) \
                or text.count("/") > 1:
            raise FileNotFoundError(f"{repo_or_dir}: no such token dataset folder (and not a Hub dataset id).")
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(
            repo_id=str(repo_or_dir), repo_type="dataset", revision=revision,
            allow_patterns=["data/*.parquet", MANIFEST, CARD], **hub_kwargs,
        ))
    manifest = _read_manifest(folder / MANIFEST) if (folder / MANIFEST).exists() else None
    files = sorted((folder / "data").glob("*.parquet"))
    if manifest is not None and "data_files" in manifest:
        found = {f.relative_to(folder).as_posix() for f in files}
        expected = set(manifest["data_files"])
        if found != expected:
            raise ValueError(
                f"{repo_or_dir}: the shards do not match {MANIFEST} (missing: {sorted(expected - found)}, "
                f"unexpected: {sorted(found - expected)}); the download or upload is incomplete or mixed."
            )
        files = [folder / name for name in manifest["data_files"]]
    elif manifest is not None and not allow_incomplete:
        done = sum(_shard_entry(folder, s, manifest["num_shards"]) is not None for s in range(manifest["num_shards"]))
        raise ValueError(
            f"{repo_or_dir}: the tokenization is not finished ({done} of {manifest['num_shards']} shards); re-run "
            "tokenize_dataset with the same arguments to finish it, or pass allow_incomplete=True."
        )
    features = None
    if manifest is not None and "features" in manifest:
        features = datasets.Features.from_dict(manifest["features"])
    return _load_parquet(folder, files, manifest, features)


# ----------------------------------------------------------------------------------------------------------------
# Hub


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "1M<n<10M" if n < 10_000_000 else "n>10M"


def _label_columns(manifest: dict) -> dict:
    features = datasets.Features.from_dict(manifest.get("features") or {})
    return {name: feature for name, feature in features.items() if name not in _token_features({}, "int32")}


def write_dataset_card(
    output_dir: str | os.PathLike,
    repo_id: str | None = None,
    license: str = "other",
    task_categories: list[str] | None = None,
) -> Path:
    """README.md of a complete token dataset: YAML header (license, tags, task_categories, size, data files) and a
    description with the real figures of its manifest (tokenizer, fps, frames per clip, t, k, vocabulary)."""
    output_dir = Path(output_dir)
    manifest = _read_manifest(output_dir / MANIFEST)
    if "num_rows" not in manifest:
        raise ValueError(f"{output_dir}: the tokenization is not finished; run tokenize_dataset to the end first.")
    labels = _label_columns(manifest)
    if task_categories is None:
        text = [n for n, f in labels.items() if isinstance(f, datasets.Value) and f.dtype in ("string", "large_string")]
        classes = [n for n, f in labels.items() if isinstance(f, datasets.ClassLabel)]
        task_categories = ["text-to-video"] if text else ["video-classification"] if classes else ["other"]
    title = (repo_id or output_dir.resolve().name).split("/")[-1]
    repo = repo_id or "<repo_id>"
    tokenizer = manifest["tokenizer"] or "a local VideoFlexTok model"
    revision = manifest.get("tokenizer_revision") or "n/a"
    fps = manifest["fps"]
    fps_text = f"{fps:g}" if isinstance(fps, (int, float)) else ", ".join(f"{f:g}" for f in fps)
    stride = manifest.get("clip_stride")
    size = manifest["image_size"]
    size_text = f"{size[0]}x{size[1]}" if isinstance(size, list) else f"{size}x{size}"
    source = manifest.get("tokenizer_source_checkpoint") or "n/a"
    stride_text = f"{stride} frames" if stride is not None else "n/a"
    steps, k, n = manifest["time_steps"], manifest["tokens_per_step"], manifest["registers_per_step"]
    rows = [
        ("tokenizer", f"`{tokenizer}` (revision: {revision}; source checkpoint: {source})"),
        ("clips", f"{manifest['clip_frames']} frames at {fps_text} fps, {size_text} pixels; "
                  f"clip stride {stride_text}"),
        ("token layout", f"`token_ids` is `[t, k]`: t = {steps} time steps, k = {k} tokens per step (of {n}), "
                         "ordered coarse to fine"),
        ("vocabulary", f"{manifest['codebook_size']} ids (FSQ levels {manifest['fsq_levels']}), stored as "
                       f"{manifest['token_dtype']}"),
        ("encoding", "deterministic: VAE posterior mean (`sample_posterior=False`)"),
        ("left out", f"{manifest['num_skipped']} clip(s) whose video could not be decoded"),
    ]
    table = "\n".join(f"| {name} | {value} |" for name, value in rows)
    label_text = ", ".join(f"`{name}`" for name in labels) or "none"
    header = "\n".join([
        "---",
        f"license: {license}",
        "task_categories:",
        *[f"- {task}" for task in task_categories],
        "tags:",
        "- video-tokens",
        "- videoflextok",
        "- video-tokenizer",
        "- fsq",
        "size_categories:",
        f"- {_size_category(manifest['num_rows'])}",
        "configs:",
        "- config_name: default",
        "  data_files:",
        "  - split: train",
        "    path: data/*.parquet",
        "---",
    ])
    body = f"""
# {title}

VideoFlexTok token ids of {manifest['num_rows']} video clips, made with `videoflextok_hf.data.tokenize_dataset`.

| | |
|---|---|
{table}

Columns: `video_id`, `clip_index`, `clip_start` (seconds), `fps`, `num_frames`, `tokens_per_step`, `token_ids`;
labels / captions: {label_text}. `tokenizer.json` holds the full settings.

```python
from videoflextok_hf.data import load_token_dataset
tokens = load_token_dataset("{repo}")  # torch format: token_ids [t, k]

# or with datasets only
from datasets import load_dataset
tokens = load_dataset("{repo}", split="train").with_format("torch")
```

Decode rows back to videos with `videoflextok_hf.data.detokenize_rows(rows, model)`.
"""
    path = output_dir / CARD
    with _atomic_file(path, "w") as handle:
        handle.write(header + "\n" + body)
    return path


def push_token_dataset(
    output_dir: str | os.PathLike,
    repo_id: str,
    private: bool = False,
    token: str | None = None,
    revision: str | None = None,
    license: str = "other",
    task_categories: list[str] | None = None,
    commit_message: str = "Upload VideoFlexTok token dataset",
) -> str:
    """Upload a complete token dataset folder to a Hub dataset repo with one `upload_folder` call: `README.md` (card,
    rewritten with `repo_id`), `tokenizer.json` and `data/*.parquet`; `data/*.parquet` files of the repo that this
    upload does not overwrite (shards of an earlier push) are deleted. Returns the commit URL."""
    from huggingface_hub import HfApi

    output_dir = Path(output_dir)
    if not (output_dir / MANIFEST).exists():
        raise FileNotFoundError(f"{output_dir} holds no {MANIFEST}: not a token dataset written by tokenize_dataset.")
    manifest = _read_manifest(output_dir / MANIFEST)
    if "data_files" not in manifest:
        raise ValueError(f"{output_dir}: the tokenization is not finished; run tokenize_dataset to the end first.")
    if not manifest["data_files"]:
        raise ValueError(f"{output_dir}: the dataset has no rows to push (every clip was left out).")
    write_dataset_card(output_dir, repo_id, license=license, task_categories=task_categories)
    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    if revision is not None:
        api.create_branch(repo_id, branch=revision, repo_type="dataset", exist_ok=True)
    info = api.upload_folder(
        folder_path=str(output_dir), repo_id=repo_id, repo_type="dataset", revision=revision,
        allow_patterns=[CARD, MANIFEST, *manifest["data_files"]], delete_patterns=["data/*.parquet"],
        commit_message=commit_message,
    )
    return getattr(info, "commit_url", None) or str(info)


# ----------------------------------------------------------------------------------------------------------------
# inspection


def detokenize_rows(rows, model_or_pipeline, num_tokens: int | None = None, **kwargs) -> torch.Tensor:
    """Rows of a token dataset -> videos `[B, T, 3, H, W]` in [0, 1] (for `output_type="pt"`, the default).

    Args:
        rows: a `Dataset` (e.g. `tokens.select(range(4))`), a batch dict (`tokens[:4]`), a list of rows, or one row;
            all with the same number of time steps t.
        model_or_pipeline: a `VideoFlexTokModel` (its `detokenize`) or a `VideoFlexTokPipeline`.
        num_tokens: decode from the first k tokens of every step (default: all the rows hold).
        kwargs: sampling arguments (`num_inference_steps`, `guidance_scale`, `generator`, `output_type`, ...).
    """
    if isinstance(rows, datasets.Dataset) or (isinstance(rows, dict) and "token_ids" in rows):
        ids = _as_token_ids(rows["token_ids"])
    else:
        ids = _as_token_ids([_as_token_ids(row["token_ids"]) for row in rows])
    if ids.dim() == 2:
        ids = ids[None]  # one row
    if ids.dim() != 3 or ids.shape[0] == 0:
        raise ValueError(f"expected token ids [B, t, k], got shape {tuple(ids.shape)}.")
    if num_tokens is not None and not 1 <= num_tokens <= ids.shape[-1]:
        raise ValueError(
            f"num_tokens must lie in 1..{ids.shape[-1]} (the tokens per step the rows hold), got {num_tokens}."
        )
    decode = getattr(model_or_pipeline, "detokenize", None) or model_or_pipeline
    output = decode(ids, num_tokens=num_tokens, **kwargs)
    for name in ("videos", "frames"):
        if hasattr(output, name):
            return getattr(output, name)
    return output[0] if isinstance(output, (tuple, list)) else output


def _as_token_ids(value) -> torch.Tensor:
    """token ids (a tensor, a nested list, or a list of per-row tensors) -> one int64 tensor."""
    if isinstance(value, torch.Tensor):
        return value.long()
    if isinstance(value, (list, tuple)) and value and isinstance(value[0], (torch.Tensor, np.ndarray)):
        tensors = [torch.as_tensor(v).long() for v in value]
        shapes = sorted({tuple(t.shape) for t in tensors})
        if len(shapes) != 1:
            raise ValueError(f"rows have token_ids of different shapes {shapes}; detokenize them separately.")
        return torch.stack(tensors)
    try:
        return torch.from_numpy(np.asarray(value, dtype=np.int64))
    except ValueError:
        raise ValueError("rows have token_ids of different shapes; detokenize them separately.") from None
