"""Training clips: random one-chunk clips of real videos with augmentation (random scale, crop, flip, colours).

`StreamingClipDataset` (what `Trainer` uses) keeps only clip descriptors (`load_video_dataset`) and decodes each
sample on demand, in DataLoader workers: memory does not grow with the corpus. Sample i is a pure function of
(seed, i), so the data order needs no saved state beyond the number of samples seen. `ClipSampler` is the earlier
in-memory variant (every video decoded once at every rate and size), kept for small experiments.
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


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    """An image size as (height, width): an int is square."""
    if isinstance(size, int):
        return size, size
    height, width = size
    return int(height), int(width)


def decode_sizes(image_size: int | Sequence[int], decode_size: int | Sequence[int] | None,
                 random_crop: bool) -> list[int | tuple[int, int]]:
    """The sizes videos are decoded at before cropping to `image_size`, one per configured `decode_size` (default
    1.25x the height with random crops, else the height). For square frames an int (short side, then a center
    square); for `[H, W]` frames `d` is the decoded height and the width follows the frame's aspect ratio."""
    height, width = _pair(image_size)
    decode_size = decode_size or (int(round(height * 1.25)) if random_crop else height)
    sizes = [decode_size] if isinstance(decode_size, int) else list(decode_size)
    if not sizes or min(sizes) < height:
        raise ValueError(f"decode_size={decode_size} must be >= image_size={image_size}.")
    if isinstance(image_size, int):
        return sizes
    return [(size, max(width, round(size * width / height))) for size in sizes]


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
        from ..data import probe_video
        from ..data.video_io import count_decodable_frames, decode_selected_frames, frames_at_fps, select_frame_indices

        self.clip_frames, self.image_size = clip_frames, image_size
        self.height, self.width = _pair(image_size)
        self.random_crop, self.horizontal_flip, self.channel_shuffle = random_crop, horizontal_flip, channel_shuffle
        sizes = decode_sizes(image_size, decode_size, random_crop)
        self.videos: list[torch.Tensor] = []
        for path in expand_video_paths(sources):
            info = probe_video(path)
            decodable = count_decodable_frames(path)
            if decodable < info.num_frames:
                # a container index listing more frames than decode (seen: an edit list one frame too long);
                # training only needs the frames that exist, so use those and say so
                logger.warning("%s: the container lists %d frames but %d decode; training on the %d.", path,
                               info.num_frames, decodable, decodable)
            if decodable == 0:
                raise ValueError(f"{path}: no frame of this video decodes (corrupt file?); remove it from `videos`.")
            for rate, size in ((rate, size) for rate in fps for size in sizes):
                frames_at_rate = frames_at_fps(decodable, info.fps, rate)
                if frames_at_rate < clip_frames:
                    logger.warning("skipping %s at %s fps: only %d frames", path, rate, frames_at_rate)
                    continue
                indices = select_frame_indices(decodable, info.fps, rate, frame_policy="trim", name=str(path))
                video = decode_selected_frames(path, indices.tolist(), size)  # as read_video, on `decodable` frames
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


# ----------------------------------------------------------------------------------------------------------------
# streaming: clip descriptors in memory (a few hundred bytes per clip start), pixels decoded per sample in workers


def sample_seed(seed: int, index: int) -> int:
    """The seed of global sample `index`: what the sample is (clip, scale, crop, flip) depends on nothing else, so it
    is the same however samples are split across processes and workers, and after a resume."""
    return (seed * 1_000_003 + index) * 31 + 11


