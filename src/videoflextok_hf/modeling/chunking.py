"""The chunk geometry of VideoFlexTok: frames <-> latent steps <-> token steps, splitting and stitching.

Videos are processed as chunks of `chunk_size` frames; consecutive chunks share `overlap_frames` frames (17 and 1
for the released models, so T = 1 + 16K frames). The causal VAE gives a chunk `1 + (chunk_size - 1) / factor` latent
steps (the first frame gets its own step), and the encoder's time patch groups `time_patch_size` latent steps into
one token step. Every count, valid length, split and stitch of the package is computed here, once.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ChunkGeometry:
    """How a video is cut into chunks and how the per-chunk outputs are put back together.

    Args:
        chunk_size (`int`): frames per chunk.
        overlap_frames (`int`): frames shared by consecutive chunks (0: disjoint chunks).
        temporal_downsample_factor (`int`): frames per latent step after the first (causal VAE).
        time_patch_size (`int`): latent steps per token step (the encoder's time patch).
    """

    chunk_size: int = 17
    overlap_frames: int = 1
    temporal_downsample_factor: int = 4
    time_patch_size: int = 1

    def __post_init__(self):
        if not 0 <= self.overlap_frames < self.chunk_size:
            raise ValueError(
                f"overlap must lie in [0, chunk_size), got overlap={self.overlap_frames}, chunk_size={self.chunk_size}."
            )

    @classmethod
    def from_config(cls, config) -> "ChunkGeometry":
        """The geometry of a `VideoFlexTokConfig`."""
        return cls(
            config.chunk_size,
            config.overlap_size_frames,
            config.vae_temporal_downsample_factor,
            config.encoder_patch_size[0],
        )

    # ----------------------------------------------------------------------------------------------------------
    # per-chunk sizes
    @property
    def frame_stride(self) -> int:
        """New frames per chunk after the first."""
        return self.chunk_size - self.overlap_frames

    def _latent_steps(self, frames: int) -> int:
        # causal VAE: the first frame gets its own latent step, then one step per `factor` frames
        return 0 if frames == 0 else (frames - 1) // self.temporal_downsample_factor + 1

    @property
    def latent_frames_per_chunk(self) -> int:
        return self._latent_steps(self.chunk_size)

    @property
    def overlap_latent_frames(self) -> int:
        return self._latent_steps(self.overlap_frames)

    @property
    def tokens_per_chunk(self) -> int:
        """Token steps of one chunk."""
        return self.latent_frames_per_chunk // self.time_patch_size

    @property
    def overlap_tokens(self) -> int:
        """Token steps shared by consecutive chunks."""
        return self.overlap_latent_frames // self.time_patch_size

    @property
    def token_stride(self) -> int:
        """New token steps per chunk after the first."""
        return self.tokens_per_chunk - self.overlap_tokens

    # ----------------------------------------------------------------------------------------------------------
    # whole-video counts
    def num_frames(self, num_chunks: int) -> int:
        """Frames of a video made of `num_chunks` chunks (1 + 16K for the released models)."""
        return self.chunk_size + (num_chunks - 1) * self.frame_stride

    def num_token_steps(self, num_chunks: int) -> int:
        """Token steps of a video made of `num_chunks` chunks (1 + 4K for the released models)."""
        return self.tokens_per_chunk + (num_chunks - 1) * self.token_stride

    def is_valid_frame_count(self, num_frames: int) -> bool:
        """Whether `num_frames` splits into whole chunks: `chunk_size + frame_stride * K`, K >= 0."""
        return num_frames >= self.chunk_size and (num_frames - self.chunk_size) % self.frame_stride == 0

    def next_valid_frame_count(self, num_frames: int) -> int:
        """The smallest valid length >= `num_frames` (at least one chunk)."""
        extra = max(0, num_frames - self.chunk_size)
        return self.num_frames(1 + -(-extra // self.frame_stride))

    def previous_valid_frame_count(self, num_frames: int) -> int | None:
        """The largest valid length <= `num_frames`, or None when `num_frames < chunk_size`."""
        if num_frames < self.chunk_size:
            return None
        return self.num_frames(1 + (num_frames - self.chunk_size) // self.frame_stride)

    def valid_frame_counts(self, count: int = 3) -> list[int]:
        """The first `count` valid lengths (for error messages)."""
        return [self.num_frames(k + 1) for k in range(count)]

    def frame_rule(self) -> str:
        """The valid lengths in words, e.g. `17 + 16K frames, e.g. [17, 33, 49]`."""
        return f"{self.chunk_size} + {self.frame_stride}K frames, e.g. {self.valid_frame_counts()}"

    def num_chunks_for_frames(self, num_frames: int) -> int:
        """Chunks of a video with `num_frames` frames; raises a `ValueError` saying how to fix an invalid count."""
        if not self.is_valid_frame_count(num_frames):
            if self.overlap_frames:
                rule = f"{self.chunk_size} + {self.frame_stride}*K (K >= 0)"
            else:
                rule = f"a multiple of {self.chunk_size}"
            raise ValueError(
                f"videos must have {rule} frames (e.g. {self.valid_frame_counts()}), got T={num_frames}. Resample or "
                "trim the video, e.g. with `videoflextok_hf.data.read_video(..., num_frames=...)`."
            )
        return (num_frames - self.chunk_size) // self.frame_stride + 1

    def num_chunks_for_token_steps(self, num_steps: int) -> int:
        """Chunks of a token sequence with `num_steps` time steps; raises a `ValueError` for an invalid count."""
        per_chunk, stride = self.tokens_per_chunk, self.token_stride
        if num_steps < per_chunk or (num_steps - per_chunk) % stride:
            valid = [self.num_token_steps(k + 1) for k in range(3)]
            raise ValueError(
                f"token sequences must have {per_chunk} + {stride}*K time steps (e.g. {valid}), got t={num_steps}."
            )
        return (num_steps - per_chunk) // stride + 1

    def num_token_steps_for_frames(self, num_frames: int) -> int:
        """Token steps of a video with `num_frames` frames (raises for an invalid count)."""
        return self.num_token_steps(self.num_chunks_for_frames(num_frames))

    # ----------------------------------------------------------------------------------------------------------
    # splitting and stitching
    def split(self, videos: torch.Tensor, time_dim: int = 2) -> torch.Tensor:
        """`[B, C, T, H, W]` -> `[B * num_chunks, C, chunk_size, H, W]` (sample-major, chunks in time order)."""
        num_chunks = self.num_chunks_for_frames(videos.shape[time_dim])
        chunks = [videos.narrow(time_dim, i * self.frame_stride, self.chunk_size) for i in range(num_chunks)]
        return torch.stack(chunks, dim=1).flatten(0, 1)

    @staticmethod
    def stitch(per_chunk: torch.Tensor, batch: int, time_dim: int, overlap: int) -> torch.Tensor:
        """Inverse of `split` for per-chunk outputs `[B * num_chunks, ...]`: drop the first `overlap` steps of every
        chunk but the first along `time_dim` (of one sample) and concatenate."""
        chunks = per_chunk.unflatten(0, (batch, -1)).unbind(1)
        pieces = [chunks[0]]
        pieces += [chunk.narrow(time_dim, overlap, chunk.shape[time_dim] - overlap) for chunk in chunks[1:]]
        return torch.cat(pieces, dim=time_dim)

    def stitch_tokens(self, per_chunk: torch.Tensor, batch: int) -> torch.Tensor:
        """Per-chunk token tensors `[B * n, tokens_per_chunk, ...]` -> `[B, t, ...]`."""
        return self.stitch(per_chunk, batch, 1, self.overlap_tokens)

    def stitch_latents(self, per_chunk: torch.Tensor, batch: int) -> torch.Tensor:
        """Per-chunk VAE latents `[B * n, C, latent_frames_per_chunk, h, w]` -> `[B, C, t_latent, h, w]`."""
        return self.stitch(per_chunk, batch, 2, self.overlap_latent_frames)

    def new_token_steps(self, chunk: int) -> slice:
        """The token steps (of the whole sequence) that chunk `chunk` adds: all of chunk 0, then `token_stride`
        steps per chunk (the overlap steps come from the previous chunk)."""
        if chunk == 0:
            return slice(0, self.tokens_per_chunk)
        start = self.tokens_per_chunk + (chunk - 1) * self.token_stride
        return slice(start, start + self.token_stride)
