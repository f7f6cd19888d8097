"""Video files <-> tensors with PyAV (bundled FFmpeg), with VideoFlexTok's official preprocessing.

`read_video(path, fps=8, size=256)` returns float32 `[3, T, H, W]` in [-1, 1] (`size` an int: H = W = size; a pair
`(H, W)`: any shape, the model's `config.frame_size`):

1. every frame of the first video stream is decoded (RGB, uint8); `total` frames at `avg_fps`;
2. T follows the official reader: `desired = int(total / avg_fps * fps)` frames at the target fps, rounded **up** to
   a valid VideoFlexTok length `T = chunk_size + (chunk_size - overlap) * K` (= 1 + 16K for 17-frame chunks
   overlapping by one), and the frames `np.linspace(0, total - 1, T)` (truncated to ints) are picked, i.e. they are
   spread over the whole clip; `num_frames` overrides T;
3. each frame is resized (bicubic, antialiased, on float [0, 1]), clamped to [0, 1], center-cropped and mapped to
   [-1, 1] with `x * 2 - 1`. As the official reader (torchvision `Resize(size)` then `CenterCrop(size)`): an int
   `size` resizes the short side to `size` and crops the centre square; a pair `(H, W)` resizes to exactly (H, W),
   whatever the aspect ratio (the crop is then a no-op). `resize_mode="crop"` keeps the aspect ratio instead: the
   frame is scaled to cover (H, W) and the centre (H, W) is cropped (the same as the default for an int `size`).

`frame_policy` says what happens when the clip does not fit the model:

* "strict" (default): the official rule above, but a clip shorter than one chunk at the target fps (fewer than
  `chunk_size` frames; the official reader would stretch it), an explicit `num_frames` that is not a valid length, or
  (with `fps=None`) a native frame count that is not valid raises a `ValueError` that says how to fix it;
* "resample": the official reader as is: the length is rounded up to a valid count, whatever it is, and the frames
  are spread over the whole clip (short clips are slowed down, frames repeat);
* "pad": the frames at the exact target fps (or the `num_frames` / native frames), then the last frame repeated up
  to the next valid length;
* "trim": the frames at the exact target fps, then the trailing frames dropped down to the previous valid length
  (a clip shorter than one chunk raises).

Files that cannot be decoded (missing, empty, unreadable, corrupt, truncated, audio-only) raise `VideoDecodeError`
(a `ValueError`) whose message starts with the file name.

This module needs PyAV, numpy, torch and torchvision, and of the package only `ChunkGeometry` (valid lengths) and
atomic writes.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import os
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

import av
import numpy as np
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from ..modeling.chunking import ChunkGeometry
from ..utils import atomic_write_file

FRAME_POLICIES = ("strict", "resample", "pad", "trim")
RESIZE_MODES = ("official", "crop")
VIDEO_EXTENSIONS = {".mp4": "mp4", ".mkv": "matroska", ".mov": "mov", ".avi": "avi"}

VideoSource = str | os.PathLike | bytes


class VideoDecodeError(ValueError):
    """A video that cannot be decoded: missing, empty, unreadable, corrupt, truncated, or without a video stream.

    `source` is the file (or the given name of in-memory bytes), `reason` what went wrong."""

    def __init__(self, source: str, reason: str):
        self.source, self.reason = str(source), reason
        super().__init__(f"{source}: {reason}")

    def __reduce__(self):  # picklable across processes
        return type(self), (self.source, self.reason)


class VideoInfo(NamedTuple):
    num_frames: int
    fps: float
    width: int
    height: int

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps


# ----------------------------------------------------------------------------------------------------------------
# frame counts


# thin wrappers over the model's `ChunkGeometry` (which raises for an overlap outside [0, chunk_size))


def is_valid_frame_count(num_frames: int, chunk_size: int = 17, overlap: int = 1) -> bool:
    """Whether a video of `num_frames` frames splits into whole chunks: `chunk_size + (chunk_size - overlap) * K`."""
    return ChunkGeometry(chunk_size, overlap).is_valid_frame_count(num_frames)


def next_valid_frame_count(num_frames: int, chunk_size: int = 17, overlap: int = 1) -> int:
    """The smallest valid length >= `num_frames` (at least one chunk). For 17/1 chunks: 1 + 16 * ceil((n - 1) / 16)."""
    return ChunkGeometry(chunk_size, overlap).next_valid_frame_count(num_frames)


def previous_valid_frame_count(num_frames: int, chunk_size: int = 17, overlap: int = 1) -> int | None:
    """The largest valid length <= `num_frames`, or None when `num_frames < chunk_size`."""
    return ChunkGeometry(chunk_size, overlap).previous_valid_frame_count(num_frames)


def frames_at_fps(num_frames: int, source_fps: float, fps: float) -> int:
    """How many frames a video of `num_frames` at `source_fps` has at `fps`: the official rule (truncated)."""
    return int(num_frames / source_fps * fps)


def select_frame_indices(
    total: int,
    source_fps: float,
    fps: float | None = 8.0,
    num_frames: int | None = None,
    frame_policy: str = "strict",
    chunk_size: int = 17,
    overlap: int = 1,
    name: str = "video",
) -> np.ndarray:
    """Indices (into the decoded frames) of the frames `read_video` returns; see the module docstring."""
    if frame_policy not in FRAME_POLICIES:
        raise ValueError(f"frame_policy must be one of {FRAME_POLICIES}, got {frame_policy!r}.")
    if total < 1:
        raise ValueError(f"{name}: the video has no frames.")
    if num_frames is not None and (not isinstance(num_frames, (int, np.integer)) or num_frames < 1):
        raise ValueError(f"num_frames must be a positive integer, got {num_frames!r}.")
    if fps is not None and not fps > 0:
        raise ValueError(f"fps must be positive (or None for the native frame rate), got {fps!r}.")
    geometry = ChunkGeometry(chunk_size, overlap)

    if num_frames is not None:
        count, what = int(num_frames), f"num_frames={num_frames}"
    elif fps is not None:
        count = frames_at_fps(total, source_fps, fps)
        what = f"{count} frames at {fps:g} fps"
    else:
        count, what = total, f"{total} frames at the native {source_fps:g} fps (fps=None)"

    def spread(n: int) -> np.ndarray:  # the official sampling: n frames over the whole clip, truncated
        return np.linspace(0, total - 1, n).astype(np.int64)

    source = f"the video has {total} frames at {source_fps:g} fps, {total / source_fps:.2f} s"
    if frame_policy == "resample":
        return spread(geometry.next_valid_frame_count(max(count, 1)))
    if frame_policy == "strict":
        if num_frames is None and fps is not None and count >= chunk_size:
            return spread(geometry.next_valid_frame_count(count))  # the official rule
        if geometry.is_valid_frame_count(count):
            return spread(count)
        if count < chunk_size:
            problem = f"too short, VideoFlexTok needs at least {chunk_size} frames (one chunk)"
            fixes = "frame_policy='pad' (repeat the last frame up to one chunk)"
        else:
            problem = f"VideoFlexTok needs {geometry.frame_rule()}"
            fixes = ("frame_policy='pad' (repeat the last frame up to the next valid length), frame_policy='trim' "
                     "(drop trailing frames down to the previous one)")
        raise ValueError(
            f"{name}: {what} is not a valid clip length ({source}): {problem}. Pass {fixes}, "
            "frame_policy='resample' (stretch the clip over a valid length, as the official reader does), or "
            "choose another fps / num_frames."
        )
    indices = spread(max(count, 1))
    if geometry.is_valid_frame_count(len(indices)):
        return indices
    if frame_policy == "pad":
        target = geometry.next_valid_frame_count(len(indices))
        return np.concatenate([indices, np.full(target - len(indices), indices[-1], dtype=np.int64)])
    target = geometry.previous_valid_frame_count(len(indices))
    if target is None:
        raise ValueError(
            f"{name}: {what} is not a valid clip length ({source}): too short to trim, VideoFlexTok needs at least "
            f"{chunk_size} frames (one chunk). Pass frame_policy='pad' to repeat the last frame instead, or "
            "frame_policy='resample'."
        )
    return indices[:target]


# ----------------------------------------------------------------------------------------------------------------
# decoding


def _display_name(source: VideoSource, name: str | None) -> str:
    if name is not None:
        return str(name)
    return "<video bytes>" if isinstance(source, (bytes, bytearray, memoryview)) else str(source)


@contextlib.contextmanager
def _open_video_stream(source: VideoSource, name: str | None = None):
    """(container, first video stream, display name) for a path or the bytes of a video file."""
    label = _display_name(source, name)
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise VideoDecodeError(label, "the video data is empty (0 bytes).")
        handle = io.BytesIO(bytes(source))
    else:
        path = Path(source)
        if not path.exists():
            raise VideoDecodeError(label, "no such video file.")
        if path.is_dir():
            raise VideoDecodeError(label, "is a directory, not a video file.")
        if not os.access(path, os.R_OK):
            raise VideoDecodeError(label, "permission denied: the file is not readable by this user.")
        if path.stat().st_size == 0:
            raise VideoDecodeError(label, "the file is empty (0 bytes).")
        handle = str(path)
    try:
        container = av.open(handle, mode="r")
    except PermissionError:
        raise VideoDecodeError(label, "permission denied: the file is not readable by this user.") from None
    except (av.error.FFmpegError, OSError, ValueError, EOFError) as error:
        raise VideoDecodeError(
            label, f"not a readable video (corrupt, truncated or unsupported file): {error}"
        ) from None
    try:
        if not container.streams.video:
            found = sorted({stream.type for stream in container.streams}) or ["no streams"]
            raise VideoDecodeError(label, f"the file has no video stream (found: {', '.join(found)}; audio-only?).")
        yield container, container.streams.video[0], label
    finally:
        container.close()


def _stream_fps(stream, label: str) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not rate or float(rate) <= 0:
        raise VideoDecodeError(label, "the video stream has no frame rate.")
    return float(rate)


def probe_video(source: VideoSource, name: str | None = None) -> VideoInfo:
    """Frame count, average fps and size of the first video stream.

    The count comes from the container index when it has one (mp4, mov), else from decoding the stream."""
    with _open_video_stream(source, name) as (container, stream, label):
        fps = _stream_fps(stream, label)
        count = stream.frames
        if not count:
            count = 0
            try:
                for _ in container.decode(stream):
                    count += 1
            except (av.error.FFmpegError, OSError, ValueError, EOFError) as error:
                raise VideoDecodeError(
                    label, f"decoding failed after {count} frames (corrupt or truncated file): {error}"
                ) from None
        width, height = stream.codec_context.width, stream.codec_context.height
    if not count:
        raise VideoDecodeError(label, "the video stream holds no frames.")
    return VideoInfo(int(count), fps, int(width), int(height))


_DECODE_ERRORS = (av.error.FFmpegError, OSError, ValueError, EOFError)
# seeks tried when one lands on a keyframe after the first wanted frame (containers seek by decoding time, or have
# B-frames before their keyframes' timestamps): each aims 1, 2, 4, ... frames before the keyframe it landed on
_SEEK_ATTEMPTS = 8


def _decoded_frames(stream, packets) -> Iterator:
    """The frames the decoder returns for `packets` (every decoding pass goes through here, so it can be counted)."""
    for packet in packets:
        yield from stream.decode(packet)


def _seek_frames(source: VideoSource, wanted: set[int], name: str | None):
    """Yield the `wanted` frames (as `iter_frames`) by seeking to the keyframe before the first one, then decoding
    forward; a frame's index is its timestamp on the stream's frame grid, counted from the first frame's.

    PyAV seeks by timestamp, not by frame index, so the mapping is used only where it matches counting frames from
    the start: a constant-rate stream (average rate == guessed rate), and a keyframe whose earlier packets (read,
    not decoded) carry exactly the timestamps of frames 0 .. K-1 of the grid (no gaps, duplicates or leading
    frames), then decoded frames on the grid one after another. Anything else (no timestamps, variable rate, a seek
    landing elsewhere, a decoding error, the end of the stream) stops this path: it returns the last index it
    yielded (-1 for none) and the caller decodes the rest from the start. Returns None when done."""
    first, last = min(wanted), max(wanted)
    done = -1
    with _open_video_stream(source, name) as (container, stream, label):
        rate, time_base = stream.average_rate, stream.time_base
        if not rate or not time_base or stream.guessed_rate != rate:
            return done
        stream.thread_type = "AUTO"
        ticks = 1 / (Fraction(rate) * Fraction(time_base))  # timestamp units per frame
        try:
            # read the packets up to the first wanted frame (decoding only until frame 0 comes out: its timestamp
            # is the grid's origin), noting each keyframe and the timestamps of the packets before it
            origin, seen, keys = None, [], []
            for packet in container.demux(stream):
                if packet.size == 0 or packet.pts is None:
                    break
                if origin is None:
                    origin = next((frame.pts for frame in _decoded_frames(stream, [packet])), None)
                if packet.is_keyframe:
                    keys.append((packet.pts, len(seen)))
                seen.append(packet.pts)
                decoded_at = packet.pts if packet.dts is None else packet.dts  # (Matroska: no dts at first)
                if origin is not None and (decoded_at - origin) / ticks > first:
                    break
            if origin is None:
                return done

            def index_of(pts) -> int | None:  # None: off the grid
                position = (pts - origin) / ticks
                index = round(position)
                return index if abs(position - index) < Fraction(1, 10) else None

            grid = [index_of(pts) for pts in seen]
            trusted = {}  # keyframe pts -> frame index, for keyframes preceded by exactly frames 0 .. K-1
            for pts, position in keys:
                index = index_of(pts)
                if index is not None and 0 < index <= first and sorted(grid[:position]) == list(range(index)):
                    trusted[pts] = index
            if not trusted:
                return done
            target = max(trusted)
            for attempt in range(_SEEK_ATTEMPTS):
                container.seek(int(target), stream=stream, backward=True, any_frame=False)  # flushes the decoder
                packets = container.demux(stream)
                key = next((packet for packet in packets if packet.is_keyframe or packet.size == 0), None)
                if key is None or key.size == 0 or key.pts is None:
                    return done
                if key.pts in trusted:
                    break
                if key.pts < min(trusted):
                    return done
                target = min(target, key.pts) - round(2**attempt * ticks)
            else:
                return done
            expected = trusted[key.pts]
            for frame in _decoded_frames(stream, itertools.chain([key], packets)):
                if frame.pts is None or index_of(frame.pts) != expected:
                    return done  # includes a leading frame before the keyframe: frames 0 .. K-1 were all seen
                if expected in wanted:
                    yield expected, frame.to_ndarray(format="rgb24")
                    done = expected
                    if expected >= last:
                        return None
                expected += 1
        except _DECODE_ERRORS:
            return done
    return done  # the stream ended early: let decoding from the start say how (truncated file)


def iter_frames(
    source: VideoSource, wanted: Iterable[int] | None = None, name: str | None = None
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield `(index, rgb uint8 [H, W, 3])` for the frames of the first video stream, in order.

    With `wanted`, only those frame indices are converted and yielded and decoding stops after the last one; a
    stream that ends before it raises `VideoDecodeError` (truncated). Without it, a stream that yields fewer frames
    than its container index lists also raises. When the first wanted frame is not frame 0, the file is first read
    by seeking to the keyframe before it (`_seek_frames`: the same frames, far fewer decoded for late clips); where
    timestamps cannot be trusted to give frame indices, the rest is decoded from the start.
    """
    wanted = None if wanted is None else set(int(i) for i in wanted)
    last = None if wanted is None else max(wanted, default=-1)
    if last is not None and last < 0:
        return
    if wanted and min(wanted) > 0:
        done = yield from _seek_frames(source, wanted, name)
        if done is None:
            return
        wanted = {i for i in wanted if i > done}
    with _open_video_stream(source, name) as (container, stream, label):
        stream.thread_type = "AUTO"
        listed = stream.frames
        index = -1
        try:
            for index, frame in enumerate(_decoded_frames(stream, container.demux(stream))):
                if wanted is None or index in wanted:
                    yield index, frame.to_ndarray(format="rgb24")
                if last is not None and index >= last:
                    return
        except _DECODE_ERRORS as error:
            raise VideoDecodeError(
                label, f"decoding failed after {index + 1} frames (corrupt or truncated file): {error}"
            ) from None
        decoded = index + 1
        if decoded == 0:
            raise VideoDecodeError(label, "the video stream holds no decodable frames (corrupt or truncated file).")
        if last is not None:
            raise VideoDecodeError(
                label, f"the video ends after {decoded} frames but frame {last} is needed (truncated file?)."
            )
        if listed and decoded < listed:
            raise VideoDecodeError(
                label, f"truncated: the container lists {listed} frames but only {decoded} could be decoded."
            )


