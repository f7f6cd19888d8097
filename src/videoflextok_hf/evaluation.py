"""Coarse-to-fine reconstruction: decode the same tokens with several token budgets k, measure PSNR / SSIM."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import PIL.Image
import PIL.ImageDraw
import torch

from .metrics import psnr, ssim


@dataclass
class ReconstructionResult:
    """Per token budget k: decoded videos `[B, T, 3, H, W]` in [0, 1] (one per seed) and mean PSNR / SSIM."""

    num_tokens: list[int]
    videos: dict[int, list[torch.Tensor]] = field(default_factory=dict)
    psnr: dict[int, float] = field(default_factory=dict)
    ssim: dict[int, float] = field(default_factory=dict)

    def table(self) -> str:
        """A markdown table of PSNR / SSIM per k."""
        lines = ["| k (tokens per step) | PSNR (dB) | SSIM |", "|---:|---:|---:|"]
        for k in self.num_tokens:
            lines.append(f"| {k} | {self.psnr[k]:.2f} | {self.ssim[k]:.4f} |")
        return "\n".join(lines)


@torch.no_grad()
def reconstruct(
    model,
    videos: torch.Tensor,
    num_tokens: Sequence[int],
    seeds: Sequence[int] = (0,),
    num_inference_steps: int | None = None,
    guidance_scale: float | None = None,
    guidance: str | None = None,
    progress: bool = False,
) -> ReconstructionResult:
    """Tokenize `videos [B, 3, T, H, W]` (in [-1, 1]) once, decode with every k in `num_tokens` and every seed.
    The sampling settings left out default to the model's `config.decoding_defaults`."""
    from .pipeline import VideoFlexTokFlowMatchScheduler, VideoFlexTokPipeline

    pipe = VideoFlexTokPipeline(model=model, scheduler=VideoFlexTokFlowMatchScheduler())
    pipe.set_progress_bar_config(disable=not progress)
    device = next(model.parameters()).device
    token_ids = model.encode(videos.to(device=device, dtype=model.dtype)).token_ids
    target = ((videos.float().cpu() + 1) / 2).clamp(0, 1).transpose(1, 2)  # [B, T, 3, H, W]
    result = ReconstructionResult(num_tokens=list(num_tokens))
    for k in num_tokens:
        decoded, scores_psnr, scores_ssim = [], [], []
        for seed in seeds:
            generator = torch.Generator().manual_seed(seed)
            frames = pipe(token_ids, num_tokens=k, num_inference_steps=num_inference_steps,
                          guidance_scale=guidance_scale, guidance=guidance, generator=generator).frames.cpu()
            decoded.append(frames)
            scores_psnr.append(psnr(frames, target))
            scores_ssim.append(ssim(frames, target))
        result.videos[k] = decoded
        result.psnr[k] = torch.stack(scores_psnr).mean().item()
        result.ssim[k] = torch.stack(scores_ssim).mean().item()
    return result


def side_by_side(original: torch.Tensor, result: ReconstructionResult, seed_index: int = 0) -> torch.Tensor:
    """One video `[3, T, H, (1 + len(k)) * W]` in [-1, 1]: the input next to each reconstruction (first video)."""
    columns = [original[0].float().cpu()] + [result.videos[k][seed_index][0].transpose(0, 1) * 2 - 1
                                             for k in result.num_tokens]
    return torch.cat(columns, dim=-1)


def frame_grid(original: torch.Tensor, result: ReconstructionResult, num_frames: int = 5, scale: int = 2,
               seed_index: int = 0) -> PIL.Image.Image:
    """The coarse-to-fine picture: rows are frames, columns the input then k = each budget (first video)."""
    video = ((original[0].float().cpu() + 1) / 2).clamp(0, 1)  # [3, T, H, W]
    steps = np.linspace(0, video.shape[1] - 1, num_frames).round().astype(int)
    columns = [video] + [result.videos[k][seed_index][0].transpose(0, 1) for k in result.num_tokens]
    labels = ["input"] + [f"k={k}" for k in result.num_tokens]
    height, width = video.shape[-2] * scale, video.shape[-1] * scale
    header = 14
    canvas = PIL.Image.new("RGB", (width * len(columns), header + height * len(steps)), "white")
    draw = PIL.ImageDraw.Draw(canvas)
    for col, (column, label) in enumerate(zip(columns, labels)):
        draw.text((col * width + 3, 1), label, fill="black")
        for row, t in enumerate(steps):
            frame = (column[:, t].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            image = PIL.Image.fromarray(frame).resize((width, height), PIL.Image.NEAREST)
            canvas.paste(image, (col * width, header + row * height))
    return canvas
