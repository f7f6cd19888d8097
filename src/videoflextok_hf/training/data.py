"""Training clips: real videos decoded once into memory, sampled as random one-chunk clips with augmentation.

This suits the small datasets a tiny model is trained on (the bundled default model saw two short real videos).
Each step draws its clips from a generator seeded by the step, so the data order needs no saved state.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from ..utils import resolve_source

logger = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".mpg", ".mpeg", ".ogv")


def expand_video_paths(sources: Sequence[str]) -> list[Path]:
    """Files as given, folders expanded (recursively, sorted) to the video files they contain."""
    paths: list[Path] = []
    for source in sources:
        path = resolve_source(str(source))
        if path.is_dir():
            paths += sorted(p for p in path.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
        elif path.is_file():
            paths.append(path)
        else:
            raise FileNotFoundError(f"training video source {source!r} does not exist.")
    if not paths:
        raise ValueError(f"no video files found in {list(sources)}.")
    return paths


class ClipSampler:
    """Random `[B, 3, clip_frames, H, W]` clips in [-1, 1] from in-memory decoded videos.

    Every video is decoded at each rate in `fps` (more rates = more motion diversity) and center-cropped to
    `decode_size` (or to each of several sizes: more scales); a clip is a random window of `clip_frames` frames,
    randomly cropped to `image_size`, randomly flipped left-right, and optionally its colour channels permuted.
    `image_size` is the model's (an int for square frames, or `[H, W]`); for `[H, W]` frames a `decode_size` d is
    the decoded height, the width follows the frame's aspect ratio (videos are resized as `read_video` does).
    """

    def __init__(
        self,
        sources: Sequence[str],
        clip_frames: int,
        image_size: int | Sequence[int],
        fps: Sequence[float] = (8.0,),
        decode_size: int | Sequence[int] | None = None,
        random_crop: bool = True,
        horizontal_flip: bool = True,
        channel_shuffle: bool = False,
    ):
        from ..data import probe_video, read_video
        from ..data.video_io import frames_at_fps

        self.clip_frames, self.image_size = clip_frames, image_size
        self.height, self.width = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        self.random_crop, self.horizontal_flip, self.channel_shuffle = random_crop, horizontal_flip, channel_shuffle
        decode_size = decode_size or (int(round(self.height * 1.25)) if random_crop else self.height)
        sizes = [decode_size] if isinstance(decode_size, int) else list(decode_size)
        if not sizes or min(sizes) < self.height:
            raise ValueError(f"decode_size={decode_size} must be >= image_size={image_size}.")
        if not isinstance(image_size, int):  # [H, W] frames: decode at (d, d * W / H)
            sizes = [(size, max(self.width, round(size * self.width / self.height))) for size in sizes]
        self.videos: list[torch.Tensor] = []
        for path in expand_video_paths(sources):
            info = probe_video(path)
            for rate, size in ((rate, size) for rate in fps for size in sizes):
                frames_at_rate = frames_at_fps(info.num_frames, info.fps, rate)
                if frames_at_rate < clip_frames:
                    logger.warning("skipping %s at %s fps: only %d frames", path, rate, frames_at_rate)
                    continue
                video = read_video(path, fps=rate, size=size, frame_policy="trim")
                self.videos.append(video.to(torch.float16))  # halves the memory; exact for 8-bit sources
        if not self.videos:
            raise ValueError(f"no training video has {clip_frames} frames at the requested fps {list(fps)}.")
        # each possible clip start is equally likely
        self.starts = torch.tensor([v.shape[1] - clip_frames + 1 for v in self.videos], dtype=torch.float64)

    @property
    def num_clips(self) -> int:
        return int(self.starts.sum())

    def sample(self, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        indices = torch.multinomial(self.starts, batch_size, replacement=True, generator=generator)
        clips = []
        for index in indices.tolist():
            video = self.videos[index]
            start = int(torch.randint(video.shape[1] - self.clip_frames + 1, (1,), generator=generator))
            top, left = (video.shape[-2] - self.height) // 2, (video.shape[-1] - self.width) // 2
            if self.random_crop:
                top = int(torch.randint(video.shape[-2] - self.height + 1, (1,), generator=generator))
                left = int(torch.randint(video.shape[-1] - self.width + 1, (1,), generator=generator))
            clip = video[:, start : start + self.clip_frames, top : top + self.height, left : left + self.width]
            if self.horizontal_flip and bool(torch.rand((), generator=generator) < 0.5):
                clip = clip.flip(-1)
            if self.channel_shuffle:  # colour diversity from few videos: tokens must encode colour, not identity
                clip = clip[torch.randperm(clip.shape[0], generator=generator)]
            clips.append(clip.float())
        return torch.stack(clips)
