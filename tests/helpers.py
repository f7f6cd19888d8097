"""Shared test utilities: building tiny models and converted reference checkpoints."""

from __future__ import annotations

from pathlib import Path

import torch

from conftest import REFERENCE_TINY

# Tolerance for float32 single-forward parity with the official golden tensors (issue contract: <= 1e-5).
FORWARD_ATOL = 1e-5


def max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.double() - b.double()).abs().max().item()


def convert_reference(destination: Path) -> Path:
    """Convert the official tiny checkpoint with the CLI entry point into `destination`."""
    from videoflextok_hf.conversion.convert_original import main

    assert main(["--src", str(REFERENCE_TINY / "official"), "--dst", str(destination)]) == 0
    return destination


def tiny_config(**overrides):
    """A small random architecture that exercises every code path quickly."""
    from videoflextok_hf import VideoFlexTokConfig

    kwargs = dict(
        image_size=32,
        vae_base_channels=4,
        num_registers=8,
        register_max_frames=5,
        encoder_hidden_size=32,
        encoder_num_layers=1,
        encoder_head_dim=16,
        decoder_hidden_size=32,
        decoder_num_layers=1,
        decoder_head_dim=16,
        encoder_patch_position_embedding={"type": "learnable_sum", "max_sizes": [8, 8, 8], "scaling": "absolute"},
        decoder_patch_position_embedding={"type": "learnable_sum", "max_sizes": [8, 8, 8], "scaling": "absolute"},
        decoder_register_position_embedding={"type": "learnable_sum", "max_sizes": [8, 8], "scaling": "absolute"},
    )
    kwargs.update(overrides)
    return VideoFlexTokConfig(**kwargs)


def randomize_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every parameter non-trivial random values (zero-initialised layers would hide bugs)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            scale = 0.5 / max(param.shape[-1], 1) ** 0.5 if param.dim() > 1 else 0.05
            param.copy_(torch.randn(param.shape, generator=generator) * scale)
    return model


def coded_video(path, frames: int, fps: float, width: int = 64, height: int = 48, offset: int = 0):
    """Write grey frames whose levels encode their number n = t + offset: 8 * (n % 32) + 4 in the top half and
    8 * (n // 32) + 4 in the bottom half (survives lossy coding and resizing); returns the path."""
    from videoflextok_hf.data import write_video

    video = torch.empty(3, frames, height, width, dtype=torch.uint8)
    for t in range(frames):
        n = t + offset
        video[:, t, : height // 2] = 8 * (n % 32) + 4
        video[:, t, height // 2 :] = 8 * (n // 32) + 4
    return write_video(path, video, fps=fps)


def frame_codes(video):
    """Decode the frame numbers of `coded_video` frames read with `read_video` ([3, T, S, S] in [-1, 1])."""
    size = video.shape[-1]
    levels = (video + 1) * 127.5
    top = levels[:, :, size // 8 : size // 2 - size // 8].mean(dim=(0, 2, 3))
    bottom = levels[:, :, size // 2 + size // 8 : size - size // 8].mean(dim=(0, 2, 3))
    return [int(round((a - 4) / 8)) + 32 * int(round((b - 4) / 8)) for a, b in zip(top.tolist(), bottom.tolist())]