class StreamingClipDataset(torch.utils.data.Dataset):
    """Random training clips `[3, clip_frames, H, W]` in [-1, 1], decoded on demand: memory does not grow with the
    corpus (only the clip descriptors of `load_video_dataset` are kept, one small row per clip start).

    Item `i` is global sample `i` of the run: a clip start drawn uniformly from every start of every video at every
    rate in `fps` (as `ClipSampler`), a decode size drawn uniformly from `decode_size`, then a random crop to
    `image_size`, a random left-right flip and optionally a random channel permutation, all from a generator seeded
    by (seed, i). `sources` are video files / folders (expanded like `ClipSampler`'s) or anything
    `load_video_dataset` accepts (a `videofolder` folder, a Hub dataset id, a `datasets.Dataset`) via `dataset=`.
    """

    def __init__(
        self,
        sources: Sequence[str] | None,
        clip_frames: int,
        image_size: int | Sequence[int],
        fps: Sequence[float] = (8.0,),
        decode_size: int | Sequence[int] | None = None,
        random_crop: bool = True,
        horizontal_flip: bool = True,
        channel_shuffle: bool = False,
        seed: int = 0,
        dataset=None,
    ):
        import datasets

        from ..data import load_video_dataset

        self.clip_frames, self.image_size = clip_frames, _pair(image_size)
        self.random_crop, self.horizontal_flip, self.channel_shuffle = random_crop, horizontal_flip, channel_shuffle
        self.seed = seed
        self.decode_sizes = decode_sizes(image_size, decode_size, random_crop)
        collections = []
        if sources:
            collections.append([str(path) for path in expand_video_paths(sources)])
        if dataset is not None:
            collections.append(dataset)
        if not collections:
            raise ValueError("StreamingClipDataset needs video `sources` or a `dataset`.")
        parts = [load_video_dataset(collection, clip_frames=clip_frames, stride=1, fps=rate, frame_policy="trim")
                 for collection in collections for rate in fps]
        # only the columns decode_clip reads: label / caption columns of large datasets stay out of memory
        parts = [part.select_columns(["source_path", "frame_indices"]) for part in parts if len(part)]
        if not parts:
            raise ValueError(f"no training video has {clip_frames} frames at the requested fps {list(fps)}.")
        self.clips = datasets.concatenate_datasets(parts)

    @property
    def num_clips(self) -> int:
        """Clip starts over all videos and rates (as `ClipSampler.num_clips`)."""
        return len(self.clips)

    # no __len__: an index is a global sample number (any int >= 0); GlobalSampleSampler says which are drawn

    def __getitem__(self, index: int) -> torch.Tensor:
        from ..data import decode_clip

        generator = torch.Generator().manual_seed(sample_seed(self.seed, int(index)))
        row = self.clips[int(torch.randint(self.num_clips, (1,), generator=generator))]
        size = self.decode_sizes[int(torch.randint(len(self.decode_sizes), (1,), generator=generator))]
        video = decode_clip(row, size)
        return augment_clip(video, self.image_size, generator, self.random_crop, self.horizontal_flip,
                            self.channel_shuffle)


def augment_clip(video: torch.Tensor, image_size: tuple[int, int], generator: torch.Generator, random_crop: bool,
                 horizontal_flip: bool, channel_shuffle: bool) -> torch.Tensor:
    """A decoded clip `[3, T, H0, W0]` -> `[3, T, H, W]`: crop (random or centered), flip, channel permutation."""
    height, width = image_size
    top, left = (video.shape[-2] - height) // 2, (video.shape[-1] - width) // 2
    if random_crop:
        top = int(torch.randint(video.shape[-2] - height + 1, (1,), generator=generator))
        left = int(torch.randint(video.shape[-1] - width + 1, (1,), generator=generator))
    clip = video[:, :, top : top + height, left : left + width]
    if horizontal_flip and bool(torch.rand((), generator=generator) < 0.5):
        clip = clip.flip(-1)
    if channel_shuffle:
        clip = clip[torch.randperm(clip.shape[0], generator=generator)]
    return clip.contiguous()


class InMemoryClipDataset(torch.utils.data.Dataset):
    """Global sample i -> one clip of `ClipSampler.sample` drawn with the generator of (seed, i): the in-memory sampler
    behind the same interface as `StreamingClipDataset`. For small corpora decoding every video once is much faster
    than decoding every clip (each clip decodes its file from the start); memory grows with the corpus, on every
    process."""

    def __init__(self, sampler: ClipSampler, seed: int = 0):
        self.sampler, self.seed = sampler, seed

    @property
    def num_clips(self) -> int:
        return self.sampler.num_clips

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.sampler.sample(1, torch.Generator().manual_seed(sample_seed(self.seed, int(index))))[0]


class GlobalSampleSampler(torch.utils.data.Sampler):
    """Global sample numbers `start, start + 1, ..., stop - 1`, in order.

    `accelerator.prepare` shards the batches of this sampler: with per-process batch b on P processes, process r
    gets batches r, r + P, ..., so step s (P batches) holds samples s*P*b .. (s+1)*P*b - 1 whatever P is, and a
    resumed run starts at `start = step * P * b` with no batch skipped or repeated.
    """

    def __init__(self, start: int, stop: int):
        self.start, self.stop = start, stop

    def __iter__(self):
        return iter(range(self.start, self.stop))

    def __len__(self) -> int:
        return self.stop - self.start
