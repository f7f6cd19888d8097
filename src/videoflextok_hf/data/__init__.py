"""Video I/O and datasets: video files and collections in, token datasets out (see docs/data.md)."""

from .clips import CLIP_COLUMNS, clip_windows, decode_clip, iter_decoded_clips, load_video_dataset
from .datasets import (
    detokenize_rows,
    load_token_dataset,
    push_token_dataset,
    tokenize_dataset,
    write_dataset_card,
)
from .video_io import (
    FRAME_POLICIES,
    VideoDecodeError,
    VideoInfo,
    decode_frames,
    decode_selected_frames,
    is_valid_frame_count,
    iter_frames,
    next_valid_frame_count,
    preprocess_frames,
    previous_valid_frame_count,
    probe_video,
    read_video,
    select_frame_indices,
    write_video,
)

__all__ = [
    "CLIP_COLUMNS",
    "FRAME_POLICIES",
    "VideoDecodeError",
    "VideoInfo",
    "clip_windows",
    "decode_clip",
    "decode_frames",
    "decode_selected_frames",
    "detokenize_rows",
    "is_valid_frame_count",
    "iter_decoded_clips",
    "iter_frames",
    "load_token_dataset",
    "load_video_dataset",
    "next_valid_frame_count",
    "preprocess_frames",
    "previous_valid_frame_count",
    "probe_video",
    "push_token_dataset",
    "read_video",
    "select_frame_indices",
    "tokenize_dataset",
    "write_dataset_card",
    "write_video",
]
