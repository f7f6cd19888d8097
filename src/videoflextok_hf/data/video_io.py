"""Video files <-> tensors with PyAV (bundled FFmpeg), with VideoFlexTok's official preprocessing.

`read_video` resamples a clip uniformly to the target fps, resizes the short side (bicubic, antialiased), clamps,
center-crops and maps to [-1, 1], giving `[3, T, size, size]` float32. The official reader picks
T = 1 + 16K frames spread over the whole clip (`np.linspace(0, total - 1, T)` truncated to ints) with
K = ceil((fps-resampled length - 1) / 16); here that is `frame_policy="resample"`. By default ("strict") a clip whose
resampled length is not already a valid frame count is an error; "pad" repeats the last frame and "trim" drops
trailing frames to reach a valid count.
"""

from __future__ import annotations

import io
import math
import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from ..utils import atomic_write_file

FRAME_POLICIES = ("strict", "resample", "pad", "trim")


class VideoDecodeError(ValueError):
    """A video file that cannot be decoded (missing, empty, corrupt, truncated or without a video stream)."""


def valid_frame_count(num_frames: int, chunk_size: int = 17, overlap: int = 1) -> bool:
    stride = chunk_size - overlap if overlap else chunk_size
    return num_frames >= chunk_size and (num_frames - chunk_size) % stride == 0


def _open(source: str | os.PathLike | bytes):
    """An open PyAV container for a path or the bytes of a video file, with a name for error messages."""
    if isinstance(source, (bytes, bytearray)):
        if not source:
            raise VideoDecodeError("<bytes>: the video data is empty (0 bytes).")
        return av.open(io.BytesIO(source)), "<bytes>"
    path = Path(source)
    if not path.is_file():
        raise VideoDecodeError(f"{path}: no such video file.")
    if path.stat().st_size == 0:
        raise VideoDecodeError(f"{path}: the file is empty (0 bytes).")
    try:
        return av.open(str(path)), str(path)
    except PermissionError:
        raise VideoDecodeError(f"{path}: permission denied (the file is not readable).") from None
    except (av.error.FFmpegError, OSError, ValueError) as error:
        raise VideoDecodeError(f"{path}: not a readable video ({error}); the file may be corrupt.") from None


def probe_video(source: str | os.PathLike | bytes) -> tuple[int, float]:
    """(number of frames, average fps) of the first video stream, decoding it if the container does not say."""
    container, name = _open(source)
    with container:
        if not container.streams.video:
            raise VideoDecodeError(f"{name}: the file has no video stream (audio-only or not a video).")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        count = stream.frames
        if not count:
            try:
                count = sum(1 for _ in container.decode(stream))
            except (av.error.FFmpegError, ValueError) as error:
                raise VideoDecodeError(f"{name}: cannot decode the video ({error}).") from None
    if not rate:
        raise VideoDecodeError(f"{name}: the video stream has no frame rate.")
    if not count:
        raise VideoDecodeError(f"{name}: the video stream holds no frames.")
    return int(count), float(rate)


def decode_frames(source: str | os.PathLike | bytes, stop: int | None = None) -> tuple[torch.Tensor, float]:
    """Frames of the first video stream as uint8 `[T, H, W, 3]` (the first `stop` ones if given), and its fps.

    `source` is a path or the bytes of a video file. Corrupt, truncated, empty, audio-only or unreadable input
    raises `VideoDecodeError` naming the file.
    """
    container, name = _open(source)
    frames = []
    try:
        with container:
            if not container.streams.video:
                raise VideoDecodeError(f"{name}: the file has no video stream (audio-only or not a video).")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            rate = stream.average_rate or stream.guessed_rate
            for frame in container.decode(stream):
                frames.append(frame.to_ndarray(format="rgb24"))
                if stop is not None and len(frames) >= stop:
                    break
    except VideoDecodeError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as error:
        raise VideoDecodeError(f"{name}: cannot decode the video ({error}); the file may be corrupt or truncated.") from None
    if not frames:
        raise VideoDecodeError(f"{name}: the video stream holds no decodable frames (corrupt or truncated file).")
    if not rate:
        raise VideoDecodeError(f"{name}: the video stream has no frame rate.")
    return torch.from_numpy(np.stack(frames)), float(rate)


