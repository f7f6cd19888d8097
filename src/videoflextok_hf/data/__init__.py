"""Video I/O and datasets: videos in, token datasets out."""

from .datasets import (
    decode_clip,
    detokenize_rows,
    load_token_dataset,
    load_video_dataset,
    push_token_dataset,
    tokenize_dataset,
    write_dataset_card,
)
from .video_io import (
    FRAME_POLICIES,
    VideoDecodeError,
    decode_frames,
    preprocess_frames,
    probe_video,
    read_video,
    resampled_indices,
    write_video,
)

__all__ = [
    "FRAME_POLICIES",
    "decode_clip",
    "detokenize_rows",
    "load_token_dataset",
    "load_video_dataset",
    "push_token_dataset",
    "tokenize_dataset",
    "write_dataset_card",
    "VideoDecodeError",
    "decode_frames",
    "preprocess_frames",
    "probe_video",
    "read_video",
    "resampled_indices",
    "write_video",
]
