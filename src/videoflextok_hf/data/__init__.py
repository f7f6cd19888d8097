"""Video I/O and datasets: videos in, token datasets out."""

from .video_io import FRAME_POLICIES, VideoDecodeError, decode_frames, preprocess_frames, read_video, write_video

__all__ = ["FRAME_POLICIES", "VideoDecodeError", "decode_frames", "preprocess_frames", "read_video", "write_video"]