def count_decodable_frames(source: VideoSource, name: str | None = None) -> int:
    """How many frames of the first video stream actually decode (up to the end or the first decoding error).

    `probe_video` trusts the container index, which can list frames a file does not hold (e.g. an edit list one
    frame longer than the stream); callers that can live with the shorter clip use this count instead."""
    count = 0
    with _open_video_stream(source, name) as (container, stream, _):
        stream.thread_type = "AUTO"
        try:
            for _ in _decoded_frames(stream, container.demux(stream)):
                count += 1
        except _DECODE_ERRORS:
            pass
    return count


def decode_frames(source: VideoSource, stop: int | None = None, name: str | None = None) -> tuple[torch.Tensor, float]:
    """All frames (or the first `stop`) of the first video stream as uint8 `[T, H, W, 3]`, and its average fps."""
    fps = probe_video(source, name).fps
    wanted = range(stop) if stop is not None else None
    frames = [array for _, array in iter_frames(source, wanted, name)]
    return torch.from_numpy(np.stack(frames)), fps


def frame_size_pair(size) -> tuple[int, int]:
    """`size` (an int: square, or a pair `(H, W)`) -> `(H, W)`; raises a `ValueError` for anything else."""
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool) and size >= 1:
        return (int(size), int(size))
    if (
        isinstance(size, (list, tuple))
        and len(size) == 2
        and all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 1 for s in size)
    ):
        return (int(size[0]), int(size[1]))
    raise ValueError(f"size must be a positive integer or a pair (height, width) of them, got {size!r}.")


