"""Fixed-length clips of a video collection, as a `datasets.Dataset` of lazily decoded descriptors.

`load_video_dataset(source)` accepts a local folder (the `datasets` "videofolder" layout), a Hub dataset id or a
`datasets.Dataset` with a `Video` column, or a list of video files. Every video is resampled uniformly to the target
fps (`n = int(frames / video_fps * fps)` frames, `np.linspace(0, frames - 1, n)` truncated, as the official reader
samples) and cut into sliding windows of `clip_frames` frames every `stride` frames. A row describes one clip (which
file, which source frames); nothing is decoded until `decode_clip` / `tokenize_dataset` needs the pixels, so the
clip list of a large collection is small.

Videos stored as bytes (Hub datasets in parquet) are written once to a content-addressed cache folder and referred
to by path; they are decoded with PyAV (`video_io`), never torchcodec.
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import json
import logging
import os
import queue
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch

from ..modeling.chunking import ChunkGeometry
from .video_io import (
    VideoDecodeError,
    _atomic_binary_file,
    iter_frames,
    preprocess_frames,
    probe_video,
)

logger = logging.getLogger(__name__)

CLIP_COLUMNS = ("video_id", "source_path", "clip_index", "clip_start", "frame_indices", "fps")
CLIP_POLICIES = ("trim", "pad", "strict")


def _clip_features(labels: dict) -> datasets.Features:
    return datasets.Features({
        "video_id": datasets.Value("string"),
        "source_path": datasets.Value("string"),
        "clip_index": datasets.Value("int32"),
        "clip_start": datasets.Value("float32"),
        "frame_indices": datasets.List(datasets.Value("int64")),
        "fps": datasets.Value("float32"),
        **labels,
    })


def clip_windows(num_frames: int, clip_frames: int, stride: int, frame_policy: str = "trim") -> list[int]:
    """Start frames of the clips of a video with `num_frames` frames (at the target fps).

    "trim": windows that fit entirely (the tail after the last one is dropped; a short video has none). "pad": also
    windows over the tail, completed by repeating the last frame, so that every frame is covered (a short video gives
    one). "strict": like "trim", but a video shorter than one clip raises."""
    if frame_policy not in CLIP_POLICIES:
        raise ValueError(f"frame_policy must be one of {CLIP_POLICIES}, got {frame_policy!r}.")
    starts = list(range(0, num_frames - clip_frames + 1, stride))
    if frame_policy == "pad" and num_frames > 0:
        if not starts:
            starts = [0]
        while starts[-1] + clip_frames < num_frames:
            starts.append(starts[-1] + stride)
    return starts


def _materialize(data: bytes, hint: str | None, folder: Path) -> str:
    """Write video bytes once to `folder/<sha256>.<ext>` and return the path."""
    suffix = Path(hint).suffix.lower() if hint and Path(hint).suffix else ".mp4"
    path = folder / f"{hashlib.sha256(data).hexdigest()[:40]}{suffix}"
    if not path.exists():
        with _atomic_binary_file(path) as handle:
            handle.write(data)
    return str(path)


def _source_dataset(source, split: str, cache_dir, load_kwargs) -> tuple[datasets.Dataset, Path | None, str]:
    """(dataset, folder the paths are relative to, name for video ids)."""
    if isinstance(source, datasets.DatasetDict):
        if split not in source:
            raise ValueError(f"the DatasetDict has no split {split!r} (splits: {list(source)}).")
        source = source[split]
    if isinstance(source, datasets.Dataset):
        name = source.info.dataset_name or "dataset"
        if source.split is not None:
            name = f"{name}/{source.split}"
        return source, None, name
    if isinstance(source, (str, os.PathLike)) and Path(source).is_dir():
        folder = Path(source).resolve()
        dataset = datasets.load_dataset("videofolder", data_dir=str(folder), split=split, cache_dir=cache_dir,
                                        **load_kwargs)
        return dataset, folder, str(source)
    if isinstance(source, str) and not Path(source).exists():
        dataset = datasets.load_dataset(source, split=split, cache_dir=cache_dir, **load_kwargs)
        return dataset, None, f"{source}/{split}"
    raise TypeError(
        "source must be a folder of videos, a Hub dataset id, a datasets.Dataset / DatasetDict with a Video column "
        f"or a list of video files; got {source!r}."
    )


def _videos(source, video_column, split, id_column, cache_dir, load_kwargs) -> tuple[Iterator[dict], dict]:
    """(an iterator of {"video_id", "path", labels...}, the features of the label columns)."""
    if isinstance(source, (str, os.PathLike)):
        path, text = Path(source), str(source)
        if path.is_file():
            source = [source]  # one video file
        elif not path.exists() and (isinstance(source, os.PathLike) or text.startswith(("/", ".", "~"))):
            raise FileNotFoundError(f"{source}: no such video folder or file.")
    if isinstance(source, (list, tuple)):
        def from_files():
            for item in source:
                yield {"video_id": str(item), "path": str(item)}
        return from_files(), {}
    dataset, base, name = _source_dataset(source, split, cache_dir, load_kwargs)
    if video_column not in dataset.column_names:
        raise ValueError(f"the dataset has no {video_column!r} column (columns: {dataset.column_names}); pass "
                         "video_column=...")
    if id_column is None and "video_id" in dataset.column_names:
        id_column = "video_id"
    if id_column is not None and id_column not in dataset.column_names:
        raise ValueError(f"id_column {id_column!r} is not a column (columns: {dataset.column_names}).")
    dataset = dataset.cast_column(video_column, datasets.Video(decode=False))
    labels = {c: dataset.features[c] for c in dataset.column_names if c not in (video_column, id_column)}
    clashes = sorted(set(labels) & set(CLIP_COLUMNS))
    if clashes:
        raise ValueError(f"the dataset's columns {clashes} clash with the clip columns {CLIP_COLUMNS}; rename them "
                         "first (dataset.rename_column).")
    byte_folder = Path(cache_dir or datasets.config.HF_DATASETS_CACHE) / "videoflextok_hf" / "videos"

    def from_dataset():
        for index, row in enumerate(dataset):
            video = row[video_column] or {}
            path, data = video.get("path"), video.get("bytes")
            if id_column is not None:
                video_id = str(row[id_column])
            elif base is not None and path and Path(path).resolve().is_relative_to(base):
                video_id = Path(path).resolve().relative_to(base).as_posix()
            else:
                video_id = f"{name}/{index}"
            if data:
                path = _materialize(data, path, byte_folder)
            entry = {"video_id": video_id, "path": path}
            entry.update({label: row[label] for label in labels})
            yield entry

    return from_dataset(), labels


def load_video_dataset(
    source,
    clip_frames: int = 17,
    stride: int | None = None,
    fps: float | None = 8.0,
    *,
    frame_policy: str = "trim",
    skip_errors: bool = False,
    video_column: str = "video",
    split: str = "train",
    id_column: str | None = None,
    chunk_size: int = 17,
    overlap: int = 1,
    cache_dir: str | os.PathLike | None = None,
    **load_kwargs,
) -> datasets.Dataset:
    """Fixed-length clips of a video collection as a `datasets.Dataset` of descriptors (decoded lazily).

    Args:
        source: a folder (`videofolder` layout: labels from subfolders, or the columns of a metadata.csv / .jsonl
            with a `file_name` column, e.g. captions; as in `datasets`, a metadata file replaces subfolder labels);
            a Hub dataset id (loaded with `datasets.load_dataset(source, split=split, **load_kwargs)`); a
            `datasets.Dataset` / `DatasetDict` with a video column (`Video` feature or file paths); or a list of files.
        clip_frames: frames per clip at `fps`; must be a valid VideoFlexTok length (17, 33, 49, ... = 1 + 16K).
        stride: frames (at `fps`) between clip starts; default `clip_frames` (disjoint clips).
        fps: target frame rate; every video is resampled uniformly to it (None: native frames).
        frame_policy: "trim" (default: whole windows only; videos shorter than one clip are left out and reported),
            "pad" (windows over the tail too, completed by repeating the last frame) or "strict" (a video shorter
            than one clip raises).
        skip_errors: leave out videos that cannot be read (logged, and listed in the dataset info) instead of raising.
        id_column: column with stable video ids (default: `video_id` if present, else the path relative to the
            folder, the file path for a list of files, or `<dataset>/<split>/<row index>`).
        cache_dir: `datasets` cache folder; videos stored as bytes are written once under it.

    Returns:
        Columns `video_id`, `source_path`, `clip_index`, `clip_start` (seconds), `frame_indices` (decoded-frame
        indices of the clip's frames), `fps`, plus the source's label / caption columns. `dataset.info.description`
        holds the settings and the `skipped` videos as JSON.
    """
    geometry = ChunkGeometry(chunk_size, overlap)
    if not geometry.is_valid_frame_count(clip_frames):
        raise ValueError(
            f"clip_frames={clip_frames} is not a valid VideoFlexTok length: it must be {chunk_size} + "
            f"{geometry.frame_stride}K (e.g. {geometry.num_frames(1)}, {geometry.num_frames(2)})."
        )
    stride = clip_frames if stride is None else stride
    if stride < 1:
        raise ValueError(f"stride must be a positive number of frames, got {stride}.")
    if fps is not None and not fps > 0:
        raise ValueError(f"fps must be positive or None, got {fps!r}.")
    if frame_policy not in CLIP_POLICIES:
        raise ValueError(f"frame_policy must be one of {CLIP_POLICIES}, got {frame_policy!r}.")
    videos, labels = _videos(source, video_column, split, id_column, cache_dir, load_kwargs)
    clips: dict[str, list] = {column: [] for column in CLIP_COLUMNS + tuple(labels)}
    skipped: list[dict] = []
    num_videos = 0
    for video in videos:
        num_videos += 1
        try:
            if not video["path"]:
                raise VideoDecodeError(video["video_id"], "the dataset row holds no video (no path, no bytes).")
            info = probe_video(video["path"])
        except VideoDecodeError as error:
            if not skip_errors:
                raise
            logger.warning("skipping unreadable video %s: %s", video["video_id"], error)
            skipped.append({"video_id": video["video_id"], "reason": "unreadable", "error": str(error)})
            continue
        rate = fps or info.fps
        count = int(info.num_frames / info.fps * rate) if fps else info.num_frames
        starts = clip_windows(count, clip_frames, stride, frame_policy)
        if not starts:
            message = (f"{video['path']}: {count} frames at {rate:g} fps ({info.duration:.2f} s) is shorter than one "
                       f"clip of {clip_frames} frames")
            if frame_policy == "strict":
                raise ValueError(message + "; pass frame_policy='pad' to pad it, or 'trim' to leave it out.")
            logger.warning("leaving out %s: %s", video["video_id"], message)
            skipped.append({"video_id": video["video_id"], "reason": "too short", "error": message})
            continue
        indices = np.linspace(0, info.num_frames - 1, count).astype(np.int64)
        for clip_index, start in enumerate(starts):
            window = indices[start : start + clip_frames].tolist()
            window += [window[-1]] * (clip_frames - len(window))  # "pad": repeat the last frame
            clips["video_id"].append(video["video_id"])
            clips["source_path"].append(str(video["path"]))
            clips["clip_index"].append(clip_index)
            clips["clip_start"].append(start / rate)
            clips["frame_indices"].append(window)
            clips["fps"].append(float(rate))
            for label in labels:
                clips[label].append(video[label])
    dataset = datasets.Dataset.from_dict(clips, features=_clip_features(labels))
    dataset.info.description = json.dumps({
        "clip_frames": clip_frames, "stride": stride, "fps": fps, "frame_policy": frame_policy,
        "num_videos": num_videos, "skipped": skipped,
    })
    return dataset


# ----------------------------------------------------------------------------------------------------------------
# decoding clips


def _decode_group(
    path: str, group: list[dict], size, resize_mode: str = "official"
) -> Iterator[tuple[dict, torch.Tensor | VideoDecodeError]]:
    """Clips of one file, decoded in one pass that keeps only the frames still needed."""
    needed = set(itertools.chain.from_iterable(row["frame_indices"] for row in group))
    # frames below the first frame of every clip not yet emitted can be dropped
    later_min = [min(row["frame_indices"]) for row in group] + [max(needed) + 1]
    for i in range(len(group) - 1, -1, -1):
        later_min[i] = min(later_min[i], later_min[i + 1])
    frames: dict[int, torch.Tensor] = {}
    emitted = 0
    try:
        for index, array in iter_frames(path, needed):
            frames[index] = preprocess_frames(torch.from_numpy(array)[None], size, resize_mode)[:, 0]
            while emitted < len(group) and max(group[emitted]["frame_indices"]) <= index:
                row = group[emitted]
                yield row, torch.stack([frames[i] for i in row["frame_indices"]], dim=1)
                emitted += 1
                for stale in [i for i in frames if i < later_min[emitted]]:
                    del frames[stale]
    except VideoDecodeError as error:
        for row in group[emitted:]:
            yield row, error


def iter_decoded_clips(
    rows: Iterable[dict[str, Any]], size, num_workers: int = 0, prefetch: int = 8, resize_mode: str = "official"
) -> Iterator[tuple[dict, torch.Tensor | VideoDecodeError]]:
    """`(row, [3, T, H, W] float32 in [-1, 1])` for clip descriptors, in order; a clip whose video cannot be
    decoded comes with its `VideoDecodeError` instead. Consecutive clips of one file share one decoding pass.
    `size` (an int for square frames, or `(H, W)`) and `resize_mode` are as in `read_video`.

    With `num_workers > 0`, that many background threads decode the next files ahead (FFmpeg and the resize run
    outside the GIL), each holding at most `prefetch` decoded clips; the order is unchanged."""
    groups = ((path, list(group)) for path, group in itertools.groupby(rows, key=lambda row: row["source_path"]))
    if num_workers <= 0:
        for path, group in groups:
            yield from _decode_group(path, group, size, resize_mode)
        return
    yield from _threaded(groups, size, num_workers, max(1, prefetch), resize_mode)


_END = object()


def _threaded(groups, size, num_workers: int, prefetch: int, resize_mode: str = "official"):
    """Decode up to `num_workers` groups ahead in threads, each into its own bounded queue; yield in order."""
    stop = threading.Event()

    def produce(path, group, channel: queue.Queue) -> None:
        def put(item) -> bool:
            while not stop.is_set():
                try:
                    channel.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        try:
            for item in _decode_group(path, group, size, resize_mode):
                if not put(item):
                    return
        except BaseException as error:  # a bug, not a bad file: hand it to the consumer
            put((_END, error))
            return
        put((_END, None))

    window: collections.deque = collections.deque()

    def start_next() -> bool:
        try:
            path, group = next(groups)
        except StopIteration:
            return False
        channel: queue.Queue = queue.Queue(maxsize=prefetch)
        thread = threading.Thread(target=produce, args=(path, group, channel), daemon=True, name="decode-clips")
        thread.start()
        window.append((thread, channel))
        return True

    try:
        while len(window) < num_workers and start_next():
            pass
        while window:
            thread, channel = window[0]  # stays in the window (joined on exit) until it is drained
            while True:
                item = channel.get()
                if item[0] is _END:
                    if item[1] is not None:
                        raise item[1]
                    break
                yield item
            thread.join()
            window.popleft()
            start_next()
    finally:
        stop.set()
        for thread, _ in window:
            thread.join()


def decode_clip(clip: dict[str, Any], size, resize_mode: str = "official") -> torch.Tensor:
    """A clip descriptor (a row of `load_video_dataset`) -> `[3, T, H, W]` float32 in [-1, 1] (`size` an int for
    square frames or `(H, W)`, `resize_mode` as in `read_video`)."""
    (_, video), = iter_decoded_clips([clip], size, resize_mode=resize_mode)
    if isinstance(video, VideoDecodeError):
        raise video
    return video