def resampled_indices(
    total: int,
    source_fps: float,
    fps: float | None,
    num_frames: int | None,
    frame_policy: str,
    chunk_size: int,
    overlap: int,
    name: str = "video",
) -> np.ndarray:
    """Indices of the source frames that form the output clip (see the module docstring for the policies)."""
    if frame_policy not in FRAME_POLICIES:
        raise ValueError(f"frame_policy must be one of {FRAME_POLICIES}, got {frame_policy!r}.")
    stride = chunk_size - overlap if overlap else chunk_size
    if num_frames is not None:
        if frame_policy != "resample" and not valid_frame_count(num_frames, chunk_size, overlap) and frame_policy == "strict":
            raise ValueError(
                f"num_frames={num_frames} is not a valid frame count ({chunk_size} + {stride}K); "
                "pass one or use frame_policy='pad' / 'trim'."
            )
        count = num_frames
    else:
        duration = total / source_fps
        count = int(duration * fps) if fps else total
        if frame_policy == "resample":
            # the official rule: enough chunks to cover the clip, frames spread over its whole length
            chunks = max(0, math.ceil((count - 1) / stride))
            count = 1 + chunks * stride
    if count < 1:
        raise ValueError(f"{name}: {total} frames at {source_fps:g} fps give no frames at {fps} fps.")
    indices = np.linspace(0, total - 1, count).astype(np.int64)
    if valid_frame_count(len(indices), chunk_size, overlap):
        return indices
    if frame_policy == "pad":
        target = chunk_size if len(indices) < chunk_size else len(indices) + (-(len(indices) - chunk_size)) % stride
        return np.concatenate([indices, np.full(target - len(indices), indices[-1])])
    if frame_policy == "trim" and len(indices) >= chunk_size:
        return indices[: chunk_size + (len(indices) - chunk_size) // stride * stride]
    valid = [chunk_size + stride * k for k in range(3)]
    raise ValueError(
        f"{name}: {len(indices)} frames at {fps or source_fps:g} fps is not a valid clip length ({chunk_size} + "
        f"{stride}K, e.g. {valid}). Pass frame_policy='resample' (official: stretch over the clip), 'pad' (repeat the "
        "last frame) or 'trim' (drop trailing frames), or choose num_frames."
    )


def preprocess_frames(frames: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 `[T, H, W, 3]` -> float32 `[3, T, size, size]` in [-1, 1]: short-side bicubic antialiased resize,
    clamp to [0, 1], center crop (the official preprocessing)."""
    video = frames.permute(0, 3, 1, 2).float() / 255.0
    video = TF.resize(video, [size], interpolation=InterpolationMode.BICUBIC, antialias=True).clamp(0.0, 1.0)
    video = TF.center_crop(video, [size, size])
    return (video * 2 - 1).permute(1, 0, 2, 3).contiguous()


def read_video(
    path: str | os.PathLike,
    fps: float | None = 8.0,
    size: int = 256,
    num_frames: int | None = None,
    frame_policy: str = "strict",
    chunk_size: int = 17,
    overlap: int = 1,
) -> torch.Tensor:
    """Read a video file as `[3, T, size, size]` float32 in [-1, 1] (see the module docstring).

    Args:
        fps: target frame rate (None keeps every frame). num_frames: exact output length instead (frames are
            spread uniformly over the whole clip). frame_policy: what to do when the length is not
            `chunk_size + (chunk_size - overlap) * K`: "strict" (error), "resample", "pad" or "trim".
    """
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive integer, got {size!r}.")
    if fps is not None and fps <= 0:
        raise ValueError(f"fps must be positive, got {fps!r}.")
    frames, source_fps = decode_frames(path)
    indices = resampled_indices(len(frames), source_fps, fps, num_frames, frame_policy, chunk_size, overlap, str(path))
    return preprocess_frames(frames[torch.from_numpy(indices)], size)


def write_video(path: str | os.PathLike, video: torch.Tensor, fps: float = 8.0, codec: str = "libx264") -> Path:
    """Write `[3, T, H, W]` in [-1, 1] (float) or uint8 in [0, 255] to a video file, atomically.

    H and W must be even for the default H.264 (yuv420p) encoding.
    """
    path = Path(path)
    if not isinstance(video, torch.Tensor) or video.dim() != 4 or video.shape[0] != 3:
        shape = tuple(video.shape) if isinstance(video, torch.Tensor) else type(video).__name__
        raise ValueError(f"video must be a [3, T, H, W] tensor, got {shape}.")
    if video.shape[1] == 0:
        raise ValueError("video has no frames.")
    if video.dtype == torch.uint8:
        frames = video
    elif video.dtype.is_floating_point:
        frames = ((video.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    else:
        raise TypeError(f"video must be float in [-1, 1] or uint8, got dtype {video.dtype}.")
    height, width = frames.shape[-2:]
    if codec == "libx264" and (height % 2 or width % 2):
        raise ValueError(f"H.264 needs even frame sizes, got {height}x{width}; crop or pad by one pixel.")
    frames = frames.permute(1, 2, 3, 0).cpu().numpy()  # [T, H, W, 3]
    with atomic_write_file(path) as handle:
        with av.open(handle, mode="w", format=_format_for(path)) as container:
            stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1000))
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            if codec == "libx264":
                stream.options = {"crf": "18"}
            for array in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    return path


def _format_for(path: Path) -> str:
    formats = {".mp4": "mp4", ".mkv": "matroska", ".webm": "webm", ".avi": "avi", ".mov": "mov"}
    try:
        return formats[path.suffix.lower()]
    except KeyError:
        raise ValueError(f"unsupported video file extension {path.suffix!r}; use one of {sorted(formats)}.") from None