def _check_resize_mode(resize_mode: str) -> None:
    if resize_mode not in RESIZE_MODES:
        raise ValueError(f"resize_mode must be one of {RESIZE_MODES}, got {resize_mode!r}.")


def preprocess_frames(frames: torch.Tensor, size, resize_mode: str = "official") -> torch.Tensor:
    """uint8 RGB `[T, H0, W0, 3]` -> float32 `[3, T, H, W]` in [-1, 1] (the official preprocessing).

    Resized (bicubic, antialiased, on float [0, 1]), clamped to [0, 1], center-cropped to (H, W), x * 2 - 1. An int
    `size` resizes the short side to it (square crop); a pair `(H, W)` resizes to exactly (H, W) ("official", as
    torchvision `Resize` does) or, with `resize_mode="crop"`, scales to cover (H, W) keeping the aspect ratio.
    Every frame is processed on its own, so the result does not depend on how frames are batched."""
    if frames.dim() != 4 or frames.shape[-1] != 3 or frames.dtype != torch.uint8:
        raise ValueError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} {tuple(frames.shape)}.")
    _check_resize_mode(resize_mode)
    height, width = frame_size_pair(size)
    video = frames.permute(0, 3, 1, 2).float() / 255.0
    if not isinstance(size, (list, tuple)):
        resized = [height]  # the short side (the official reader with an int size)
    elif resize_mode == "official":
        resized = [height, width]
    else:
        source_height, source_width = video.shape[-2:]
        scale = max(height / source_height, width / source_width)
        resized = [max(height, round(source_height * scale)), max(width, round(source_width * scale))]
    video = TF.resize(video, resized, interpolation=InterpolationMode.BICUBIC, antialias=True).clamp_(0.0, 1.0)
    video = TF.center_crop(video, [height, width])
    return (video * 2 - 1).transpose(0, 1).contiguous()


def decode_selected_frames(
    source: VideoSource, indices: Iterable[int], size, name: str | None = None, batch: int = 16,
    resize_mode: str = "official",
) -> torch.Tensor:
    """The frames at `indices` (repeats allowed) preprocessed to `[3, len(indices), H, W]` (see `preprocess_frames`).

    Streams through the file once, keeping only the needed frames (already resized), so long videos need little
    memory."""
    indices = [int(i) for i in indices]
    if not indices:
        raise ValueError("no frame indices given.")
    processed: dict[int, torch.Tensor] = {}
    pending: list[tuple[int, np.ndarray]] = []

    def flush() -> None:
        if pending:
            video = preprocess_frames(torch.from_numpy(np.stack([a for _, a in pending])), size, resize_mode)
            processed.update((i, video[:, n]) for n, (i, _) in enumerate(pending))
            pending.clear()

    for index, array in iter_frames(source, indices, name):
        if pending and (len(pending) == batch or pending[0][1].shape != array.shape):
            flush()
        pending.append((index, array))
    flush()
    return torch.stack([processed[i] for i in indices], dim=1)


def read_video(
    path: VideoSource,
    fps: float | None = 8.0,
    size: int | tuple[int, int] = 256,
    num_frames: int | None = None,
    frame_policy: str = "strict",
    chunk_size: int = 17,
    overlap: int = 1,
    resize_mode: str = "official",
) -> torch.Tensor:
    """Read a video as float32 `[3, T, H, W]` in [-1, 1] with the official VideoFlexTok preprocessing.

    Args:
        path: a video file (or its bytes).
        fps: target frame rate (None: the native frames). num_frames: the output length T instead of the fps rule
            (frames spread uniformly over the whole clip).
        size: the output frame size: an int (square frames, short side resized and centre-cropped) or a pair
            `(H, W)` (the model's `config.image_size`; `config.frame_size` is always the pair).
        frame_policy: "strict", "resample", "pad" or "trim" (see the module docstring).
        chunk_size, overlap: the model's chunking (`config.chunk_size`, `config.overlap_size_frames`).
        resize_mode: "official" (a pair is resized to exactly (H, W), as the official reader does) or "crop"
            (keep the aspect ratio: scale to cover (H, W), then centre-crop).
    Raises:
        VideoDecodeError: the file cannot be decoded. ValueError: the clip length does not fit (strict/trim).
    """
    frame_size_pair(size)
    _check_resize_mode(resize_mode)
    info = probe_video(path)
    name = _display_name(path, None)
    indices = select_frame_indices(info.num_frames, info.fps, fps, num_frames, frame_policy, chunk_size, overlap, name)
    size = tuple(int(s) for s in size) if isinstance(size, (list, tuple)) else int(size)
    return decode_selected_frames(path, indices.tolist(), size, resize_mode=resize_mode)


# ----------------------------------------------------------------------------------------------------------------
# encoding


def _atomic_binary_file(target: Path):
    """A temporary file next to `target` that replaces it (one rename) only if the block succeeds."""
    return atomic_write_file(target, "wb")


def default_video_codec() -> str:
    """libx264 when this FFmpeg build has it, else mpeg4."""
    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def write_video(path: str | os.PathLike, video: torch.Tensor, fps: float = 8.0, codec: str | None = None) -> Path:
    """Write a video file atomically (temporary file, then one rename).

    Args:
        video: `[3, T, H, W]` (channels first, like `read_video`): float in [-1, 1] (values outside are clamped) or
            uint8 in [0, 255]. H and W must be even (yuv420p).
        fps: frame rate stored in the file.
        codec: "libx264" (default when available, crf 18) or "mpeg4" (the fallback, quantizers 1-3), or any PyAV
            video encoder.
    The container follows the extension: .mp4, .mkv, .mov or .avi.
    """
    path = Path(path)
    if path.suffix.lower() not in VIDEO_EXTENSIONS:
        raise ValueError(f"unsupported video file extension {path.suffix!r}; use one of {sorted(VIDEO_EXTENSIONS)}.")
    if not isinstance(video, torch.Tensor):
        raise TypeError(f"video must be a torch.Tensor [3, T, H, W], got {type(video).__name__}.")
    if video.dim() != 4 or video.shape[0] != 3:
        looks_transposed = video.dim() == 4 and video.shape[1] == 3
        hint = " (it looks like [T, 3, H, W]: pass video.transpose(0, 1))" if looks_transposed else ""
        raise ValueError(f"video must be [3, T, H, W], got shape {tuple(video.shape)}{hint}.")
    if video.shape[1] == 0:
        raise ValueError("video has no frames (T = 0).")
    if not fps or fps <= 0:
        raise ValueError(f"fps must be positive, got {fps!r}.")
    if video.dtype == torch.uint8:
        frames = video
    elif video.dtype.is_floating_point:
        video = video.detach().float()
        if not torch.isfinite(video).all():
            raise ValueError("video holds NaN or infinite values.")
        frames = ((video.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    else:
        raise TypeError(f"video must be float in [-1, 1] or uint8 in [0, 255], got dtype {video.dtype}.")
    height, width = int(frames.shape[2]), int(frames.shape[3])
    if height % 2 or width % 2:
        raise ValueError(f"yuv420p video needs even frame sizes, got {height}x{width}; crop or pad by one pixel.")
    codec = codec or default_video_codec()
    arrays = frames.permute(1, 2, 3, 0).cpu().numpy()  # [T, H, W, 3]
    with _atomic_binary_file(path) as handle:
        with av.open(handle, mode="w", format=VIDEO_EXTENSIONS[path.suffix.lower()]) as container:
            stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            if codec == "libx264":
                stream.options = {"crf": "18"}
            elif codec == "mpeg4":
                stream.options = {"qmin": "1", "qmax": "3"}  # near-lossless quantizers (the default is blurry)
            for array in arrays:
                for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    return path
